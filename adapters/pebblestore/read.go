package pebblestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

const (
	opReadStream = "read stream"
	opReadAll    = "read all"
	// subscriptionBatch is how many events a subscription reads at a time.
	subscriptionBatch = 256
	// ctxCheckEvery is how often long reads look at their context.
	ctxCheckEvery = 256
)

// ReadStream returns at most limit events of stream, from revision from
// (inclusive) forwards, or backwards when backwards is set (from =
// math.MaxUint64 starts at the last event). Only acknowledged events are
// returned. A stream that does not exist reads as empty, without error.
//
// Errors: domain.ErrInvalidArgument for an empty stream name or limit < 1;
// domain.ErrCorrupt when a stored event or index entry does not decode or
// disagrees with the index; domain.ErrUnavailable when the store is closed;
// ctx.Err(). Safe for concurrent use; has no side effects.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, backwards bool, limit int) ([]domain.Event, error) {
	if stream == "" {
		return nil, domain.Invalid(opReadStream, "the stream name is empty")
	}
	if limit < 1 {
		return nil, domain.Invalid(opReadStream, "limit must be at least 1, got %d", limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(opReadStream); err != nil {
		return nil, err
	}
	defer s.leave()
	durable := s.durable.Load()
	prefix := appendStreamPrefix(nil, stream)
	idx, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, storeErr(opReadStream, err)
	}
	defer idx.Close()

	// Collect the (revision, position) pairs to read from the runs of the
	// stream index, starting with the run that holds from.
	type slot struct{ rev, pos uint64 }
	var slots []slot
	var valid bool
	switch {
	case backwards && from == math.MaxUint64:
		valid = idx.Last()
	default:
		valid = idx.SeekLT(appendStreamKey(nil, stream, from+1))
		switch {
		case !valid && !backwards:
			valid = idx.SeekGE(appendStreamKey(nil, stream, from))
		case valid && !backwards:
			// Seek forward onto the run just found: a Next right after a
			// SeekLT changes direction, which makes Pebble walk an unflushed
			// batch from its start (measured: 137 ms instead of 14 µs while a
			// large batch waits to be flushed).
			valid = idx.SeekGE(bytes.Clone(idx.Key()))
		}
	}
runs:
	for ; valid && len(slots) < limit; valid = step(idx, backwards) {
		first, pos, n, err := decodeRunEntry(stream, prefix, idx)
		if err != nil {
			return nil, err
		}
		last := first + n - 1
		if backwards {
			r := min(from, last)
			for ; len(slots) < limit; r-- {
				if p := pos + (r - first); p <= durable {
					slots = append(slots, slot{r, p})
				}
				if r == first {
					break
				}
			}
			continue
		}
		for r := max(from, first); r <= last && len(slots) < limit; r++ {
			p := pos + (r - first)
			if p > durable {
				break runs // being committed right now: not acknowledged yet
			}
			slots = append(slots, slot{r, p})
		}
	}
	if err := idx.Error(); err != nil {
		return nil, storeErr(opReadStream, err)
	}
	if len(slots) == 0 {
		return nil, nil
	}

	// Created after idx, so it sees at least every event idx points at.
	logIt, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logKey(1), UpperBound: logKey(durable + 1)})
	if err != nil {
		return nil, storeErr(opReadStream, err)
	}
	defer logIt.Close()
	out := make([]domain.Event, 0, len(slots))
	for i, sl := range slots {
		if i%ctxCheckEvery == ctxCheckEvery-1 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if !logIt.SeekGE(logKey(sl.pos)) || !isLogKey(logIt.Key(), sl.pos) {
			if err := logIt.Error(); err != nil {
				return nil, storeErr(opReadStream, err)
			}
			return nil, domain.Corruption("pebblestore: stream %q revision %d points at missing position %d", stream, sl.rev, sl.pos)
		}
		rec, err := logIt.ValueAndErr()
		if err != nil {
			return nil, storeErr(opReadStream, err)
		}
		var prev *domain.Event
		if len(out) > 0 {
			prev = &out[len(out)-1]
		}
		e, err := decodeRecord(sl.pos, rec, prev)
		if err != nil {
			return nil, err
		}
		if e.Stream != stream || e.Revision != sl.rev {
			return nil, domain.Corruption("pebblestore: stream %q revision %d points at position %d, which holds %q revision %d",
				stream, sl.rev, sl.pos, e.Stream, e.Revision)
		}
		out = append(out, e)
	}
	return out, nil
}

// decodeRunEntry decodes the stream-index entry under it: the run's first
// revision, first position and length.
func decodeRunEntry(stream string, prefix []byte, it *pebble.Iterator) (firstRev, firstPos, n uint64, err error) {
	firstRev, ok := getUint64(it.Key()[len(prefix):])
	if !ok {
		return 0, 0, 0, domain.Corruption("pebblestore: stream %q: bad index key", stream)
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return 0, 0, 0, storeErr(opReadStream, err)
	}
	firstPos, n, ok = decodeRun(v)
	if !ok || firstPos == 0 || firstRev+n < firstRev || firstPos+n < firstPos {
		return 0, 0, 0, domain.Corruption("pebblestore: stream %q revision %d: bad index entry", stream, firstRev)
	}
	return firstRev, firstPos, n, nil
}

// streamHeadAt reads a stream's head from its last index entry with it,
// whose bounds it sets: one iterator serves many streams.
func streamHeadAt(it *pebble.Iterator, stream string) (headState, error) {
	prefix := appendStreamPrefix(nil, stream)
	it.SetBounds(prefix, prefixEnd(prefix))
	if !it.Last() {
		return headState{}, storeErr("read stream head", it.Error())
	}
	first, _, n, err := decodeRunEntry(stream, prefix, it)
	if err != nil {
		return headState{}, err
	}
	return headState{exists: true, rev: first + n - 1}, nil
}

func step(it *pebble.Iterator, backwards bool) bool {
	if backwards {
		return it.Prev()
	}
	return it.Next()
}

func isLogKey(k []byte, pos uint64) bool {
	return len(k) == logKeyLen && k[0] == nsLog && binary.BigEndian.Uint64(k[1:]) == pos
}

// ReadAll returns at most limit events whose position is greater than after,
// in position order. Only acknowledged events are returned; positions are
// contiguous, and a missing position is reported as corruption.
//
// Errors: domain.ErrInvalidArgument for limit < 1; domain.ErrCorrupt for an
// event that does not decode or a gap in positions; domain.ErrUnavailable
// when the store is closed; ctx.Err(). Safe for concurrent use; has no side
// effects.
func (s *Store) ReadAll(ctx context.Context, after uint64, limit int) ([]domain.Event, error) {
	if limit < 1 {
		return nil, domain.Invalid(opReadAll, "limit must be at least 1, got %d", limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(opReadAll); err != nil {
		return nil, err
	}
	defer s.leave()
	durable := s.durable.Load()
	if after >= durable {
		return nil, nil
	}
	n := durable - after
	if n > uint64(limit) {
		n = uint64(limit)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logKey(after + 1), UpperBound: logKey(after + n + 1)})
	if err != nil {
		return nil, storeErr(opReadAll, err)
	}
	defer it.Close()
	out := make([]domain.Event, 0, n)
	want := after + 1
	for valid := it.First(); valid; valid = it.Next() {
		if len(out)%ctxCheckEvery == ctxCheckEvery-1 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		k := it.Key()
		pos, ok := getUint64(k[1:])
		if !ok || len(k) != logKeyLen {
			return nil, domain.Corruption("pebblestore: log key of %d bytes", len(k))
		}
		if pos != want {
			return nil, domain.Corruption("pebblestore: log has no event at position %d", want)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, storeErr(opReadAll, err)
		}
		var prev *domain.Event
		if len(out) > 0 {
			prev = &out[len(out)-1]
		}
		e, err := decodeRecord(pos, v, prev)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		want++
	}
	if err := it.Error(); err != nil {
		return nil, storeErr(opReadAll, err)
	}
	if uint64(len(out)) != n {
		return nil, domain.Corruption("pebblestore: log has no event at position %d", want)
	}
	return out, nil
}

// Head returns the position of the last acknowledged (durable) event, 0 for
// an empty log.
//
// Errors: domain.ErrUnavailable when the store is closed; ctx.Err(). Safe for
// concurrent use.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.enter("head"); err != nil {
		return 0, err
	}
	defer s.leave()
	return s.durable.Load(), nil
}

// Subscribe returns a catch-up subscription that delivers every event whose
// position is greater than after, in order and once each, then every later
// event as soon as it is acknowledged. A waiting subscription is woken by
// the commit itself, without polling.
//
// Errors: domain.ErrUnavailable when the store is closed; ctx.Err(). ctx
// bounds only this call; each Next takes its own. Safe for concurrent use;
// every subscription is independent.
func (s *Store) Subscribe(ctx context.Context, after uint64) (commands.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter("subscribe"); err != nil {
		return nil, err
	}
	defer s.leave()
	return &subscription{s: s, after: after, done: make(chan struct{})}, nil
}

type subscription struct {
	s     *Store
	after uint64 // position of the last event delivered
	buf   []domain.Event
	done  chan struct{}
	once  sync.Once
}

// Next returns the next event. It blocks until one is acknowledged, ctx ends
// (ctx.Err()), or the subscription or the store is closed
// (domain.ErrUnavailable; a Close from another goroutine wakes a blocked
// Next). Errors of the underlying reads (domain.ErrCorrupt) are returned as
// they are; Next may be called again after an error. Not for concurrent use.
func (sub *subscription) Next(ctx context.Context) (domain.Event, error) {
	for {
		select {
		case <-sub.done:
			return domain.Event{}, errSubClosed
		default:
		}
		if len(sub.buf) > 0 {
			e := sub.buf[0]
			sub.buf[0] = domain.Event{}
			sub.buf = sub.buf[1:]
			sub.after = e.Position
			return e, nil
		}
		if err := ctx.Err(); err != nil {
			return domain.Event{}, err
		}
		changed := sub.s.changed()
		if sub.s.durable.Load() > sub.after {
			evs, err := sub.s.ReadAll(ctx, sub.after, subscriptionBatch)
			if err != nil {
				return domain.Event{}, err
			}
			sub.buf = evs
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return domain.Event{}, ctx.Err()
		case <-sub.done:
			return domain.Event{}, errSubClosed
		case <-sub.s.doneCh:
			return domain.Event{}, errClosed("subscription")
		}
	}
}

// Buffered is how many events the subscription has read ahead, which
// Next returns without blocking (until Close). Not for concurrent use.
func (sub *subscription) Buffered() int { return len(sub.buf) }

var _ commands.BufferedSubscription = (*subscription)(nil)

var errSubClosed = &domain.Error{Op: "subscription", Kind: domain.ErrUnavailable, Msg: "the subscription is closed"}

// Close ends the subscription; Next then fails with domain.ErrUnavailable.
// Idempotent; safe to call from another goroutine than Next's.
func (sub *subscription) Close() error {
	sub.once.Do(func() { close(sub.done) })
	return nil
}
