package commands

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/dayview"
)

// Bases (docs/restore-engine.md): the complete state of a generation at
// one checkpoint, in the state layout (projections/dayview), stored as
// sstable parts in the blob store, so that a read ingests them instead of
// replaying what came before. A base is written by iterating a scratch
// store that holds the state, and loaded by ingesting its parts into one.

// MaxBasePart is where a base is cut into parts: a part ends at the first
// item boundary at or after it.
const MaxBasePart = 16 << 20

// MaxUploadBasePart is where an upload's base is cut into parts: smaller
// than MaxBasePart, because a part is whole in memory while it is stored
// (its buffer, the blob store's write and its log), and an upload's base
// is written while a client waits, beside the rest of its pass; more
// parts cost a restore little (it ingests them all at once).
const MaxUploadBasePart = 4 << 20

// basePartLimit is where bases are cut into parts.
func (s *BackupStorage) basePartLimit() int64 {
	if s.BasePartBytes > 0 {
		return int64(s.BasePartBytes)
	}
	return MaxBasePart
}

// uploadBasePartLimit is where an upload's base is cut into parts.
func (s *BackupStorage) uploadBasePartLimit() int64 {
	return min(s.basePartLimit(), MaxUploadBasePart)
}

// stateDigest digests the state sc holds (see dayview.Digest), reading it
// item by item. fn, when set, sees each item (to open its versions).
func stateDigest(ctx context.Context, sc Scratch, fn func(*dayview.Item) error) (sum [32]byte, items, versions uint64, err error) {
	d := dayview.NewDigest()
	err = eachItem(ctx, sc, func(it *dayview.Item) error {
		d.Add(it)
		if fn != nil {
			return fn(it)
		}
		return nil
	})
	if err != nil {
		return sum, 0, 0, err
	}
	sum, items, versions = d.Sum()
	return sum, items, versions, nil
}

// eachItem calls fn with each item of the state sc holds, in key order.
// Errors: domain.ErrCorrupt for an item marked deleted (a state at an
// instant holds none) or records that do not read; fn's; ctx's.
func eachItem(ctx context.Context, sc Scratch, fn func(*dayview.Item) error) error {
	it, err := sc.NewIter(nil, nil)
	if err != nil {
		return err
	}
	defer it.Close()
	it.First()
	r := dayview.NewItemReader(it)
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		item, ok, err := r.Next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if !item.DeletedAt.IsZero() {
			return domain.Corruption("state layout: %s is marked deleted in the state at an instant", item.ID)
		}
		if err := fn(item); err != nil {
			return err
		}
	}
	return it.Error()
}

// writeBase writes the state sc holds (flushed, at an instant) as the
// parts of a base of checkpoint seq of generation ref, cut at limit
// (basePartLimit), stores them, and
// returns them with the state's digest, computed from the records as they
// are written (one pass over the state). A part holds whole items; the
// parts do not overlap. On failure the parts stored are deleted again
// (best effort: a part left behind is destroyed with its generation).
func (s *BackupStorage) writeBase(ctx context.Context, ref string, seq uint64, sc Scratch, limit int64) ([]domain.BasePart, [32]byte, error) {
	bw := baseWriter{s: s, ref: ref, seq: seq, run: s.IDs.NewULID(), limit: limit, buffers: 2}
	parts, digest, refused, err := bw.write(ctx, func(split func(key, value []byte, size int64) (bool, error), put func(*ScratchTable) error) error {
		return sc.WriteTables(ctx, nil, nil, split, put)
	})
	if err == nil && refused != nil {
		s.deleteParts(ctx, ref, parts)
		return nil, digest, refused
	}
	return parts, digest, err
}

// baseWriter cuts the records of a state, handed to it in key order, into
// the parts of a base, stores them and digests the state (writeBase).
type baseWriter struct {
	s     *BackupStorage
	ref   string
	seq   uint64
	run   ulid.ULID // in the parts' names (taken by the caller: IDs is not safe for concurrent use)
	limit int64
	// buffers is how many parts may be in memory at a time (see
	// partStore): 2, or 1 where the records come from a producer slower
	// than the writing, which a part being stored does not hold up.
	buffers int
}

// write has the records written as tables by write (WriteTables or
// WriteSortedTables, with split and put), and returns the parts stored
// and the state's digest. A record the digest refuses (the state does not
// read as items) does not stop the writing: write returns every part with
// refused, so that a caller that goes on to write the state another way
// can load them. On any other failure the parts stored are deleted again
// (best effort: a part left behind is destroyed with its generation).
func (b baseWriter) write(ctx context.Context, write func(split func(key, value []byte, size int64) (bool, error), put func(*ScratchTable) error) error) (parts []domain.BasePart, digest [32]byte, refused, err error) {
	defer func() { // runs after the part store's own (below) has set parts
		if err != nil {
			b.s.deleteParts(ctx, b.ref, parts)
			parts = nil
		}
	}()
	var cur, done domain.BasePart // the counts of the part being written, and of the one just cut
	cut := false
	sum := newPushDigest()
	split := func(key, value []byte, size int64) (bool, error) {
		rec, err := dayview.ParseKey(key)
		if err != nil {
			return false, err
		}
		if refused == nil {
			refused = sum.add(&rec, key, value)
		}
		c := rec.IsRow() && size >= b.limit // a row starts an item
		if c {
			done, cur, cut = cur, domain.BasePart{}, true
		}
		if rec.IsRow() {
			cur.Items++
		} else if rec.IsVersion() {
			cur.Versions++
		}
		return c, nil
	}
	// A part is stored (hashed, then PutBlob) by a goroutine of its own
	// while the next one is written, each part read into one of
	// b.buffers buffers of a part's size: made again only for a larger
	// part (a bytes.Buffer would grow to twice the largest and more), so
	// that that many parts at most are in memory at a time.
	st := newPartStore(ctx, b.s.Blobs, b.ref, b.buffers)
	defer func() {
		stored, serr := st.finish()
		parts = stored
		if err == nil {
			err = serr
		}
	}()
	put := func(t *ScratchTable) error {
		counts := cur
		if cut {
			counts, cut = done, false
		}
		p := domain.BasePart{Name: fmt.Sprintf("base-%d-%s-%d", b.seq, b.run, st.n), Size: uint64(t.Size),
			First: bytes.Clone(t.First), Last: bytes.Clone(t.Last), Items: counts.Items, Versions: counts.Versions}
		return st.put(p, t)
	}
	// On failure, the parts stored are deleted (the deferred cleanup).
	if err := write(split, put); err != nil {
		return nil, digest, nil, err
	}
	if refused == nil {
		digest, refused = sum.finish()
	}
	return nil, digest, refused, nil // parts: what the store stored
}

// partStore stores the parts of a base in order, one at a time, on a
// goroutine of its own, while the caller writes the next.
type partStore struct {
	ctx   context.Context
	blobs BlobStore
	ref   string
	n     int // parts handed to put
	jobs  chan partJob
	free  chan []byte // the two buffers
	done  chan struct{}
	// Written by the goroutine, read after done or through failed.
	parts  []domain.BasePart
	err    error
	failed chan struct{} // closed when err is set
}

type partJob struct {
	p    domain.BasePart
	data []byte
}

func newPartStore(ctx context.Context, blobs BlobStore, ref string, buffers int) *partStore {
	st := &partStore{ctx: ctx, blobs: blobs, ref: ref, jobs: make(chan partJob), free: make(chan []byte, buffers),
		done: make(chan struct{}), failed: make(chan struct{})}
	for range buffers {
		st.free <- nil
	}
	go st.run()
	return st
}

func (st *partStore) run() {
	defer close(st.done)
	for j := range st.jobs {
		if st.err == nil {
			j.p.Digest = sha256.Sum256(j.data)
			if err := st.blobs.PutBlob(st.ctx, st.ref, j.p.Name, j.data); err != nil {
				st.err = fmt.Errorf("store base part %s: %w", j.p.Name, err)
				close(st.failed)
			} else {
				st.parts = append(st.parts, j.p)
			}
		}
		st.free <- j.data
	}
}

// put reads t into a free buffer and hands it to the goroutine with p;
// it fails once a part before failed to store.
func (st *partStore) put(p domain.BasePart, t *ScratchTable) error {
	var data []byte
	select {
	case data = <-st.free:
	case <-st.failed:
		return st.err
	}
	if int64(cap(data)) < t.Size {
		data = nil // the old one can go before the new one is made
		data = make([]byte, t.Size)
	}
	data = data[:t.Size]
	if _, err := io.ReadFull(t.Data, data); err != nil {
		st.free <- data
		return err
	}
	st.n++
	select {
	case st.jobs <- partJob{p: p, data: data}:
		return nil
	case <-st.failed:
		st.free <- data
		return st.err
	}
}

// finish waits for the parts handed over to be stored and returns them,
// in order, with the first failure.
func (st *partStore) finish() ([]domain.BasePart, error) {
	close(st.jobs)
	<-st.done
	return st.parts, st.err
}

// pushDigest is stateDigest fed record by record, in key order, as
// Scratch.WriteTables hands them: it gathers an item's records and reads
// each whole item through dayview.ItemReader (the same checks as
// stateDigest's) when the next one starts.
type pushDigest struct {
	d    *dayview.Digest
	r    *dayview.ItemReader
	c    recordCursor
	kind byte
	id   []byte
}

func newPushDigest() *pushDigest {
	p := &pushDigest{d: dayview.NewDigest()}
	p.r = dayview.NewItemReader(&p.c)
	return p
}

// add takes the next record, rec parsed from key.
func (p *pushDigest) add(rec *dayview.Record, key, value []byte) error {
	if len(p.c.recs) > 0 && (rec.Kind != p.kind || !bytes.Equal(rec.ID, p.id)) {
		if err := p.item(); err != nil {
			return err
		}
	}
	if len(p.c.recs) == 0 {
		p.kind, p.id = rec.Kind, append(p.id[:0], rec.ID...)
	}
	p.c.add(key, value)
	return nil
}

// item digests the item gathered.
func (p *pushDigest) item() error {
	p.c.i = 0
	it, ok, err := p.r.Next()
	if err != nil {
		return err
	}
	if ok {
		if !it.DeletedAt.IsZero() {
			return domain.Corruption("state layout: %s is marked deleted in the state at an instant", it.ID)
		}
		p.d.Add(it)
	}
	p.c.reset()
	return nil
}

// finish digests the last item and returns the state's digest.
func (p *pushDigest) finish() ([32]byte, error) {
	if len(p.c.recs) > 0 {
		if err := p.item(); err != nil {
			return [32]byte{}, err
		}
	}
	sum, _, _ := p.d.Sum()
	return sum, nil
}

// recordCursor is a dayview.Cursor over records held in memory.
type recordCursor struct {
	buf  []byte
	recs []struct{ k, v [2]int }
	i    int
}

func (c *recordCursor) add(key, value []byte) {
	k := [2]int{len(c.buf), len(c.buf) + len(key)}
	c.buf = append(c.buf, key...)
	v := [2]int{len(c.buf), len(c.buf) + len(value)}
	c.buf = append(c.buf, value...)
	c.recs = append(c.recs, struct{ k, v [2]int }{k, v})
}

func (c *recordCursor) reset() { c.buf, c.recs, c.i = c.buf[:0], c.recs[:0], 0 }

func (c *recordCursor) Valid() bool { return c.i < len(c.recs) }
func (c *recordCursor) Key() []byte {
	r := c.recs[c.i].k
	return c.buf[r[0]:r[1]:r[1]]
}
func (c *recordCursor) Value() ([]byte, error) {
	r := c.recs[c.i].v
	return c.buf[r[0]:r[1]:r[1]], nil
}
func (c *recordCursor) Next() bool { c.i++; return c.Valid() }

// deleteParts deletes base parts that will not be recorded.
func (s *BackupStorage) deleteParts(ctx context.Context, ref string, parts []domain.BasePart) {
	names := make([]string, len(parts))
	for i, p := range parts {
		names[i] = p.Name
	}
	s.deleteBlobs(ctx, ref, names)
}

// deleteBlobs deletes blobs of ref stored for events that will not be
// recorded (see appendRefused), best effort: one left behind is destroyed
// with its generation.
func (s *BackupStorage) deleteBlobs(ctx context.Context, ref string, names []string) {
	ctx = context.WithoutCancel(ctx) // cleaning up after a failure, whatever ended it
	for _, name := range names {
		_ = s.Blobs.DeleteBlob(ctx, ref, name)
	}
}

// loadBase ingests the parts of a base of generation ref into sc: every
// part, or, with only, those holding one of its items. Each part is read
// from the blob store as it is copied (never whole in memory) and checked
// against the digest its record holds before anything is ingested.
// Errors: domain.ErrNotFound for a part that is gone; domain.ErrCorrupt;
// the stores'.
func (s *BackupStorage) loadBase(ctx context.Context, ref string, parts []domain.BasePart, sc Scratch, only map[ItemRef]bool) error {
	added := 0
	for _, p := range parts {
		if only != nil && !partHolds(p, only) {
			continue
		}
		if err := s.addBasePart(ctx, ref, p, sc); err != nil {
			return err
		}
		added++
	}
	if added == 0 {
		return nil
	}
	return sc.Ingest(ctx)
}

// addBasePart copies one part into sc, checking its digest.
func (s *BackupStorage) addBasePart(ctx context.Context, ref string, p domain.BasePart, sc Scratch) error {
	r, err := s.Blobs.OpenBlob(ctx, ref, p.Name)
	if err != nil {
		return fmt.Errorf("read base part %s: %w", p.Name, err)
	}
	defer r.Close()
	// The store checks the blob against its own digest as it reads; a
	// reader that tells it spares a second hash of the part.
	d, tells := r.(BlobDigester)
	var h *hashingReader
	src := io.Reader(r)
	if !tells {
		h = &hashingReader{r: r, h: sha256.New()}
		src = h
	}
	n, err := sc.AddTable(src)
	if err != nil {
		return fmt.Errorf("read base part %s: %w", p.Name, err)
	}
	var sum [32]byte
	ok := true
	if tells {
		sum, ok = d.Digest()
	} else {
		h.h.Sum(sum[:0])
	}
	if !ok || uint64(n) != p.Size || sum != p.Digest {
		return domain.Corruption("base part %s of %s does not match its record", p.Name, ref)
	}
	return nil
}

// partHolds reports whether a base part may hold one of the items.
func partHolds(p domain.BasePart, only map[ItemRef]bool) bool {
	for r := range only {
		k, ok := kindByte(r.Kind)
		if !ok {
			continue
		}
		if bytes.Compare(dayview.ItemStart(k, r.ID), p.Last) <= 0 && bytes.Compare(dayview.ItemEnd(k, r.ID), p.First) > 0 {
			return true
		}
	}
	return false
}

// hashingReader hashes what it reads.
type hashingReader struct {
	r io.Reader
	h hash.Hash
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	return n, err
}

// baseItems walks the items of a base for the backupdata projection: its
// parts loaded into a scratch store, read item by item on a goroutine of
// its own, in batches of baseItemBatch, while fn takes the ones before
// (the projection writes their rows): four batches at most in memory.
func (s *BackupStorage) baseItems(ctx context.Context, ref string, parts []domain.BasePart) func(fn func(*backupdata.BaseItem) error) error {
	return func(fn func(*backupdata.BaseItem) error) error {
		if len(parts) == 0 {
			return nil
		}
		if s.Scratch == nil {
			return errors.New("no scratch store to read a base with")
		}
		sc, err := s.Scratch.OpenScratch(ctx)
		if err != nil {
			return err
		}
		defer sc.Close()
		if err := s.loadBase(ctx, ref, parts, sc, nil); err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		full := make(chan []backupdata.BaseItem, 2)
		free := make(chan []backupdata.BaseItem, 4)
		var rerr error // the reader's, read after full is closed
		go func() {
			defer close(full)
			batch := make([]backupdata.BaseItem, 0, baseItemBatch)
			send := func() error {
				select {
				case full <- batch:
				case <-ctx.Done():
					return ctx.Err()
				}
				select {
				case batch = <-free:
					batch = batch[:0]
				default:
					batch = make([]backupdata.BaseItem, 0, baseItemBatch)
				}
				return nil
			}
			rerr = eachItem(ctx, sc, func(it *dayview.Item) error {
				bi := backupdata.BaseItem{Kind: kindName(it.Kind), ID: it.ID, CreatedAt: it.Row.CreatedAt, ChangedAt: it.Row.CreatedAt,
					Description: it.Row.Description, Versions: uint32(len(it.Versions))}
				last := it.Versions[len(it.Versions)-1]
				if last.CreatedAt.After(bi.ChangedAt) {
					bi.ChangedAt = last.CreatedAt
				}
				if it.Kind == dayview.KindSecret {
					bi.KeyID = string(last.KeyID)
				}
				if batch = append(batch, bi); len(batch) < baseItemBatch {
					return nil
				}
				return send()
			})
			if rerr == nil && len(batch) > 0 {
				rerr = send()
			}
		}()
		var ferr error
		for batch := range full { // drained to the end: the reader has returned then
			for i := 0; ferr == nil && i < len(batch); i++ {
				if ferr = fn(&batch[i]); ferr != nil {
					cancel()
				}
			}
			select {
			case free <- batch:
			default:
			}
		}
		if ferr != nil {
			return ferr
		}
		return rerr
	}
}

// baseItemBatch is how many items baseItems hands over at a time.
const baseItemBatch = 512
