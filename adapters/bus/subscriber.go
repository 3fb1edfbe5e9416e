package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// DefaultLiveBuffer is how many received events a live subscription holds
// for a slow reader before it starts dropping (and reports
// commands.ErrLagged).
const DefaultLiveBuffer = 1024

// Subscriber opens live subscriptions to Topic.
type Subscriber struct {
	sub    message.Subscriber
	buffer int
}

var _ commands.PublicEventSubscriber = (*Subscriber)(nil)

// NewSubscriber subscribes through sub: the embedded GoChannel, or
// NATS.Subscriber (an ordered consumer of new messages per subscription).
// Each live subscription buffers up to buffer events (DefaultLiveBuffer when
// buffer <= 0). Any other Watermill subscriber must likewise give every
// subscription every message from now on (no queue group, no shared
// durable consumer): a tail is a broadcast reader, not a worker. The caller
// keeps ownership of sub and closes it.
func NewSubscriber(sub message.Subscriber, buffer int) *Subscriber {
	if buffer <= 0 {
		buffer = DefaultLiveBuffer
	}
	return &Subscriber{sub: sub, buffer: buffer}
}

// SubscribeLive subscribes to Topic. A goroutine receives the messages,
// parses and buffers each; when the buffer is full, or a message does not
// parse, the event is dropped and the next call to Next reports
// commands.ErrLagged. Every message is acked either way: a lost live event
// is recovered from the log, never by redelivery. Errors: ctx.Err(); domain.ErrUnavailable when
// the transport refuses the subscription. Safe for concurrent use.
func (s *Subscriber) SubscribeLive(ctx context.Context) (commands.PublicEventSubscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	subCtx, cancel := context.WithCancel(ctx)
	msgs, err := s.sub.Subscribe(subCtx, Topic)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("bus: subscribe to %s: %w: %v", Topic, domain.ErrUnavailable, err)
	}
	l := &liveSubscription{
		cancel:  cancel,
		events:  make(chan publicevent.Event, s.buffer),
		lost:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	go l.receive(subCtx, msgs)
	return l, nil
}

// liveSubscription is one SubscribeLive.
type liveSubscription struct {
	cancel  context.CancelFunc
	events  chan publicevent.Event
	lost    chan struct{} // holds a token while a loss is unreported
	stopped chan struct{} // closed when receive returns
	closed  atomic.Bool

	mu         sync.Mutex
	lossReason string // the first loss since the last report
	lossCount  int
}

var errBufferFull = errors.New("buffer full")

func (l *liveSubscription) receive(ctx context.Context, msgs <-chan *message.Message) {
	defer close(l.stopped)
	for {
		var msg *message.Message
		var ok bool
		select {
		case <-ctx.Done():
			return
		case msg, ok = <-msgs:
			if !ok {
				return
			}
		}
		ev, err := publicevent.Parse(msg.Payload)
		switch {
		case err != nil:
			l.lose(fmt.Sprintf("message %s: %v", msg.UUID, err))
		default:
			select {
			case l.events <- ev:
			default:
				l.lose(fmt.Sprintf("event at position %d: %v", ev.Position, errBufferFull))
			}
		}
		// Acked whatever became of it: a live event that was lost is read
		// from the log, not redelivered.
		msg.Ack()
	}
}

// lose records a dropped event; the next Next reports it.
func (l *liveSubscription) lose(reason string) {
	l.mu.Lock()
	if l.lossCount == 0 {
		l.lossReason = reason
	}
	l.lossCount++
	l.mu.Unlock()
	select {
	case l.lost <- struct{}{}:
	default: // a report is already pending
	}
}

func (l *liveSubscription) lossReport() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, reason := l.lossCount, l.lossReason
	l.lossCount, l.lossReason = 0, ""
	return fmt.Errorf("bus: %w: %d event(s) dropped, first %s", commands.ErrLagged, n, reason)
}

var errClosed = fmt.Errorf("bus: live subscription closed: %w", domain.ErrUnavailable)

// Next returns the next buffered event; see commands.PublicEventSubscription.
func (l *liveSubscription) Next(ctx context.Context) (publicevent.Event, error) {
	if l.closed.Load() {
		return publicevent.Event{}, errClosed
	}
	select {
	case <-l.lost:
		return publicevent.Event{}, l.lossReport()
	case ev := <-l.events:
		return ev, nil
	case <-ctx.Done():
		return publicevent.Event{}, ctx.Err()
	case <-l.stopped:
	}
	// The subscription ended: closed, or the transport went away. Hand out
	// what is still buffered first.
	if l.closed.Load() {
		return publicevent.Event{}, errClosed
	}
	select {
	case <-l.lost:
		return publicevent.Event{}, l.lossReport()
	case ev := <-l.events:
		return ev, nil
	default:
		if ctx.Err() != nil {
			return publicevent.Event{}, ctx.Err()
		}
		return publicevent.Event{}, fmt.Errorf("bus: live subscription to %s ended: %w", Topic, domain.ErrUnavailable)
	}
}

// Close ends the subscription and waits for its receiver to stop.
func (l *liveSubscription) Close() error {
	l.closed.Store(true)
	l.cancel()
	<-l.stopped
	return nil
}
