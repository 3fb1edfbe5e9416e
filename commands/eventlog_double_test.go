package commands_test

import (
	"context"
	"math"
	"sync"
	"sync/atomic"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// memLog is a TEST DOUBLE of the event log: an in-memory commands.EventLog
// with the port's documented semantics (optimistic concurrency, idempotent
// appends, catch-up subscriptions), and nothing durable. The tests of the
// event stream's use cases run on it; the use-case tests of backup and
// restore run on real Pebble instead (usecase_fixture_test.go). The bus
// integration tests have a copy that is to be replaced by
// adapters/pebblestore.
//
// Subscriptions wait on channels only, so the double also works inside a
// testing/synctest bubble when it is created there.
type memLog struct {
	mu      sync.Mutex
	events  []domain.Event         // events[i] has position i+1
	streams map[string][]int       // stream -> indexes into events
	ids     map[domain.EventID]int // event ID -> index into events
	changed chan struct{}          // closed and replaced by every append
	closed  bool
	reads   atomic.Int64 // ReadAll and Head calls, for tests of call order
}

var _ commands.EventLog = (*memLog)(nil)

func newMemLog() *memLog {
	return &memLog{streams: map[string][]int{}, ids: map[domain.EventID]int{}, changed: make(chan struct{})}
}

func (l *memLog) Append(ctx context.Context, stream string, expected domain.ExpectedRevision, events []domain.Event) (commands.AppendResult, error) {
	res, err := l.AppendMulti(ctx, []commands.StreamAppend{{Stream: stream, Expected: expected, Events: events}})
	if err != nil {
		return commands.AppendResult{}, err
	}
	return res[0], nil
}

func (l *memLog) AppendMulti(ctx context.Context, parts []commands.StreamAppend) ([]commands.AppendResult, error) {
	const op = "append"
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := commands.CheckMultiAppend(op, parts); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, domain.Errorf(domain.ErrUnavailable, op, parts[0].Stream, "", "log closed")
	}
	out := make([]commands.AppendResult, len(parts))
	retries := 0
	for i, p := range parts {
		res, retry, err := l.retried(p)
		if err != nil {
			return nil, err
		}
		if retry {
			out[i] = res
			retries++
		}
	}
	switch {
	case retries == len(parts):
		return out, nil
	case retries > 0:
		return nil, domain.Invalid(op, "the append is partly already in the log")
	}
	for _, p := range parts {
		idx := l.streams[p.Stream]
		var head uint64
		if len(idx) > 0 {
			head = l.events[idx[len(idx)-1]].Revision
		}
		if !p.Expected.Check(len(idx) > 0, head) {
			return nil, domain.WrongRevision(p.Stream, p.Expected, len(idx) > 0, head)
		}
	}
	for pi, p := range parts {
		var res commands.AppendResult
		for i, e := range p.Events {
			e.Revision = uint64(len(l.streams[p.Stream]))
			e.Position = uint64(len(l.events) + 1)
			e.Data = append([]byte(nil), e.Data...)
			l.ids[e.ID] = len(l.events)
			l.streams[p.Stream] = append(l.streams[p.Stream], len(l.events))
			l.events = append(l.events, e)
			if i == 0 {
				res.FirstPosition = e.Position
			}
			res.LastPosition, res.LastRevision = e.Position, e.Revision
		}
		out[pi] = res
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return out, nil
}

// retried tells whether every event of p is already in its stream (a
// retry, answered with res); some of them is domain.ErrInvalidArgument.
// The caller holds l.mu.
func (l *memLog) retried(p commands.StreamAppend) (res commands.AppendResult, retry bool, err error) {
	present := 0
	for _, e := range p.Events {
		if i, ok := l.ids[e.ID]; ok {
			if l.events[i].Stream != p.Stream {
				return res, false, domain.Invalid("append", "event ID %s is already in stream %q", e.ID, l.events[i].Stream)
			}
			present++
		}
	}
	switch {
	case present == len(p.Events):
		first, last := l.events[l.ids[p.Events[0].ID]], l.events[l.ids[p.Events[len(p.Events)-1].ID]]
		return commands.AppendResult{FirstPosition: first.Position, LastPosition: last.Position, LastRevision: last.Revision}, true, nil
	case present > 0:
		return res, false, domain.Invalid("append", "batch is partly already in stream %q", p.Stream)
	}
	return res, false, nil
}

func (l *memLog) ReadStream(ctx context.Context, stream string, from uint64, backwards bool, max int) ([]domain.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	idx := l.streams[stream]
	var out []domain.Event
	if backwards {
		start := len(idx) - 1
		if from != math.MaxUint64 && from < uint64(len(idx)) {
			start = int(from)
		}
		for i := start; i >= 0 && len(out) < max; i-- {
			out = append(out, copied(l.events[idx[i]]))
		}
		return out, nil
	}
	for i := from; i < uint64(len(idx)) && len(out) < max; i++ {
		out = append(out, copied(l.events[idx[i]]))
	}
	return out, nil
}

func (l *memLog) ReadAll(ctx context.Context, after uint64, max int) ([]domain.Event, error) {
	l.reads.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if after >= uint64(len(l.events)) {
		return nil, nil
	}
	end := min(uint64(len(l.events)), after+uint64(max))
	out := make([]domain.Event, 0, end-after)
	for _, e := range l.events[after:end] {
		out = append(out, copied(e))
	}
	return out, nil
}

// copied returns e with its own Data, so that callers cannot change the log.
func copied(e domain.Event) domain.Event {
	e.Data = append([]byte(nil), e.Data...)
	return e
}

func (l *memLog) Head(ctx context.Context) (uint64, error) {
	l.reads.Add(1)
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.events)), nil
}

func (l *memLog) Subscribe(ctx context.Context, after uint64) (commands.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &memSubscription{log: l, next: after, done: make(chan struct{})}, nil
}

func (l *memLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.changed)
	}
	return nil
}

type memSubscription struct {
	log       *memLog
	next      uint64 // position of the last event delivered
	done      chan struct{}
	closeOnce sync.Once
}

func (s *memSubscription) Next(ctx context.Context) (domain.Event, error) {
	for {
		s.log.mu.Lock()
		closed, changed := s.log.closed, s.log.changed
		var e domain.Event
		ok := s.next < uint64(len(s.log.events))
		if ok {
			e = copied(s.log.events[s.next])
		}
		s.log.mu.Unlock()
		select {
		case <-s.done:
			return domain.Event{}, domain.Errorf(domain.ErrUnavailable, "subscription", "", "", "closed")
		default:
		}
		if ok {
			s.next++
			return e, nil
		}
		if closed {
			return domain.Event{}, domain.Errorf(domain.ErrUnavailable, "subscription", "", "", "log closed")
		}
		select {
		case <-ctx.Done():
			return domain.Event{}, ctx.Err()
		case <-s.done:
		case <-changed:
		}
	}
}

func (s *memSubscription) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return nil
}
