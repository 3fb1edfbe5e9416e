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
	// pumpPause is the pause after an error of the consumer, doubled after
	// each failure to start a new one, up to restartPauseMax.
	pumpPause       = 100 * time.Millisecond
	restartPauseMax = 2 * time.Second
	// consumerResets is how many times the client library tries to
	// recreate an ordered consumer under the one name it gives the new
	// incarnation, before the subscription starts a new consumer itself
	// (see subscription.restart).
	consumerResets = 1
)

// Subscribe returns a catch-up subscription that delivers every event whose
// position is greater than after, in order and once each, then every later
// event as it is acknowledged. It reads through an ordered consumer (an
// ephemeral, in-memory, unacknowledged consumer that the client recreates
// where it stopped after a disconnection or a server restart); when that
// recreation fails, the subscription starts a new ordered consumer where
// it stopped. It never creates a durable consumer and never removes a
// message.
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
	it, err := l.orderedMessages(cctx, start)
	if err != nil {
		return nil, l.callErr(ctx, opSubscribe, err)
	}
	s := &subscription{l: l, it: it, next: start, ch: make(chan item), done: make(chan struct{})}
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

// orderedMessages starts an ordered consumer of the log's events from
// sequence start, under a name of its own, and returns its messages.
// ctx bounds the look-up of the stream; the library bounds the creation of
// the consumer by itself (10 s).
func (l *Log) orderedMessages(ctx context.Context, start uint64) (jsapi.MessagesContext, error) {
	cons, err := l.stream.OrderedConsumer(ctx, jsapi.OrderedConsumerConfig{
		FilterSubjects:    []string{l.evAll},
		DeliverPolicy:     jsapi.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		InactiveThreshold: consumerIdle,
		MaxResetAttempts:  consumerResets,
	})
	if err != nil {
		return nil, err
	}
	return cons.Messages(jsapi.PullMaxMessages(subscriptionPull))
}

// item is what the pump hands to Next.
type item struct {
	e   domain.Event
	err error
}

// subscription is a catch-up subscription. A pump goroutine reads the
// consumer and hands each event to Next over ch, so that Next can honour
// its context and Close whatever the consumer is doing (reconnecting,
// recreating itself, being replaced).
type subscription struct {
	l    *Log
	ch   chan item
	done chan struct{}
	once sync.Once
	// next is the sequence of the first message not delivered yet, where
	// a new consumer starts (the pump's alone).
	next uint64

	mu sync.Mutex
	it jsapi.MessagesContext // the current consumer's messages
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
		s.mu.Lock()
		it := s.it
		s.mu.Unlock()
		it.Stop()
	})
}

// closed reports whether the subscription or its log is closed.
func (s *subscription) closed() bool {
	select {
	case <-s.done:
		return true
	case <-s.l.done:
		return true
	default:
		return false
	}
}

// messages is the current consumer's messages.
func (s *subscription) messages() jsapi.MessagesContext {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.it
}

// pump reads the consumer until the subscription or the log is closed.
// When the consumer fails (the library could not recreate it), it starts
// a new one where it stopped (restart): such failures never reach Next.
func (s *subscription) pump() {
	defer s.l.pumps.Done()
	for {
		m, err := s.messages().Next()
		if err != nil {
			if s.closed() {
				return
			}
			if errors.Is(err, jsapi.ErrMsgIteratorClosed) && s.l.nc.IsClosed() {
				// The connection is closed for good: final.
				s.send(item{err: unavailable("subscription", err)})
				return
			}
			if !s.restart(err) {
				return
			}
			continue
		}
		var it item
		meta, merr := m.Metadata()
		if merr != nil {
			it.err = unavailable("subscription", fmt.Errorf("message without metadata: %w", merr))
		} else {
			s.next = meta.Sequence.Stream + 1
			it.e, it.err = s.l.decode(stored{subject: m.Subject(), seq: meta.Sequence.Stream, data: m.Data()})
		}
		if !s.send(it) {
			return
		}
		if it.err != nil && !s.pause(pumpPause) {
			return
		}
	}
}

// restart replaces a consumer that failed with cause by a new ordered
// consumer from s.next, trying again (after a pause that grows) until one
// starts; false when the subscription or the log closes first. The
// library recreates a consumer under one name per incarnation and, left
// to retry, retries under that name forever: when the cluster placed that
// incarnation on a server that has just died (it had not noticed yet),
// every retry waits for that server, and the subscription would wait with
// it until the server returns. A new consumer gets a new name, placed
// anew.
func (s *subscription) restart(cause error) bool {
	s.messages().Stop()
	pause := pumpPause
	for {
		if !s.pause(pause) {
			return false
		}
		s.l.logger.Warn("the log's subscription starts a new consumer", "from_sequence", s.next, "cause", cause)
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		it, err := s.l.orderedMessages(ctx, s.next)
		cancel()
		if err == nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.closed() {
				it.Stop()
				return false
			}
			s.it = it
			return true
		}
		cause = err
		pause = min(2*pause, restartPauseMax)
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

// pause waits d; false when the subscription or log closed meanwhile.
func (s *subscription) pause(d time.Duration) bool {
	t := time.NewTimer(d)
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
