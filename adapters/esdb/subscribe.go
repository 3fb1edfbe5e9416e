package esdb

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Subscribe returns a catch-up subscription delivering every event of the
// log's streams whose position is greater than after, in order, then every
// later one as it is appended. ctx bounds only this call; the subscription
// lives until it or the log is closed.
//
// The subscription is a catch-up subscription to $all with a server-side
// filter on Options.StreamPrefixes. The EventStoreDB client does not
// resubscribe after a drop (a server restart, a leader change, a network
// failure): the subscription does, from the last event it delivered, after
// 100 ms, then doubling up to 5 s between failed attempts, so the consumer
// sees neither a gap nor a duplicate. Drops are logged at warning level.
//
// Errors: domain.ErrUnavailable when the log is closed; ctx.Err(). Safe for
// concurrent use.
func (l *Log) Subscribe(ctx context.Context, after uint64) (commands.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil, errClosed(opSubscribe)
	}
	sctx, cancel := context.WithCancel(l.base)
	s := &subscription{l: l, ctx: sctx, cancel: cancel, events: make(chan domain.Event), done: make(chan struct{})}
	go s.run(after)
	return s, nil
}

// subscription delivers events from its pump goroutine (run) to Next over
// an unbuffered channel, so that an event is either taken by Next or still
// held by the pump.
type subscription struct {
	l      *Log
	ctx    context.Context // cancelled by Close and by the log's Close
	cancel context.CancelFunc
	events chan domain.Event
	done   chan struct{} // closed when the pump has stopped
	err    error         // why the pump stopped; set before done is closed
	closed atomic.Bool

	mu      sync.Mutex
	current *esdbclient.Subscription // the client subscription being read (tests drop it)
}

// Next returns the next event. It blocks until there is one, ctx is done
// (ctx.Err()), or the subscription or the log is closed
// (domain.ErrUnavailable). An event that does not decode stops the
// subscription with domain.ErrCorrupt, which every later Next returns. Not
// for concurrent use.
func (s *subscription) Next(ctx context.Context) (domain.Event, error) {
	if s.closed.Load() {
		return domain.Event{}, errSubClosed
	}
	if err := ctx.Err(); err != nil {
		return domain.Event{}, err
	}
	select {
	case e := <-s.events:
		if s.closed.Load() {
			return domain.Event{}, errSubClosed
		}
		return e, nil
	case <-ctx.Done():
		return domain.Event{}, ctx.Err()
	case <-s.done:
		return domain.Event{}, s.err
	}
}

// Close ends the subscription; a blocked Next returns
// domain.ErrUnavailable, and so does every later one. Idempotent.
func (s *subscription) Close() error {
	s.closed.Store(true)
	s.cancel()
	return nil
}

// stopped returns the error the pump ends with once the subscription or
// the log is closed, and nil while it runs.
func (s *subscription) stopped() error {
	if s.ctx.Err() == nil {
		return nil
	}
	if s.closed.Load() {
		return errSubClosed
	}
	return errClosed("next")
}

// run is the pump goroutine.
func (s *subscription) run(after uint64) {
	defer close(s.done)
	defer recoverClientGone(func(error) { s.err = errClosed("next") })
	s.err = s.pump(after)
}

// pump follows $all from after until the subscription is closed or an
// event does not decode. last is the position of the last event delivered
// (or after): the subscription delivers only events after it, whatever the
// server sends again. from is where to subscribe from: nil until it is a
// position the server accepts (the start of $all, or the position of an
// event it sent), since after may be any number.
func (s *subscription) pump(after uint64) error {
	last := after
	var from esdbclient.AllPosition
	if after == 0 {
		from = esdbclient.Start{}
	}
	failures := 0
	for {
		if err := s.stopped(); err != nil {
			return err
		}
		var err error
		if from == nil {
			from, err = s.resolve(&last)
		}
		if err == nil {
			var progressed bool
			progressed, err = s.follow(&from, &last)
			if progressed {
				failures = 0
			}
		}
		if stop := s.stopped(); stop != nil {
			return stop
		}
		if isPermanent(err) {
			return err // Next reports it
		}
		delay := backoff(failures)
		failures++
		s.l.logger.Warn("esdb: subscription dropped or failed to open; resubscribing", "after", last, "in", delay, "attempt", failures, "err", err)
		if !sleepCtx(s.ctx, delay) {
			return s.stopped()
		}
	}
}

// resolve finds where to subscribe from for an arbitrary last: the first
// event after it, which it delivers, or else the log's head (no event of
// the log lies between the head and last).
func (s *subscription) resolve(last *uint64) (esdbclient.AllPosition, error) {
	for {
		page, err := s.l.readAll(s.ctx, *last, 1)
		if err != nil {
			return nil, err
		}
		if len(page) == 1 {
			if !s.send(page[0].ev) {
				return nil, s.stopped()
			}
			*last = page[0].ev.Position
			return page[0].key, nil
		}
		key, ok, err := s.l.head(s.ctx)
		if err != nil {
			return nil, err
		}
		switch {
		case ok && key.Commit > *last:
			continue // appended since the read: read it
		case ok:
			return key, nil
		default:
			return esdbclient.Start{}, nil
		}
	}
}

// follow subscribes to $all from *from and delivers events until the
// subscription drops. It moves *from to every record received and *last to
// every event delivered. progressed reports that the server sent anything.
func (s *subscription) follow(from *esdbclient.AllPosition, last *uint64) (progressed bool, err error) {
	sub, cancel, err := s.l.openSubscription(s.ctx, *from, s.l.filter)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.current = sub
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.current = nil
		s.mu.Unlock()
		_ = sub.Close()
		cancel()
	}()
	for {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			if err := ev.SubscriptionDropped.Error; err != nil {
				return progressed, err
			}
			return progressed, errDropped
		case ev.EventAppeared != nil:
			progressed = true
			r := ev.EventAppeared.Event
			if r == nil || r.Position.Commit > math.MaxInt64 {
				continue
			}
			*from = r.Position
			if r.Position.Commit <= *last || !s.l.wanted(r.StreamID, r.EventType) {
				continue
			}
			e, err := fromRecorded(r)
			if err != nil {
				return progressed, err
			}
			if !s.send(e) {
				return progressed, s.stopped()
			}
			*last = e.Position
		default: // checkpoint, caught up, fell behind
			progressed = true
		}
	}
}

// send hands e to Next; false when the subscription stops first.
func (s *subscription) send(e domain.Event) bool {
	select {
	case s.events <- e:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// openSubscription subscribes to $all from from, with a server-side
// filter, like call does for other
// calls (in a goroutine, bounded by Options.Timeout), except that the
// subscription's context must outlive the call: the caller cancels it with
// the returned function once done with the subscription.
func (l *Log) openSubscription(ctx context.Context, from esdbclient.AllPosition, filter *esdbclient.SubscriptionFilter) (*esdbclient.Subscription, context.CancelFunc, error) {
	for attempt := 0; ; attempt++ {
		c, err := l.acquire(opSubscribe)
		if err != nil {
			return nil, nil, err
		}
		sctx, cancel := context.WithCancel(ctx)
		type result struct {
			sub *esdbclient.Subscription
			err error
		}
		done := make(chan result, 1)
		go func() {
			defer l.inflight.Done()
			defer recoverClientGone(func(err error) { done <- result{err: err} })
			sub, err := c.SubscribeToAll(sctx, esdbclient.SubscribeToAllOptions{From: from, Filter: filter})
			done <- result{sub, err}
		}()
		t := time.NewTimer(l.opts.Timeout)
		var r result
		select {
		case r = <-done:
		case <-t.C:
			r.err = errCallTimeout
		case <-sctx.Done():
			r.err = sctx.Err()
		}
		t.Stop()
		if r.err == nil {
			return r.sub, cancel, nil
		}
		cancel() // an answer arriving later finds its subscription cancelled
		if attempt == 0 && isClientDead(r.err) && ctx.Err() == nil {
			l.replace(c)
			continue
		}
		return nil, nil, r.err
	}
}
