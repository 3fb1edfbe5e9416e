package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/dayview"
)

var _ RestoreSources = (*DayData)(nil)

// Open loads a restore point of b's current generation into a scratch
// store (RestoreSources): the newest base from before the point, if any,
// ingested from its parts, then the events of the checkpoints after it,
// replayed from their slice parts in revision order with blind writes:
//
//   - an instant T: every event that occurred at or before T;
//   - a whole day: the events before the day's start at an instant, then
//     the day's own events item by item as they last stood (a deleted
//     item kept as it was just before, marked deleted). Every event of the
//     day is found wherever its checkpoint fell: the first checkpoint at or
//     after the day's end (a catch-up after downtime) is read too.
//
// The generation's first checkpoint is the history from before enabling
// (or, for an upload, the state its day starts from): it is always
// replayed at an instant, so that nothing deleted before enabling shows.
// With only, the events of other items are not replayed, and reads leave
// them out. Memory: the scratch's cache and write buffer, and one slice
// part; nothing grows with the state or the history.
func (s *DayData) Open(ctx context.Context, b *domain.Backup, point RestorePoint, only []ItemRef) (RestoreSource, error) {
	return s.openThrough(ctx, b, point, only, 0)
}

// openThrough is Open reading no checkpoint after through (0: no limit).
func (s *DayData) openThrough(ctx context.Context, b *domain.Backup, point RestorePoint, only []ItemRef, through uint64) (RestoreSource, error) {
	l, err := s.newLoad(b, point, only, through)
	if err != nil {
		return nil, err
	}
	src, err := l.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("load restore point %s of %s: %w", describePoint(point), b.ID, err)
	}
	return src, nil
}

// openCheckpoint loads the state of the last checkpoint of point's day at
// or before point.At (zero: the day's last checkpoint), exactly as that
// checkpoint holds it: what a replay digests, so that two systems compare
// the same checkpoint. Errors: domain.ErrFailedPrecondition when the day
// has no checkpoint at or before the instant; Open's.
func (s *DayData) openCheckpoint(ctx context.Context, b *domain.Backup, point RestorePoint) (RestoreSource, error) {
	const op = "replay"
	ref := b.DataRef()
	lo, hi, ok, err := backupdata.DayRange(s.State, ref, point.Day)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, domain.Errorf(domain.ErrFailedPrecondition, op, string(point.Day), "", "the backup has no checkpoint on that day")
	}
	var last *backupdata.Summary
	for q := lo; q <= hi; q++ {
		sum, err := backupdata.Checkpoint(s.State, ref, q)
		if err != nil {
			return nil, err
		}
		if !point.At.IsZero() && sum.At.After(point.At) {
			break
		}
		last = &sum
	}
	if last == nil {
		at := point.At.UTC().Format(time.RFC3339)
		return nil, domain.Errorf(domain.ErrFailedPrecondition, op, at, "choose a later time of that day", "no checkpoint of %s is at or before %s", point.Day, at)
	}
	return s.openThrough(ctx, b, RestorePoint{Day: point.Day, At: last.At}, nil, last.Seq)
}

// newLoad prepares the load of point (see Open and openThrough).
func (s *DayData) newLoad(b *domain.Backup, point RestorePoint, only []ItemRef, through uint64) (*load, error) {
	const op = "load restore point"
	if s.Storage.Scratch == nil {
		return nil, domain.Errorf(domain.ErrUnavailable, op, string(b.ID), "", "no scratch store is configured")
	}
	loc, err := s.location(b)
	if err != nil {
		return nil, err
	}
	if _, err := domain.ParseDay(string(point.Day)); err != nil {
		return nil, err
	}
	l := &load{s: s, b: b, ref: b.DataRef(), point: point, dayStart: point.Day.Start(loc), dayEnd: point.Day.Next().Start(loc), through: through}
	if !point.At.IsZero() {
		if domain.DayOf(point.At, loc) != point.Day {
			return nil, domain.Invalid(op, "instant %s is not in day %s", point.At.Format(time.RFC3339), point.Day)
		}
		l.instant = true
	}
	if only != nil {
		l.only = map[ItemRef]bool{}
		for _, r := range only {
			l.only[r] = true
		}
	}
	return l, nil
}

func describePoint(p RestorePoint) string {
	if p.At.IsZero() {
		return "day " + string(p.Day)
	}
	return "instant " + p.At.UTC().Format(time.RFC3339Nano)
}

// load is one Open.
type load struct {
	s        *DayData
	b        *domain.Backup
	ref      string
	point    RestorePoint
	instant  bool
	dayStart time.Time
	dayEnd   time.Time
	only     map[ItemRef]bool
	through  uint64 // the last checkpoint read (0: up to the point's end)
	first    uint64 // a whole day: the first checkpoint read of the day
	apply    dayview.Applier
}

// past reports whether checkpoint at is the last one read: a checkpoint
// holds the events appended since the previous one, which occurred at or
// after the previous one's instant, so checkpoints are read up to the
// first past the point (which may still hold events of the point: a
// catch-up, or events of the very instant of the one before).
func (l *load) past(at time.Time) bool {
	if l.instant {
		return at.After(l.point.At)
	}
	return !at.Before(l.dayEnd)
}

// keep reports whether an event that occurred at t is part of the point,
// and in which mode it is applied.
func (l *load) keep(t time.Time) (bool, dayview.Mode) {
	if l.instant {
		return !t.After(l.point.At), dayview.Instant
	}
	switch {
	case !t.Before(l.dayEnd):
		return false, dayview.Instant
	case t.Before(l.dayStart):
		return true, dayview.Instant
	}
	return true, dayview.WholeDay
}

func (l *load) run(ctx context.Context) (RestoreSource, error) {
	sc, err := l.s.Storage.Scratch.OpenScratch(ctx)
	if err != nil {
		return nil, err
	}
	src := &loadedSource{sc: sc, point: l.point, only: l.only}
	if src.seq, src.at, err = l.fill(ctx, sc); err != nil {
		_ = sc.Close()
		return nil, err
	}
	src.first = l.first
	if src.first == 0 {
		src.first = src.seq
	}
	if l.instant && src.at.After(l.point.At) {
		src.at = l.point.At
	} else if !l.instant && src.at.After(l.dayEnd) {
		src.at = l.dayEnd
	}
	return src, nil
}

// fill loads the point into sc (empty) and flushes it. It returns the last
// checkpoint read and its instant.
func (l *load) fill(ctx context.Context, sc Scratch) (seq uint64, at time.Time, err error) {
	last, err := backupdata.LastSeq(l.s.State, l.ref)
	if err != nil {
		return 0, at, err
	}
	if l.through > 0 {
		last = min(last, l.through)
	}
	if last == 0 {
		return 0, at, domain.Errorf(domain.ErrFailedPrecondition, "load restore point", string(l.b.ID), "", "the backup holds no checkpoint")
	}
	first, err := backupdata.Checkpoint(l.s.State, l.ref, 1)
	if err != nil {
		return 0, at, err
	}
	if l.instant && l.point.At.Before(first.At) {
		return 0, at, domain.Errorf(domain.ErrFailedPrecondition, "load restore point", l.point.At.UTC().Format(time.RFC3339), "choose a later time",
			"the backup holds nothing before its first checkpoint at %s", first.At.Format(time.RFC3339))
	}
	base, err := l.base(&first)
	if err != nil {
		return 0, at, err
	}
	start := uint64(1)
	if base != nil {
		if err := l.s.Storage.loadBase(ctx, l.ref, base.Parts, sc, l.only); err != nil {
			return 0, at, fmt.Errorf("load the base of checkpoint %d: %w", base.Seq, err)
		}
		start, seq, at = base.Seq+1, base.Seq, base.At
	}
	for q := start; q <= last; q++ {
		sum, err := backupdata.Checkpoint(l.s.State, l.ref, q)
		if err != nil {
			return 0, at, err
		}
		if err := l.replay(ctx, sc, &sum); err != nil {
			return 0, at, err
		}
		seq, at = sum.Seq, sum.At
		if l.first == 0 && !l.instant && !sum.At.Before(l.dayStart) {
			l.first = sum.Seq
		}
		if l.past(sum.At) {
			break
		}
	}
	return seq, at, sc.Flush()
}

// base chooses the base the point is loaded from: the newest from before
// the point (for an instant, at or before it; for a whole day, before the
// day's start, so that every event of the day is replayed in the day's
// mode), or, when there is none, the generation's base 0 (which holds
// nothing of the day's own but what happened before enabling). nil: no
// base (a generation of the first version), replay from checkpoint 1.
func (l *load) base(first *backupdata.Summary) (*backupdata.BaseInfo, error) {
	bases, err := backupdata.Bases(l.s.State, l.ref)
	if err != nil {
		return nil, err
	}
	var best *backupdata.BaseInfo
	for i := range bases {
		b := &bases[i]
		if l.s.BaseLimit > 0 && b.Seq > l.s.BaseLimit {
			break
		}
		if (l.instant && !b.At.After(l.point.At)) || (!l.instant && b.At.Before(l.dayStart)) {
			best = b
		}
	}
	if best == nil && len(bases) > 0 && bases[0].Seq == 1 {
		best = &bases[0]
	}
	if first.InBase && best == nil {
		return nil, domain.Errorf(domain.ErrUnavailable, "load restore point", l.ref, "wait for the read model to apply it",
			"checkpoint 1 is held by a base the read model does not show")
	}
	return best, nil
}

// replay applies the events of one checkpoint's slice that belong to the
// point.
func (l *load) replay(ctx context.Context, sc Scratch, sum *backupdata.Summary) error {
	history := sum.Seq == 1 // before enabling, or an upload's starting state
	return eachSliceEvent(ctx, l.s.Storage.Blobs, l.ref, sum.SliceParts(), func(e *domain.Event) error {
		keep, mode := true, dayview.Instant
		if !history {
			if keep, mode = l.keep(e.OccurredAt); !keep {
				return nil
			}
		}
		c, ok, err := dayview.ChangeOf(e)
		if err != nil || !ok {
			return err
		}
		if l.only != nil && !l.only[ItemRef{Kind: kindName(c.Kind), ID: string(c.ID)}] {
			return nil
		}
		return l.apply.Apply(sc, mode, &c)
	})
}

func kindName(k byte) string {
	if k == dayview.KindKey {
		return ItemKindKey
	}
	return ItemKindSecret
}

func kindByte(kind string) (byte, bool) {
	switch kind {
	case ItemKindKey:
		return dayview.KindKey, true
	case ItemKindSecret:
		return dayview.KindSecret, true
	}
	return 0, false
}

// loadedSource is a loaded restore point (RestoreSource).
type loadedSource struct {
	sc     Scratch
	point  RestorePoint
	only   map[ItemRef]bool
	seq    uint64
	first  uint64
	at     time.Time
	counts *[3]uint64
	item   BackedUpItem
	look   ScratchIter // Lookup's, opened at the first
	closed bool
}

var errSourceClosed = &domain.Error{Op: "read restore point", Kind: domain.ErrUnavailable, Msg: "the restore source is closed"}

func (s *loadedSource) Point() RestorePoint                 { return s.point }
func (s *loadedSource) Covered() (at time.Time, seq uint64) { return s.at, s.seq }

// FirstCheckpoint is the first checkpoint of the point's own: for a whole
// day, the first read that was taken within or after the day; for an
// instant, the last read (Covered's). Plans show it as their from_seq.
func (s *loadedSource) FirstCheckpoint() uint64 { return s.first }

func (s *loadedSource) Counts(ctx context.Context) (keys, secrets, versions uint64, err error) {
	if s.counts == nil {
		var c [3]uint64
		err := s.each(ctx, ItemRef{}, func(it *dayview.Item) error {
			if it.Kind == dayview.KindKey {
				c[0]++
			} else {
				c[1]++
			}
			c[2] += uint64(len(it.Versions))
			return nil
		})
		if err != nil {
			return 0, 0, 0, err
		}
		s.counts = &c
	}
	return s.counts[0], s.counts[1], s.counts[2], nil
}

func (s *loadedSource) Each(ctx context.Context, after ItemRef, fn func(*BackedUpItem) error) error {
	return s.each(ctx, after, func(it *dayview.Item) error {
		s.fill(&s.item, it)
		return fn(&s.item)
	})
}

// each calls fn with every item after `after`, in order, until fn fails
// or returns ErrStop.
func (s *loadedSource) each(ctx context.Context, after ItemRef, fn func(*dayview.Item) error) error {
	if s.closed {
		return errSourceClosed
	}
	var lower []byte
	if after != (ItemRef{}) {
		k, ok := kindByte(after.Kind)
		if !ok {
			return domain.Invalid("read restore point", "item kind %q must be %s or %s", after.Kind, ItemKindKey, ItemKindSecret)
		}
		lower = dayview.ItemEnd(k, after.ID)
	}
	it, err := s.sc.NewIter(lower, nil)
	if err != nil {
		return err
	}
	defer it.Close()
	it.First()
	r := dayview.NewItemReader(it)
	for n := 0; ; n++ {
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		item, ok, err := r.Next()
		if err != nil {
			return err
		}
		if !ok {
			return it.Error()
		}
		if s.only != nil && !s.only[ItemRef{Kind: kindName(item.Kind), ID: item.ID}] {
			continue
		}
		if err := fn(item); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
}

func (s *loadedSource) Lookup(ctx context.Context, ref ItemRef) (*BackedUpItem, bool, error) {
	if s.closed {
		return nil, false, errSourceClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	k, ok := kindByte(ref.Kind)
	if !ok {
		return nil, false, domain.Invalid("read restore point", "item kind %q must be %s or %s", ref.Kind, ItemKindKey, ItemKindSecret)
	}
	if s.only != nil && !s.only[ref] {
		return nil, false, nil
	}
	if s.look == nil { // one iterator for every look-up: a plan makes one a secret
		look, err := s.sc.NewIter(nil, nil)
		if err != nil {
			return nil, false, err
		}
		s.look = look
	}
	it := s.look
	if !it.SeekGE(dayview.ItemStart(k, ref.ID)) || bytes.Compare(it.Key(), dayview.ItemEnd(k, ref.ID)) >= 0 {
		return nil, false, it.Error()
	}
	item, ok, err := dayview.NewItemReader(it).Next()
	if err != nil || !ok {
		return nil, false, errors.Join(err, it.Error())
	}
	out := &BackedUpItem{}
	s.fill(out, item)
	for i := range out.Versions { // the caller's to keep
		v := &out.Versions[i]
		v.Material, v.Value = slices.Clone(v.Material), slices.Clone(v.Value)
	}
	return out, true, nil
}

// fill sets out to it, reusing out's versions.
func (s *loadedSource) fill(out *BackedUpItem, it *dayview.Item) {
	*out = BackedUpItem{Kind: kindName(it.Kind), ID: it.ID, Description: it.Row.Description, CreatedAt: it.Row.CreatedAt,
		DeletedAt: it.DeletedAt, Versions: out.Versions[:0]}
	for _, v := range it.Versions {
		out.Versions = append(out.Versions, BackedUpVersion{Version: v.Version, CreatedAt: v.CreatedAt, Material: v.Material,
			SealedBy: v.SealedBy, KeyID: v.KeyID, Value: v.Value})
	}
}

func (s *loadedSource) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.look != nil {
		err = s.look.Close()
	}
	return errors.Join(err, s.sc.Close())
}
