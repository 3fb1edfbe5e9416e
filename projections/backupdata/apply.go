package backupdata

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Name is the projection's name in the projection store (the second
// version of the read model; see Legacy for the first).
const Name = "backup-data-2"

// Events walks the events of a checkpoint's slice, in order, calling fn
// with each (valid only during fn), part by part, so that a slice is never
// whole in memory; it returns fn's error or its own.
type Events func(fn func(e *domain.Event) error) error

// BaseItem is one item of a base, as the read model needs it: its row,
// how many versions it has, and, for a secret, the key of its newest
// version; ChangedAt is its last change (its newest version, or its
// restore).
type BaseItem struct {
	Kind        string // KindKey or KindSecret
	ID          string
	CreatedAt   time.Time
	ChangedAt   time.Time
	Description string // keys
	KeyID       string // secrets
	Versions    uint32
}

// Data is what Apply reads besides the event.
type Data struct {
	// Slice walks the events of a BackupCheckpointed's slice (nil: it has
	// none, or it is gone with a destroyed generation).
	Slice Events
	// Base walks the items of a BackupBaseStored's base in key order (nil:
	// gone with a destroyed generation). Apply reads it only for the base
	// that holds a checkpoint's state (InBase: a generation's first).
	Base func(fn func(it *BaseItem) error) error
	// Load, when set, writes a large state (a base's rows and live index,
	// a large checkpoint's items part by part: large.go) as sorted runs
	// ahead of Apply's own transaction, which commits the rest and the
	// position (the projection store's Load): fn adds keys to runs, each
	// in key order (a nil value deletes). The keys are written blindly
	// (the same again if the event is applied again after a crash), and
	// nothing but that apply reads them before that transaction. Nil:
	// everything in the transaction.
	Load func(fn func(add projections.AddSorted) error) error
}

// The runs of a base's load.
const (
	runRows = iota
	runLive
)

// Apply applies one event of a backup stream, with what data gives of a
// checkpoint's slice (the KMS instance's stream revisions [From, Next),
// decoded by the caller with key material resealed) or of a base's items.
//
//   - BackupCreated starts the instance's meta record (generation 0);
//     BackupEnabled records its time zone. BackupUploaded does both for an
//     upload, whose checkpoints follow it.
//   - BackupReset, BackupReleased and BackupUploadDeleted delete the
//     current generation's data and move to the next generation.
//   - BackupCheckpointed of the current generation records the slice: the
//     item rows that changed, the day index (except for the first
//     checkpoint, whose slice is the history from before enabling), the
//     checkpoint summary (with its slice's parts) and its day record. A
//     checkpoint of another generation is ignored. The read model holds no
//     version and no key material: restores read slices and bases.
//   - BackupBaseStored of the current generation records the base and its
//     parts; when it holds the state of a checkpoint held by no slice (the
//     first of a generation), its items become that checkpoint's rows and
//     live index, written as sorted runs (data.Load) so that memory stays
//     bounded whatever the state, and the checkpoint's summary gets its
//     counts and digest.
//
// Events of other types are ignored, and so is an event whose stream
// revision is not after the last one applied (which makes Apply
// idempotent; events must carry their log revision). Apply the events of
// the log in order, one at a time: it is not safe for concurrent use on one
// store.
//
// Memory: the items a checkpoint changes (one row each) and the day
// entries it writes, never its events all at once; with data.Load, a
// checkpoint of more than largeCheckpoint events holds one part of about
// partItems items at a time (and two bytes per event of its slice); a
// chunk of a base's items.
//
// Errors: domain.ErrCorrupt for an undecodable event, a gap in the chain
// of checkpoints, a slice event outside [From, Next) or out of order, or a
// slice that changes an item that does not exist (or creates one that
// does); domain.ErrNotFound (wrapped) for an event of an instance that was
// never created; domain.ErrFailedPrecondition when the time zone cannot be
// loaded; ErrOwnTransaction for a large checkpoint in a transaction that
// has written already; the Txn's errors.
func Apply(txn projections.Txn, e domain.Event, data Data) error {
	if !known(e.Type) {
		return nil
	}
	rest, ok := strings.CutPrefix(e.Stream, domain.BackupStreamPrefix)
	if !ok || rest == "" {
		return domain.Corruption("event %s at position %d: %s outside a backup stream (%q)", e.ID, e.Position, e.Type, e.Stream)
	}
	id := domain.BackupID(rest)
	d, err := e.Decode()
	if err != nil {
		return err
	}
	m, found, err := loadMeta(txn, id)
	if err != nil {
		return err
	}
	switch d := d.(type) {
	case *domain.BackupCreated:
		if found {
			return nil // applied already
		}
		return txn.Set(metaKey(id), encodeMeta(&meta{NextRevision: e.Revision + 1}))
	case *domain.BackupUploaded:
		if found {
			return nil
		}
		if _, err := location(d.TimeZone); err != nil {
			return err
		}
		return txn.Set(metaKey(id), encodeMeta(&meta{NextRevision: e.Revision + 1, TimeZone: d.TimeZone}))
	}
	if !found {
		return fmt.Errorf("apply %s at position %d: %w", e.Type, e.Position,
			domain.NotFound("apply backup event", "backup instance", string(id)))
	}
	if e.Revision < m.NextRevision {
		return nil // applied already
	}
	m.NextRevision = e.Revision + 1
	switch d := d.(type) {
	case *domain.BackupEnabled:
		if _, err := location(d.TimeZone); err != nil {
			return err
		}
		m.TimeZone = d.TimeZone
	case *domain.BackupReset, *domain.BackupReleased, *domain.BackupUploadDeleted:
		if err := txn.DeletePrefix(base(domain.DataRef(id, m.Generation))); err != nil {
			return err
		}
		*m = meta{Generation: m.Generation + 1, NextRevision: m.NextRevision}
	case *domain.BackupCheckpointed:
		if d.Generation == m.Generation && d.Seq > m.LastSeq {
			ref := domain.DataRef(id, m.Generation)
			if d.Seq != m.LastSeq+1 {
				return domain.Corruption("backup data %s: checkpoint %d follows %d", ref, d.Seq, m.LastSeq)
			}
			if err := applyCheckpoint(txn, ref, m, d, data); err != nil {
				return fmt.Errorf("apply checkpoint %d of %s: %w", d.Seq, ref, err)
			}
		}
	case *domain.BackupBaseStored:
		if d.Generation == m.Generation && d.Seq <= m.LastSeq {
			ref := domain.DataRef(id, m.Generation)
			if err := applyBase(txn, ref, m, d, data); err != nil {
				return fmt.Errorf("apply the base of checkpoint %d of %s: %w", d.Seq, ref, err)
			}
		}
	}
	return txn.Set(metaKey(id), encodeMeta(m))
}

// applyBase records a base, and, when it holds a checkpoint's state (that
// checkpoint's summary says InBase), makes its rows and live index from
// the base's items.
func applyBase(txn projections.Txn, ref string, m *meta, d *domain.BackupBaseStored, data Data) error {
	info := BaseInfo{Seq: d.Seq, At: d.At, Next: d.Next, Parts: d.Parts, Items: d.Items, Versions: d.Versions, StateDigest: d.StateDigest}
	if err := txn.Set(baseKey(ref, d.Seq), encodeBase(&info)); err != nil {
		return err
	}
	sum, err := Checkpoint(txn, ref, d.Seq)
	if err != nil {
		return err
	}
	if !sum.InBase {
		return nil
	}
	if data.Base == nil {
		return nil // gone with its generation, which a later event destroys
	}
	if m.LiveKeys+m.LiveSecrets > 0 {
		return domain.Corruption("backup data %s: a base holds checkpoint %d, whose state has %d items already", ref, d.Seq, m.LiveKeys+m.LiveSecrets)
	}
	load := data.Load
	if load == nil {
		load = func(fn func(add projections.AddSorted) error) error {
			return fn(func(_ int, key, value []byte) error { return txn.Set(key, value) })
		}
	}
	var last BaseItem
	err = load(func(add projections.AddSorted) error {
		return data.Base(func(it *BaseItem) error {
			kind := kindByte(it.Kind)
			switch {
			case kind == 0 || it.ID == "" || it.Versions == 0:
				return domain.Corruption("backup data %s: a base item %s %q with %d versions", ref, it.Kind, it.ID, it.Versions)
			case last.ID != "" && (it.Kind < last.Kind || it.Kind == last.Kind && it.ID <= last.ID):
				return domain.Corruption("backup data %s: base items out of order", ref)
			}
			last.Kind, last.ID = it.Kind, it.ID
			x := row{To: open, Versions: it.Versions, CreatedAt: it.CreatedAt, ChangedAt: it.ChangedAt, CreateSeq: d.Seq, Text: it.Description}
			if kind == kindSecret {
				x.Text, m.LiveSecrets = it.KeyID, m.LiveSecrets+1
			} else {
				m.LiveKeys++
			}
			m.Digest.add(term(kind, it.ID, x.CreateSeq, x.Versions, x.Text))
			if err := add(runRows, rowKey(ref, kind, it.ID, d.Seq), encodeRow(&x)); err != nil {
				return err
			}
			return add(runLive, liveKey(ref, kind, it.ID), liveValue(d.Seq, &x))
		})
	})
	if err != nil {
		return err
	}
	if m.LiveKeys+m.LiveSecrets != d.Items {
		return domain.Corruption("backup data %s: the base of checkpoint %d holds %d items, its record %d", ref, d.Seq, m.LiveKeys+m.LiveSecrets, d.Items)
	}
	sum.LiveKeys, sum.LiveSecrets, sum.StateDigest = m.LiveKeys, m.LiveSecrets, m.Digest.bytes()
	return txn.Set(checkpointKey(ref, d.Seq), encodeSummary(&sum))
}

func known(typ string) bool {
	switch typ {
	case domain.TypeBackupCreated, domain.TypeBackupEnabled, domain.TypeBackupExtended, domain.TypeBackupRenewed,
		domain.TypeBackupExpired, domain.TypeBackupReleased, domain.TypeBackupReset, domain.TypeBackupCheckpointed,
		domain.TypeBackupUploaded, domain.TypeBackupUploadDeleted, domain.TypeBackupBaseStored:
		return true
	}
	return false
}

func loadMeta(r projections.Reader, id domain.BackupID) (*meta, bool, error) {
	v, ok, err := r.Get(metaKey(id))
	if err != nil || !ok {
		return nil, false, err
	}
	m, err := decodeMeta(v)
	return m, err == nil, err
}

func location(tz string) (*time.Location, error) {
	if tz == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, domain.Errorf(domain.ErrFailedPrecondition, "load time zone", tz,
			"install the time zone database (tzdata) on this machine", "%v", err)
	}
	return loc, nil
}

// checkpoint is the work of applying one checkpoint: the items its slice
// touches, and the day entries it writes.
type checkpoint struct {
	txn      projections.Txn
	ref      string
	seq      uint64
	baseline bool // the first checkpoint: history from before enabling
	loc      *time.Location
	items    map[string]*work
	entries  map[string]*entry
	// pre holds the live index entries read ahead (prefetch), by kind and
	// ID, for the first look-up of each item; nil: absent.
	pre map[string][]byte
	// fromRows reads each item's state before the checkpoint from its
	// rows, not from the live index (rowBefore; see largeCheckpoint).
	fromRows bool
}

// work is one item during a checkpoint.
type work struct {
	kind   byte
	id     string
	before *row   // the row live at the previous checkpoint, if any
	from   uint64 // its fromSeq
	cur    *row   // the item now; nil when it does not exist
	// inc counts the incarnations created in this checkpoint.
	inc int
}

// entry is a day index entry waiting to be written.
type entry struct {
	kind byte
	id   string
	rec  row
}

func applyCheckpoint(txn projections.Txn, ref string, m *meta, d *domain.BackupCheckpointed, data Data) error {
	large, err := loadable(txn, d, data)
	if err != nil {
		return err
	}
	if large {
		err = applyLarge(txn, ref, m, d, data)
	} else {
		err = applyWhole(txn, ref, m, d, data.Slice)
	}
	if err != nil {
		return err
	}
	s := Summary{Seq: d.Seq, Full: d.Full, At: d.At, Day: d.Day, From: d.From, Next: d.Next,
		LiveKeys: m.LiveKeys, LiveSecrets: m.LiveSecrets, StateDigest: m.Digest.bytes(),
		Parts: d.SliceParts(), InBase: d.InBase, Digest: d.Digest}
	if err := txn.Set(checkpointKey(ref, d.Seq), encodeSummary(&s)); err != nil {
		return err
	}
	day := DayInfo{Day: d.Day}
	v, ok, err := txn.Get(dayRecordKey(ref, d.Day))
	if err != nil {
		return err
	}
	if ok {
		if day, err = decodeDay(d.Day, v); err != nil {
			return err
		}
	}
	if d.Full && day.FullSeq == 0 {
		day.FullSeq = d.Seq
	}
	day.LastSeq = d.Seq
	m.LastSeq = d.Seq
	return txn.Set(dayRecordKey(ref, d.Day), encodeDay(&day))
}

// applyWhole works out checkpoint d's items in memory and writes them into
// txn.
func applyWhole(txn projections.Txn, ref string, m *meta, d *domain.BackupCheckpointed, slice Events) error {
	loc, err := location(m.TimeZone)
	if err != nil {
		return err
	}
	c := &checkpoint{txn: txn, ref: ref, seq: d.Seq, baseline: d.Seq == 1, loc: loc,
		items: map[string]*work{}, entries: map[string]*entry{}}
	if mg, ok := txn.(projections.MultiGetter); ok && slice != nil {
		read, err := c.prefetch(mg, slice)
		if err != nil {
			return err
		}
		if read != nil {
			slice = read
		}
	}
	if slice != nil {
		var prev uint64
		n := 0
		err := slice(func(e *domain.Event) error {
			if e.Revision < d.From || e.Revision >= d.Next || (n > 0 && e.Revision <= prev) {
				return domain.Corruption("slice event %s has revision %d, outside [%d, %d) or out of order", e.ID, e.Revision, d.From, d.Next)
			}
			prev, n = e.Revision, n+1
			return c.event(e)
		})
		if err != nil {
			return err
		}
	}
	return c.flush(m)
}

// event records one slice event. KMS events other than key and secret
// changes (InstanceCreated, InstanceReleased) and unknown types change
// nothing.
func (c *checkpoint) event(e *domain.Event) error {
	d, err := itemData(e)
	if err != nil || d == nil {
		return err
	}
	switch d := d.(type) {
	case *domain.KeyCreated:
		return c.create(e, kindKey, string(d.Key), d.Description)
	case *domain.KeyRotated:
		return c.rotate(e, kindKey, string(d.Key), d.Version, "")
	case *domain.KeyDeleted:
		return c.remove(e, kindKey, string(d.Key))
	case *domain.SecretCreated:
		return c.create(e, kindSecret, d.Name, string(d.Key))
	case *domain.SecretRotated:
		return c.rotate(e, kindSecret, d.Name, d.Version, string(d.Key))
	case *domain.SecretDeleted:
		return c.remove(e, kindSecret, d.Name)
	case *domain.KeyRestored:
		vs := make([]uint32, len(d.Versions))
		for i, v := range d.Versions {
			vs[i] = v.Version
		}
		return c.restore(e, kindKey, string(d.Key), d.Description, vs)
	case *domain.SecretRestored:
		vs := make([]uint32, len(d.Versions))
		for i, v := range d.Versions {
			vs[i] = v.Version
		}
		return c.restore(e, kindSecret, d.Name, string(d.Key), vs)
	}
	return nil
}

// restore records an item restored with all its versions (numbered vs): a
// create (it shows among the day's created items) with every version.
func (c *checkpoint) restore(e *domain.Event, kind byte, id, text string, vs []uint32) error {
	if len(vs) == 0 {
		return domain.Corruption("slice event %s restores %s %s without versions", e.ID, kindName(kind), id)
	}
	for i, v := range vs {
		if v != uint32(i)+1 {
			return domain.Corruption("slice event %s restores %s %s with version %d at place %d", e.ID, kindName(kind), id, v, i+1)
		}
	}
	if err := c.create(e, kind, id, text); err != nil {
		return err
	}
	w, err := c.item(kind, id)
	if err != nil {
		return err
	}
	w.cur.Versions = uint32(len(vs))
	c.index(e, incrementalTab(kind), w)
	return nil
}

// prefetch reads the live index entries of the first maxPrefetch items the
// slice changes, all at once (a look-up in a large state costs several
// times one in a small state; side by side they cost less), in a first
// pass over the slice. A slice of at most maxPrefetch events is kept from
// that pass and returned as read, to be walked again from memory; a
// longer one is read again (read nil).
func (c *checkpoint) prefetch(mg projections.MultiGetter, slice Events) (read Events, err error) {
	seen := map[string]bool{}
	var keys [][]byte
	var names []string
	var kept []domain.Event
	err = slice(func(e *domain.Event) error {
		if len(kept) == maxPrefetch {
			return errPrefetchFull
		}
		ev := *e
		ev.Data = slices.Clone(e.Data)
		kept = append(kept, ev)
		kind, id, ok, err := changedItem(e)
		if err != nil || !ok || seen[string(kind)+id] {
			return err
		}
		seen[string(kind)+id] = true
		keys, names = append(keys, liveKey(c.ref, kind, id)), append(names, string(kind)+id)
		return nil
	})
	full := errors.Is(err, errPrefetchFull)
	if err != nil && !full {
		return nil, err
	}
	if !full {
		read = func(fn func(*domain.Event) error) error {
			for i := range kept {
				if err := fn(&kept[i]); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if len(keys) < 2 {
		return read, nil
	}
	values, found, err := mg.GetMany(keys)
	if err != nil {
		return nil, err
	}
	c.pre = make(map[string][]byte, len(keys))
	for i, k := range names {
		if found[i] {
			c.pre[k] = values[i]
		} else {
			c.pre[k] = nil
		}
	}
	return read, nil
}

// maxPrefetch bounds the events of a slice a checkpoint keeps from its
// first pass (and so the items it reads ahead); errPrefetchFull ends the
// pass beyond them.
const maxPrefetch = 1024

var errPrefetchFull = errors.New("backupdata: prefetch full")

// itemData decodes a slice event that changes a key or a secret; nil for
// any other event.
func itemData(e *domain.Event) (domain.EventData, error) {
	switch e.Type {
	case domain.TypeKeyCreated, domain.TypeKeyRotated, domain.TypeKeyDeleted, domain.TypeKeyRestored,
		domain.TypeSecretCreated, domain.TypeSecretRotated, domain.TypeSecretDeleted, domain.TypeSecretRestored:
		return e.Decode()
	}
	return nil, nil
}

// changedItem returns the item an event of a slice changes, if any.
func changedItem(e *domain.Event) (kind byte, id string, ok bool, err error) {
	d, err := itemData(e)
	switch d := d.(type) {
	case *domain.KeyCreated:
		return kindKey, string(d.Key), true, nil
	case *domain.KeyRotated:
		return kindKey, string(d.Key), true, nil
	case *domain.KeyDeleted:
		return kindKey, string(d.Key), true, nil
	case *domain.KeyRestored:
		return kindKey, string(d.Key), true, nil
	case *domain.SecretCreated:
		return kindSecret, d.Name, true, nil
	case *domain.SecretRotated:
		return kindSecret, d.Name, true, nil
	case *domain.SecretDeleted:
		return kindSecret, d.Name, true, nil
	case *domain.SecretRestored:
		return kindSecret, d.Name, true, nil
	}
	return 0, "", false, err
}

// item returns the work of an item, loading its current row the first time:
// one look-up of the live index, which holds the row (a live index of the
// earlier layout holds only its fromSeq, and the row is read apart).
func (c *checkpoint) item(kind byte, id string) (*work, error) {
	k := string(kind) + id
	if w, ok := c.items[k]; ok {
		return w, nil
	}
	w := &work{kind: kind, id: id}
	if c.fromRows {
		var err error
		if w.from, w.before, err = c.rowBefore(kind, id); err != nil {
			return nil, err
		}
		if w.before != nil {
			cur := *w.before
			w.cur = &cur
		}
		c.items[k] = w
		return w, nil
	}
	var err error
	v, ok := c.pre[k]
	if ok {
		delete(c.pre, k)
		ok = v != nil
	} else if v, ok, err = c.txn.Get(liveKey(c.ref, kind, id)); err != nil {
		return nil, err
	}
	if ok {
		if len(v) < 8 {
			return nil, domain.Corruption("backup data %s: bad live index of %s %s", c.ref, kindName(kind), id)
		}
		w.from = binary.BigEndian.Uint64(v)
		rv := v[8:]
		if len(rv) == 0 {
			if rv, ok, err = c.txn.Get(rowKey(c.ref, kind, id, w.from)); err != nil {
				return nil, err
			} else if !ok {
				return nil, domain.Corruption("backup data %s: live %s %s has no row %d", c.ref, kindName(kind), id, w.from)
			}
		}
		if w.before, err = decodeRow(rv); err != nil {
			return nil, err
		}
		cur := *w.before
		w.cur = &cur
	}
	c.items[k] = w
	return w, nil
}

func (c *checkpoint) create(e *domain.Event, kind byte, id, text string) error {
	w, err := c.item(kind, id)
	if err != nil {
		return err
	}
	if w.cur != nil {
		return domain.Corruption("slice event %s creates %s %s, which exists", e.ID, kindName(kind), id)
	}
	w.cur = &row{To: open, Versions: 1, CreatedAt: e.OccurredAt, ChangedAt: e.OccurredAt, Text: text, CreateSeq: c.seq}
	c.index(e, incrementalTab(kind), w)
	return nil
}

// rotate adds a version; a secret's keyID is the key of the new version.
func (c *checkpoint) rotate(e *domain.Event, kind byte, id string, version uint32, keyID string) error {
	w, err := c.item(kind, id)
	if err != nil {
		return err
	}
	if w.cur == nil {
		return domain.Corruption("slice event %s rotates %s %s, which does not exist", e.ID, kindName(kind), id)
	}
	if version != w.cur.Versions+1 {
		return domain.Corruption("slice event %s adds version %d to %s %s, which has %d", e.ID, version, kindName(kind), id, w.cur.Versions)
	}
	w.cur.Versions, w.cur.ChangedAt = version, e.OccurredAt
	if kind == kindSecret {
		w.cur.Text = keyID
	}
	c.index(e, rotatedTab(kind), w)
	return nil
}

func (c *checkpoint) remove(e *domain.Event, kind byte, id string) error {
	w, err := c.item(kind, id)
	if err != nil {
		return err
	}
	if w.cur == nil {
		return domain.Corruption("slice event %s deletes %s %s, which does not exist", e.ID, kindName(kind), id)
	}
	w.cur.ChangedAt = e.OccurredAt
	c.index(e, Deleted, w)
	w.cur = nil
	return nil
}

// index records a change in the day index of the change's own day; the
// first checkpoint's history is not indexed.
func (c *checkpoint) index(e *domain.Event, tab Tab, w *work) {
	if c.baseline {
		return
	}
	k := string(dayKey(c.ref, domain.DayOf(e.OccurredAt, c.loc), tab, w.kind, w.id))
	c.entries[k] = &entry{kind: w.kind, id: w.id, rec: *w.cur}
}

func incrementalTab(kind byte) Tab {
	if kind == kindKey {
		return IncrementalKeys
	}
	return IncrementalSecrets
}

func rotatedTab(kind byte) Tab {
	if kind == kindKey {
		return RotatedKeys
	}
	return RotatedSecrets
}

// changeWriter takes the writes of a checkpoint: rows, live index entries
// (a nil value deletes the entry) and day index entries.
type changeWriter struct {
	row, live, day func(key, value []byte) error
}

// write writes, in the order of the items' keys, what the checkpoint
// changed: for every item whose state differs from the previous
// checkpoint's, the old row is closed at this checkpoint and a new one
// opened, and its live index entry follows; the digest and counts in m
// follow too. The rows of an item come in key order (its old row's
// fromSeq is before this checkpoint). Then the day index entries, in key
// order.
func (c *checkpoint) write(m *meta, out changeWriter) error {
	keys := make([]string, 0, len(c.items))
	for k := range c.items {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w := c.items[k]
		if w.before == nil && w.cur == nil || w.before != nil && w.cur != nil && w.before.same(w.cur) {
			continue
		}
		live := &m.LiveKeys
		if w.kind == kindSecret {
			live = &m.LiveSecrets
		}
		if w.before != nil {
			closed := *w.before
			closed.To = c.seq
			if err := out.row(rowKey(c.ref, w.kind, w.id, w.from), encodeRow(&closed)); err != nil {
				return err
			}
			if *live == 0 {
				return domain.Corruption("backup data %s: live count below zero", c.ref)
			}
			*live--
			m.Digest.sub(term(w.kind, w.id, w.before.CreateSeq, w.before.Versions, w.before.Text))
		}
		if w.cur == nil {
			if err := out.live(liveKey(c.ref, w.kind, w.id), nil); err != nil {
				return err
			}
			continue
		}
		if err := out.row(rowKey(c.ref, w.kind, w.id, c.seq), encodeRow(w.cur)); err != nil {
			return err
		}
		if err := out.live(liveKey(c.ref, w.kind, w.id), liveValue(c.seq, w.cur)); err != nil {
			return err
		}
		*live++
		m.Digest.add(term(w.kind, w.id, w.cur.CreateSeq, w.cur.Versions, w.cur.Text))
	}
	keys = keys[:0]
	for k := range c.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		en := c.entries[k]
		en.rec.To = 0
		if err := out.day([]byte(k), encodeRow(&en.rec)); err != nil {
			return err
		}
	}
	return nil
}

// flush writes what the checkpoint changed into its transaction.
func (c *checkpoint) flush(m *meta) error {
	return c.write(m, changeWriter{row: c.txn.Set, day: c.txn.Set, live: func(k, v []byte) error {
		if v == nil {
			return c.txn.Delete(k)
		}
		return c.txn.Set(k, v)
	}})
}
