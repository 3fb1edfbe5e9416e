package commands

import (
	"context"
	"errors"

	"github.com/kmsbackup/kmsbackup/domain/publicevent"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Ports of the public event stream (PublishEvents, TailEvents). They live
// apart from ports.go only to keep that file's edits independent.

// PublicEventsProjection is the projection name under which PublishEvents
// records the last log position it has published.
const PublicEventsProjection = "public-events"

// ErrLagged is returned by PublicEventSubscription.Next when the
// subscription has lost events since the previous call (its buffer
// overflowed, or a message could not be read). Every event lost that way
// was appended to the log before Next returned, so the caller recovers by
// reading the log up to its head. It is an internal signal between the bus
// and TailEvents, which never returns it.
var ErrLagged = errors.New("commands: live event subscription lagged")

// PublicEventPublisher publishes events on the public event stream.
type PublicEventPublisher interface {
	// Publish publishes events in the order given and returns once the
	// transport has accepted all of them (a durable transport: once they are
	// durable). On error any prefix of them may have been published; the
	// caller publishes the batch again, which is why delivery is at least
	// once and every message carries its event ID for consumers to dedupe
	// on. Not idempotent on the transport: a repeat sends duplicates.
	//
	// Errors: ctx.Err() when ctx is done; domain.ErrUnavailable when the
	// transport is closed or failing (retry later); domain.ErrInvalidArgument
	// for an event that cannot be encoded. Safe for concurrent use.
	Publish(ctx context.Context, events []publicevent.Event) error
}

// PublicEventSubscriber follows the public event stream live.
type PublicEventSubscriber interface {
	// SubscribeLive subscribes to the stream from now on: every event
	// published after it returns is delivered, at least once and in no
	// guaranteed order, until the subscription is closed or ctx is done.
	// Events published before are not replayed (read them from the log).
	//
	// Errors: ctx.Err(); domain.ErrUnavailable when the transport is closed
	// or failing. Safe for concurrent use; each call is an independent
	// subscription that sees every event.
	SubscribeLive(ctx context.Context) (PublicEventSubscription, error)
}

// PublicEventSubscription is one live subscription.
type PublicEventSubscription interface {
	// Next blocks until the next event. It returns ErrLagged (once per
	// loss) when events were lost since the previous call, ctx.Err() when
	// ctx is done, and domain.ErrUnavailable once the subscription is
	// closed or its transport went away. Not for concurrent use.
	Next(ctx context.Context) (publicevent.Event, error)
	// Close ends the subscription and releases what it holds; a blocked
	// Next returns. Idempotent; safe to call while Next runs.
	Close() error
}

// LogFollower is the part of the log PublishEvents needs: its head, and a
// catch-up subscription. Every EventLog is one.
type LogFollower interface {
	LogReader
	LogSubscriber
}

// PositionStore records how far a projection has got. Every
// ProjectionStore is one; see ProjectionStore for errors and concurrency.
type PositionStore interface {
	Position(name string) (uint64, error)
	Update(name string, position uint64, fn func(projections.Txn) error) error
}
