package natsjs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	jsapi "github.com/nats-io/nats.go/jetstream"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

const (
	opSubscribe = "subscribe"
	// consumerIdle is how long the server keeps a subscription's consumer
	// once nobody pulls from it (after Close, or a long disconnection, in
	// which case the subscription makes a new one where it stopped).
	consumerIdle = 30 * time.Second
	// subscriptionPull is how many messages a subscription asks for at once.
	subscriptionPull = 256
	// pumpPause is the pause after an error of the consumer.
	pumpPause = 100 * time.Millisecond
)

// Subscribe returns a catch-up subscription that delivers every event whose
// position is greater than after, in order and once each, then every later
// event as it is acknowledged. It reads through an ordered consumer (an
// ephemeral, in-memory, unacknowledged consumer that the client recreates
// where it stopped after a disconnection or a server restart); it never
// creates a durable consumer and never removes a message.
//
// Errors: domain.ErrUnavailable when the log is closed or the server cannot
// be reached; ctx.Err(). ctx bounds only this call; each Next takes its own.
// Safe for concurrent use; every subscription is independent.
func (l *Log) Subscribe(ctx context.Context, after uint64) (commands.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := l.enter(opSubscribe); err != nil {
		return nil, err
	}
	start := after + 1
	if after == math.MaxUint64 {
		start = after
	}
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	cons, err := l.stream.OrderedConsumer(cctx, jsapi.OrderedConsumerConfig{
		FilterSubjects:    []string{l.evAll},
		DeliverPolicy:     jsapi.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		InactiveThreshold: consumerIdle,
	})
	if err != nil {
		return nil, l.callErr(ctx, opSubscribe, err)
	}
	it, err := cons.Messages(jsapi.PullMaxMessages(subscriptionPull))
	if err != nil {
		return nil, l.callErr(ctx, opSubscribe, err)
	}
	s := &subscription{l: l, it: it, ch: make(chan item), done: make(chan struct{})}
	l.subsMu.Lock()
	if l.closed.Load() {
		l.subsMu.Unlock()
		it.Stop()
		return nil, l.enter(opSubscribe)
	}
	l.subs[s] = struct{}{}
	l.pumps.Add(1)
	l.subsMu.Unlock()
	go s.pump()
	return s, nil
}

// item is what the pump hands to Next.
type item struct {
	e   domain.Event
	err error
}

// subscription is a catch-up subscription. A pump goroutine reads the
// consumer and hands each event to Next over ch, so that Next can honour
// its context and Close whatever the consumer is doing (reconnecting,
// recreating itself).
type subscription struct {
	l    *Log
	it   jsapi.MessagesContext
	ch   chan item
	done chan struct{}
	once sync.Once
}

var errSubClosed = &domain.Error{Op: "subscription", Kind: domain.ErrUnavailable, Msg: "the subscription is closed"}

// Next returns the next event. It blocks until one is acknowledged, ctx ends
// (ctx.Err()), or the subscription or the log is closed
// (domain.ErrUnavailable; a Close from another goroutine wakes a blocked
// Next). An event that does not decode is domain.ErrCorrupt; Next may be
// called again after an error. Not for concurrent use.
func (s *subscription) Next(ctx context.Context) (domain.Event, error) {
	select {
	case <-s.done:
		return domain.Event{}, errSubClosed
	case <-s.l.done:
		return domain.Event{}, s.l.enter("subscription")
	default:
	}
	if err := ctx.Err(); err != nil {
		return domain.Event{}, err
	}
	select {
	case it := <-s.ch:
		return it.e, it.err
	case <-ctx.Done():
		return domain.Event{}, ctx.Err()
	case <-s.done:
		return domain.Event{}, errSubClosed
	case <-s.l.done:
		return domain.Event{}, s.l.enter("subscription")
	}
}

// Close ends the subscription; Next then fails with domain.ErrUnavailable.
// Idempotent; safe to call from another goroutine than Next's.
func (s *subscription) Close() error {
	s.stop()
	s.l.subsMu.Lock()
	delete(s.l.subs, s)
	s.l.subsMu.Unlock()
	return nil
}

func (s *subscription) stop() {
	s.once.Do(func() {
		close(s.done)
		s.it.Stop()
	})
}

// pump reads the consumer until the subscription or the log is closed.
func (s *subscription) pump() {
	defer s.l.pumps.Done()
	for {
		m, err := s.it.Next()
		var it item
		switch {
		case err != nil:
			select {
			case <-s.done:
				return
			case <-s.l.done:
				return
			default:
			}
			if errors.Is(err, jsapi.ErrMsgIteratorClosed) {
				// Stopped by the library (the connection closed): final.
				s.send(item{err: unavailable("subscription", err)})
				return
			}
			it.err = unavailable("subscription", err)
		default:
			meta, merr := m.Metadata()
			if merr != nil {
				it.err = unavailable("subscription", fmt.Errorf("message without metadata: %w", merr))
				break
			}
			it.e, it.err = s.l.decode(stored{subject: m.Subject(), seq: meta.Sequence.Stream, data: m.Data()})
		}
		if !s.send(it) {
			return
		}
		if err != nil && !s.pause() {
			return
		}
	}
}

// send hands it to Next; false when the subscription or log closed first.
func (s *subscription) send(it item) bool {
	select {
	case s.ch <- it:
		return true
	case <-s.done:
		return false
	case <-s.l.done:
		return false
	}
}

// pause waits a little after an error; false when closed meanwhile.
func (s *subscription) pause() bool {
	t := time.NewTimer(pumpPause)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	case <-s.l.done:
		return false
	}
}
