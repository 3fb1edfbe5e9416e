package main

import (
	"context"
	"fmt"
	"sync"

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

// startEvents starts the embedded Watermill GoChannel bus and the loop that
// publishes every appended event on it.
func (m *Main) startEvents(ctx context.Context) (*eventStream, error) {
	ps := bus.NewGoChannel(m.Logger)
	m.closers = append(m.closers, ps.Close)
	publisher := &commands.PublishEvents{Log: m.log, Positions: m.store, Publisher: bus.NewPublisher(ps),
		FromHead: true, Retrying: func(err error) { m.Logger.Warn("publishing events, retrying", "error", err) }}
	if err := publisher.Validate(); err != nil {
		return nil, fmt.Errorf("event publisher: %w", err)
	}
	es := &eventStream{EventTailer: &commands.EventTailer{Log: m.log, Live: bus.NewSubscriber(ps, 0)}}
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
