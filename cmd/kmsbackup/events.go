package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/kmsbackup/kmsbackup/adapters/bus"
	"github.com/kmsbackup/kmsbackup/commands"
)

// eventStream is the public event stream as the API uses it: tails, and
// the health of the publisher behind them.
type eventStream struct {
	*commands.EventTailer
	mu  sync.Mutex
	err error
}

// Healthy reports the publisher's failure, if it stopped.
func (e *eventStream) Healthy() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// startEvents starts the bus (Watermill's in-process GoChannel, or NATS
// JetStream shared by the nodes) and the loop that publishes every appended
// event on it; on NATS it also ingests KMS events an external KMS publishes.
func (m *Main) startEvents(ctx context.Context, kmsApplied commands.Waiter) (*eventStream, error) {
	var pub message.Publisher
	var sub message.Subscriber
	switch m.Config.BusKind() {
	case "nats":
		n, err := bus.NewNATS(m.Config.Bus, m.Logger, bus.NATSOptions{Replicas: m.Config.NATSReplicas})
		if err != nil {
			return nil, fmt.Errorf("open the bus on %s: %w", redactURL(m.Config.Bus), err)
		}
		m.closers = append(m.closers, n.Close)
		m.health = append(m.health, healthCheck{"bus (NATS JetStream)", n.Ping})
		pub, sub = n.Publisher, n.Subscriber
		if err := m.startIngest(ctx, n, kmsApplied); err != nil {
			return nil, err
		}
	default:
		ps := bus.NewGoChannel(m.Logger)
		m.closers = append(m.closers, ps.Close)
		pub, sub = ps, ps
	}
	// Every node publishes what it sees appended after it first started;
	// on NATS the stream drops the copies (the event ID is the message ID).
	publisher := &commands.PublishEvents{Log: m.log, Positions: m.proj, Publisher: bus.NewPublisher(pub),
		FromHead: true, Retrying: func(err error) { m.Logger.Warn("publishing events, retrying", "error", err) }}
	if err := publisher.Validate(); err != nil {
		return nil, fmt.Errorf("event publisher: %w", err)
	}
	es := &eventStream{EventTailer: &commands.EventTailer{Log: m.log, Live: bus.NewSubscriber(sub, 0)}}
	m.background(ctx, "event publisher", func(ctx context.Context) error {
		err := publisher.Run(ctx)
		if err != nil && ctx.Err() == nil {
			es.mu.Lock()
			es.err = fmt.Errorf("event publisher stopped: %w", err)
			es.mu.Unlock()
		}
		return err
	})
	return es, nil
}

// startIngest runs the consumer of the ingest topic: KMS events an external
// KMS publishes (docs/events.md) are appended to the log at their
// revisions, once, however often they are delivered.
func (m *Main) startIngest(ctx context.Context, n *bus.NATS, kmsApplied commands.Waiter) error {
	sub, err := n.NewIngestSubscriber("")
	if err != nil {
		return fmt.Errorf("subscribe to the ingest topic: %w", err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, bus.NewLogger(m.Logger))
	if err != nil {
		return fmt.Errorf("ingest router: %w", err)
	}
	ingest := &commands.KMSIngest{Log: m.log, Streams: m.log, State: m.proj, Applied: kmsApplied}
	bus.AddIngestHandler(router, sub, ingest.Ingest, bus.IngestOptions{Logger: m.Logger})
	m.closers = append(m.closers, router.Close)
	m.background(ctx, "KMS event ingest", router.Run)
	return nil
}
