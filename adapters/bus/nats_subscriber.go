package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"
)

// consumerMaker makes the JetStream consumer of one subscription to topic
// and returns what to do once the subscription has ended (nil: nothing).
type consumerMaker func(ctx context.Context, js jsapi.JetStream, topic string) (jsapi.Consumer, func(), error)

// jsSubscriber is a Watermill subscriber on JetStream pull consumers, which
// reads the wire format of watermill-nats (payload as the data, the UUID
// and metadata as headers) and owns its connection.
//
// It stands in for watermill-nats v2.1.3's pkg/jetstream subscriber, whose
// subscriptions close their output channel while the consume callback may
// still be sending on it: a data race, and a "send on closed channel"
// panic when a subscription ends with messages still buffered in the
// client (which the tails' short subscriptions do all the time). Here a
// subscription closes its channel only after the consume callback has
// stopped and every callback in flight has returned.
type jsSubscriber struct {
	conn     *nats.Conn
	js       jsapi.JetStream
	consumer consumerMaker
	logger   *slog.Logger
	// acks tells whether the consumer takes acknowledgements (a durable
	// consumer) or not (an ordered one: a nacked message is then handed out
	// again by the subscriber itself).
	acks bool
	// nakDelay is the delay before the server redelivers a nacked message.
	nakDelay nakBackoff
	// ackWait bounds the wait for the application's ack or nack of one
	// message; after it the subscriber moves on (and the server redelivers
	// the message once its own AckWait has passed).
	ackWait time.Duration
	// fetch is how many messages the client buffers per subscription.
	fetch int

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	subs    sync.WaitGroup
}

var errSubscriberClosed = errors.New("the subscriber is closed")

// Subscribe makes a consumer of topic's stream and delivers its messages,
// one at a time: the next is handed out once the previous is acked or
// nacked. The channel is closed when ctx is done or the subscriber closes.
func (s *jsSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errSubscriberClosed
	}
	s.subs.Add(1)
	s.mu.Unlock()

	cctx, cancel := context.WithTimeout(ctx, natsRequestTimeout)
	cons, cleanup, err := s.consumer(cctx, s.js, topic)
	cancel()
	if err != nil {
		s.subs.Done()
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	out := make(chan *message.Message)
	var (
		gate     sync.RWMutex // stopped, and the start of a callback
		stopped  bool
		inflight sync.WaitGroup
	)
	cc, err := cons.Consume(func(m jsapi.Msg) {
		gate.RLock()
		if stopped {
			gate.RUnlock()
			return // not acked: the server redelivers it to a live subscription
		}
		inflight.Add(1)
		gate.RUnlock()
		defer inflight.Done()
		s.deliver(sctx, m, out)
	}, jsapi.PullMaxMessages(s.fetch), jsapi.ConsumeErrHandler(func(_ jsapi.ConsumeContext, err error) {
		s.logger.Debug("JetStream consume", "topic", topic, "err", err)
	}))
	if err != nil {
		stop()
		if cleanup != nil {
			cleanup()
		}
		s.subs.Done()
		return nil, fmt.Errorf("consume %s: %w", topic, err)
	}
	go func() {
		defer s.subs.Done()
		select {
		case <-sctx.Done():
		case <-s.closing:
		}
		stop() // a callback waiting to hand out or for an ack returns
		gate.Lock()
		stopped = true
		gate.Unlock()
		cc.Stop()
		inflight.Wait()
		close(out)
		if cleanup != nil {
			cleanup()
		}
	}()
	return out, nil
}

// deliver hands m out and settles it with the server as the application
// acks or nacks it.
func (s *jsSubscriber) deliver(ctx context.Context, m jsapi.Msg, out chan<- *message.Message) {
	for {
		msg := toMessage(m)
		mctx, cancel := context.WithCancel(ctx)
		msg.SetContext(mctx)
		acked, ok := s.await(ctx, msg, out)
		cancel()
		switch {
		case !ok:
			return // not answered: the server redelivers after its AckWait
		case acked && s.acks:
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), natsRequestTimeout)
			err := m.DoubleAck(actx)
			cancel()
			if err != nil {
				s.logger.Warn("JetStream ack failed; the message will be redelivered", "message_uuid", msg.UUID, "err", err)
			}
			return
		case acked:
			return
		case s.acks:
			delay := s.nakDelay.min
			if md, err := m.Metadata(); err == nil {
				delay = s.nakDelay.WaitTime(md.NumDelivered)
			}
			if err := m.NakWithDelay(delay); err != nil {
				s.logger.Warn("JetStream nak failed; the message will be redelivered after the ack wait", "message_uuid", msg.UUID, "err", err)
			}
			return
		}
		// Nacked, on a consumer without acks: hand it out again.
	}
}

// await hands msg out and waits for its ack (acked) or nack; ok is false
// when the subscription ended or the application did not answer in time.
func (s *jsSubscriber) await(ctx context.Context, msg *message.Message, out chan<- *message.Message) (acked, ok bool) {
	select {
	case out <- msg:
	case <-ctx.Done():
		return false, false
	}
	t := time.NewTimer(s.ackWait)
	defer t.Stop()
	select {
	case <-msg.Acked():
		return true, true
	case <-msg.Nacked():
		return false, true
	case <-t.C:
		s.logger.Warn("no ack or nack in time; moving on", "message_uuid", msg.UUID, "wait", s.ackWait)
		return false, false
	case <-ctx.Done():
		return false, false
	}
}

// Close ends every subscription (their channels close once the messages
// in flight are settled), then closes the connection. Idempotent.
func (s *jsSubscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.subs.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-time.After(natsCloseTimeout):
		err = fmt.Errorf("bus: nats: subscriptions still running after %v", natsCloseTimeout)
	}
	s.conn.Close()
	return err
}

// natsReservedHeaders are the headers that are not message metadata.
var natsReservedHeaders = map[string]bool{
	wmnats.WatermillUUIDHdr: true, nats.MsgIdHdr: true, nats.ExpectedLastMsgIdHdr: true,
	nats.ExpectedStreamHdr: true, nats.ExpectedLastSubjSeqHdr: true, nats.ExpectedLastSeqHdr: true,
}

// toMessage turns a JetStream message into a Watermill message. The UUID
// is Watermill's header, or else the JetStream message ID, so that
// publishers other than Watermill are read too; the other headers are the
// metadata (a repeated header keeps its first value).
func toMessage(m jsapi.Msg) *message.Message {
	hdr := m.Headers()
	uuid := hdr.Get(wmnats.WatermillUUIDHdr)
	if uuid == "" {
		uuid = hdr.Get(nats.MsgIdHdr)
	}
	msg := message.NewMessage(uuid, m.Data())
	for k, v := range hdr {
		if !natsReservedHeaders[k] && len(v) > 0 {
			msg.Metadata.Set(k, v[0])
		}
	}
	return msg
}
