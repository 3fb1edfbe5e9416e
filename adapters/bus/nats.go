package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"github.com/kmsbackup/kmsbackup/adapters/internal/natsconn"
	"github.com/kmsbackup/kmsbackup/domain"
)

// IngestTopic is the Watermill topic on which an external KMS publishes its
// instances' events for kmsbackup to ingest (docs/events.md, "Ingesting
// events from an external KMS"). No dots, as for Topic.
const IngestTopic = "kmsbackup_kms_ingest"

// Defaults of NATSOptions.
const (
	DefaultDuplicateWindow       = 10 * time.Minute
	DefaultIngestConsumer        = "kmsbackup_ingest"
	DefaultAckWait               = 30 * time.Second
	DefaultMinNakDelay           = 100 * time.Millisecond
	DefaultMaxNakDelay           = 30 * time.Second
	DefaultLiveInactiveThreshold = time.Minute
)

const (
	natsRequestTimeout = 10 * time.Second
	// natsCloseTimeout bounds how long closing a subscriber waits for its
	// subscriptions to end.
	natsCloseTimeout = 5 * time.Second
	// liveFetch and ingestFetch are how many messages a subscription
	// buffers in the client: a live tail reads fast; ingest messages wait
	// in the buffer with their server AckWait running, and nodes sharing a
	// consumer share the work better with small buffers.
	liveFetch   = 256
	ingestFetch = 16
)

// NATSOptions configures NewNATS. The zero value uses the defaults.
type NATSOptions struct {
	// Name names the client connections in the server's monitoring; empty
	// means "kmsbackup".
	Name string
	// Replicas is the streams' replication factor (1 to 5); 0 means 1.
	Replicas int
	// MaxAge bounds how long the streams keep a message, and MaxBytes how
	// much they hold; beyond either, the oldest messages go. 0 means no
	// limit: the streams keep everything.
	MaxAge   time.Duration
	MaxBytes int64
	// DuplicateWindow is how long the streams remember message IDs to drop
	// republished messages; 0 means DefaultDuplicateWindow. It must not
	// exceed MaxAge when that is set.
	DuplicateWindow time.Duration
	// IngestConsumer is the durable consumer NewIngestSubscriber uses when
	// given no name; empty means DefaultIngestConsumer. Renaming it makes a
	// new consumer that reads the ingest stream again from its beginning
	// (harmless, the ingest being idempotent, but slow).
	IngestConsumer string
	// AckWait is how long a durable consumer waits for an ack before
	// redelivering; 0 means DefaultAckWait.
	AckWait time.Duration
	// MinNakDelay and MaxNakDelay bound the delay before a nacked message is
	// redelivered: MinNakDelay after the first delivery, doubling with each
	// further one up to MaxNakDelay. 0 means DefaultMinNakDelay and
	// DefaultMaxNakDelay.
	MinNakDelay, MaxNakDelay time.Duration
}

func (o NATSOptions) withDefaults() NATSOptions {
	if o.Name == "" {
		o.Name = "kmsbackup"
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
		if o.MaxAge > 0 && o.MaxAge < o.DuplicateWindow {
			o.DuplicateWindow = o.MaxAge
		}
	}
	if o.IngestConsumer == "" {
		o.IngestConsumer = DefaultIngestConsumer
	}
	if o.AckWait == 0 {
		o.AckWait = DefaultAckWait
	}
	if o.MinNakDelay == 0 {
		o.MinNakDelay = DefaultMinNakDelay
	}
	if o.MaxNakDelay == 0 {
		o.MaxNakDelay = max(DefaultMaxNakDelay, o.MinNakDelay)
	}
	return o
}

// Validate reports every problem of the options (after defaults), joined.
// Each wraps domain.ErrInvalidArgument.
func (o NATSOptions) Validate() error {
	const op = "nats options"
	o = o.withDefaults()
	var errs []error
	if o.Replicas < 1 || o.Replicas > 5 {
		errs = append(errs, domain.Invalid(op, "replicas must be 1 to 5, got %d", o.Replicas))
	}
	if o.MaxAge < 0 || o.MaxBytes < 0 {
		errs = append(errs, domain.Invalid(op, "max age and max bytes must not be negative"))
	}
	if o.DuplicateWindow < 0 || (o.MaxAge > 0 && o.DuplicateWindow > o.MaxAge) {
		errs = append(errs, domain.Invalid(op, "duplicate window %v must be positive and at most the max age %v", o.DuplicateWindow, o.MaxAge))
	}
	if err := validName(o.IngestConsumer); err != nil {
		errs = append(errs, domain.Invalid(op, "ingest consumer: %v", err))
	}
	if o.AckWait < 0 || o.MinNakDelay < 0 || o.MaxNakDelay < 0 {
		errs = append(errs, domain.Invalid(op, "ack wait and nak delays must not be negative"))
	}
	if o.MinNakDelay > o.MaxNakDelay {
		errs = append(errs, domain.Invalid(op, "min nak delay %v exceeds max nak delay %v", o.MinNakDelay, o.MaxNakDelay))
	}
	return errors.Join(errs...)
}

// validName checks a JetStream stream or consumer name.
func validName(s string) error {
	if s == "" || len(s) > 255 || strings.ContainsAny(s, " \t\r\n.*>/\\") {
		return fmt.Errorf("%q must be 1-255 characters without white space, '.', '*', '>', '/' or '\\'", s)
	}
	return nil
}

// NATS is the bus on a NATS JetStream server (or cluster), for deployments
// beyond one machine: the publisher and live subscriber of the public event
// stream, and the ingest subscribers. It is configured as follows.
//
// Streams. Each topic (Topic, IngestTopic) is a JetStream stream of the
// same name capturing the one subject of the same name (hence no dots in
// topic names). NewNATS creates or updates both before anything is
// published or subscribed (JetStream refuses a publish to a subject no
// stream captures), with file storage, limits retention (a consumer's acks
// never delete a message: the stream is kept for replay, it is not a work
// queue), DiscardOld when a limit is set (NATSOptions.MaxAge, MaxBytes;
// none by default), single-message deletes denied, and a de-duplication
// window (NATSOptions.DuplicateWindow, DefaultDuplicateWindow).
//
// De-duplication. Every message is published with its UUID (the event ID)
// as the JetStream message ID (header Nats-Msg-Id): when several engine
// nodes publish the same event, or one publishes a batch again after a
// crash, the stream stores it once as long as the copies fall within the
// window. Copies further apart are stored twice; consumers still dedupe on
// the UUID (docs/events.md). The publisher is watermill-nats v2's
// pkg/jetstream Publisher (one synchronous, acknowledged publish per
// message), given the ID as metadata, which it sends as headers.
//
// Consumers. The live Subscriber (for NewSubscriber and `events tail`)
// makes one ordered consumer per subscription: ephemeral, in server
// memory, delivering only messages stored after it was made, without
// acknowledgements (a nacked message is handed out again by the
// subscriber), recreated by the client where it stopped after a
// disconnection, and deleted when the subscription ends (or after
// DefaultLiveInactiveThreshold without a client). NewIngestSubscriber makes
// a durable consumer per name (no work-queue retention, unlike
// watermill-nats' grouped consumers: acked messages stay): it delivers the
// whole stream from its beginning the first time and then from where the
// name's acks stopped, with explicit acks (NATSOptions.AckWait, then
// redelivery), unlimited redeliveries, and a nack delay that doubles from
// NATSOptions.MinNakDelay to MaxNakDelay. Several engine nodes using one
// name share the work.
//
// The subscribers are this package's own, on the same nats.go jetstream
// API and reading watermill-nats' wire format (payload as data, UUID and
// metadata as headers): watermill-nats v2.1.3's pkg/jetstream subscriber
// closes a subscription's channel while its consume callback may still be
// sending on it, a data race and a "send on closed channel" panic whenever
// a subscription ends with messages buffered (see jsSubscriber).
// pkg/nats with JetStream enabled was not used either: it deletes a
// durable consumer when its subscription unsubscribes, and provisions
// streams with default settings.
//
// Connections. The publisher and every subscriber have a connection of
// their own (closed with them: a Watermill router closes its subscribers),
// which reconnects forever; while it is down, publishes fail rather than
// being buffered.
type NATS struct {
	// Publisher publishes on any provisioned topic with the message UUID as
	// the JetStream message ID: pass it to NewPublisher (and to whatever
	// publishes on IngestTopic in tests).
	Publisher message.Publisher
	// Subscriber gives each Subscribe an ordered consumer of the messages
	// stored from then on: pass it to NewSubscriber.
	Subscriber message.Subscriber

	url    string
	opts   NATSOptions
	logger *slog.Logger
	admin  *nats.Conn // provisioning and Ping
	js     jsapi.JetStream

	mu     sync.Mutex
	owned  []func() error // what Close closes
	closed bool
}

// NewNATS connects to the NATS server at url (a comma-separated list for a
// cluster), creates or updates the streams of Topic and IngestTopic, and
// returns the bus. logger receives connection events and Watermill's
// messages (nil discards them). Call Close when done.
//
// Errors: domain.ErrInvalidArgument for bad options; domain.ErrUnavailable
// when the server cannot be reached or JetStream refuses a stream (for
// example a stream of that name with work-queue retention, which cannot be
// changed).
func NewNATS(url string, logger *slog.Logger, opts NATSOptions) (*NATS, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &NATS{url: url, opts: opts.withDefaults(), logger: logger.With("component", "bus", "transport", "nats")}
	admin, err := n.connect("admin")
	if err != nil {
		return nil, err
	}
	n.admin = admin
	n.owned = append(n.owned, func() error { admin.Close(); return nil })
	if n.js, err = jsapi.New(admin); err != nil {
		_ = n.Close()
		return nil, natsUnavailable("open JetStream", err)
	}
	for _, topic := range []string{Topic, IngestTopic} {
		if err := n.provision(topic); err != nil {
			_ = n.Close()
			return nil, err
		}
	}

	pubConn, err := n.connect("publisher")
	if err != nil {
		_ = n.Close()
		return nil, err
	}
	pub, err := wmjs.NewPublisher(wmjs.PublisherConfig{Conn: pubConn, Logger: NewLogger(n.logger),
		ConfigureStream: streamOfTopic})
	if err != nil {
		pubConn.Close()
		_ = n.Close()
		return nil, natsUnavailable("make the publisher", err)
	}
	n.Publisher = msgIDPublisher{pub}
	n.owned = append(n.owned, pub.Close)

	sub, err := n.newSubscriber("live", liveConsumer, false, liveFetch)
	if err != nil {
		_ = n.Close()
		return nil, err
	}
	n.Subscriber = sub
	n.owned = append(n.owned, sub.Close)
	return n, nil
}

// NewIngestSubscriber returns a subscriber reading through the durable
// consumer name (NATSOptions.IngestConsumer when empty), for
// AddIngestHandler. It delivers every message of the subscribed topic's
// stream until it is acked: again after a nack (with a growing delay) or
// after AckWait.
// Subscribe makes the consumer if it does not exist. The subscriber has its
// own connection; closing it (a Watermill router closes its subscribers)
// closes that connection only, and keeps the consumer and its position.
// Errors: domain.ErrInvalidArgument for a bad name; domain.ErrUnavailable.
func (n *NATS) NewIngestSubscriber(name string) (message.Subscriber, error) {
	if name == "" {
		name = n.opts.IngestConsumer
	}
	if err := validName(name); err != nil {
		return nil, domain.Invalid("nats ingest subscriber", "consumer name: %v", err)
	}
	sub, err := n.newSubscriber("ingest "+name, n.durableConsumer(name), true, ingestFetch)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		_ = sub.Close()
		return nil, natsUnavailable("make the ingest subscriber", errors.New("the bus is closed"))
	}
	n.owned = append(n.owned, sub.Close)
	return sub, nil
}

// Ping checks that the server answers and the public stream is there, for
// a readiness probe. Errors: domain.ErrUnavailable; ctx.Err().
func (n *NATS) Ping(ctx context.Context) error {
	if !n.admin.IsConnected() {
		return natsUnavailable("ping", fmt.Errorf("not connected (%v)", n.admin.Status()))
	}
	cctx, cancel := context.WithTimeout(ctx, natsRequestTimeout)
	defer cancel()
	if _, err := n.js.Stream(cctx, Topic); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return natsUnavailable("ping", err)
	}
	return nil
}

// Close closes the publisher, the live subscriber, the ingest subscribers
// and the connections, newest first. Idempotent; errors are joined.
func (n *NATS) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	owned := n.owned
	n.mu.Unlock()
	var errs []error
	for i := len(owned) - 1; i >= 0; i-- {
		if err := owned[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// connect opens one connection, named after its role.
func (n *NATS) connect(role string) (*nats.Conn, error) {
	nc, err := natsconn.Dial(n.url, n.opts.Name+" bus "+role, n.logger.With("connection", role))
	if err != nil {
		return nil, natsUnavailable("connect", err)
	}
	return nc, nil
}

// provision creates or updates the stream of topic.
func (n *NATS) provision(topic string) error {
	cfg := streamOfTopic(topic)
	cfg.Description = "kmsbackup: Watermill topic " + topic
	cfg.Storage = jsapi.FileStorage
	cfg.Replicas = n.opts.Replicas
	cfg.Retention = jsapi.LimitsPolicy
	cfg.Discard = jsapi.DiscardOld
	cfg.MaxAge = n.opts.MaxAge
	cfg.MaxBytes = -1
	if n.opts.MaxBytes > 0 {
		cfg.MaxBytes = n.opts.MaxBytes
	}
	cfg.MaxMsgs = -1
	cfg.MaxMsgsPerSubject = -1
	cfg.Duplicates = n.opts.DuplicateWindow
	cfg.DenyDelete = true
	ctx, cancel := context.WithTimeout(context.Background(), natsRequestTimeout)
	defer cancel()
	if _, err := n.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return natsUnavailable("create or update stream "+cfg.Name, err)
	}
	return nil
}

// streamOfTopic names the stream of a topic and its one subject.
func streamOfTopic(topic string) jsapi.StreamConfig {
	return jsapi.StreamConfig{Name: topic, Subjects: []string{topic}}
}

// newSubscriber makes a subscriber on a connection of its own.
func (n *NATS) newSubscriber(role string, consumer consumerMaker, acks bool, fetch int) (*jsSubscriber, error) {
	conn, err := n.connect(role)
	if err != nil {
		return nil, err
	}
	js, err := jsapi.New(conn)
	if err != nil {
		conn.Close()
		return nil, natsUnavailable("open JetStream for the "+role+" subscriber", err)
	}
	return &jsSubscriber{conn: conn, js: js, consumer: consumer, logger: n.logger.With("subscriber", role),
		acks: acks, nakDelay: nakBackoff{min: n.opts.MinNakDelay, max: n.opts.MaxNakDelay},
		ackWait: n.opts.AckWait, fetch: fetch, closing: make(chan struct{})}, nil
}

// liveConsumer makes an ordered consumer of the messages stored from now
// on, and deletes it when the subscription ends.
func liveConsumer(ctx context.Context, js jsapi.JetStream, topic string) (jsapi.Consumer, func(), error) {
	stream, err := js.Stream(ctx, streamOfTopic(topic).Name)
	if err != nil {
		return nil, nil, fmt.Errorf("stream of topic %s: %w", topic, err)
	}
	c, err := stream.OrderedConsumer(ctx, jsapi.OrderedConsumerConfig{
		DeliverPolicy:     jsapi.DeliverNewPolicy,
		InactiveThreshold: DefaultLiveInactiveThreshold,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("ordered consumer of %s: %w", topic, err)
	}
	return c, func() {
		// A failure is harmless: the server drops the consumer after
		// DefaultLiveInactiveThreshold.
		info := c.CachedInfo()
		if info == nil {
			return
		}
		dctx, cancel := context.WithTimeout(context.Background(), natsRequestTimeout)
		defer cancel()
		_ = js.DeleteConsumer(dctx, info.Stream, info.Name)
	}, nil
}

// durableConsumer makes (or updates) the durable consumer name on the
// topic's stream; it outlives every subscription.
func (n *NATS) durableConsumer(name string) consumerMaker {
	return func(ctx context.Context, js jsapi.JetStream, topic string) (jsapi.Consumer, func(), error) {
		stream, err := js.Stream(ctx, streamOfTopic(topic).Name)
		if err != nil {
			return nil, nil, fmt.Errorf("stream of topic %s: %w", topic, err)
		}
		c, err := stream.CreateOrUpdateConsumer(ctx, jsapi.ConsumerConfig{
			Durable:       name,
			Description:   "kmsbackup: durable consumer " + name + " of " + topic,
			DeliverPolicy: jsapi.DeliverAllPolicy,
			AckPolicy:     jsapi.AckExplicitPolicy,
			AckWait:       n.opts.AckWait,
			MaxDeliver:    -1,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("durable consumer %s of %s: %w", name, topic, err)
		}
		return c, nil, nil
	}
}

// msgIDPublisher publishes with each message's UUID as its JetStream
// message ID. The Watermill publisher sends metadata as headers, so the
// ID travels as the metadata key nats.MsgIdHdr; subscribers drop that
// header again. The caller's messages are not modified.
type msgIDPublisher struct{ message.Publisher }

func (p msgIDPublisher) Publish(topic string, msgs ...*message.Message) error {
	out := make([]*message.Message, len(msgs))
	for i, m := range msgs {
		c := message.NewMessage(m.UUID, m.Payload)
		for k, v := range m.Metadata {
			c.Metadata.Set(k, v)
		}
		if m.UUID != "" {
			c.Metadata.Set(nats.MsgIdHdr, m.UUID)
		}
		out[i] = c
	}
	return p.Publisher.Publish(topic, out...)
}

// nakBackoff is the delay before a nacked message is redelivered: min
// after the first delivery, doubling up to max.
type nakBackoff struct{ min, max time.Duration }

func (b nakBackoff) WaitTime(delivered uint64) time.Duration {
	d := b.min
	for i := uint64(1); i < delivered && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

func natsUnavailable(op string, err error) error {
	return fmt.Errorf("bus: nats: %s: %w (%v)", op, domain.ErrUnavailable, err)
}
