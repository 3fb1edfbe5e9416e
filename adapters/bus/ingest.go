package bus

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// IngestHandlerName is the router handler name AddIngestHandler registers.
// Never rename it after deploy: some transports key consumer state on it.
const IngestHandlerName = "kmsbackup_kms_ingest"

// IngestFunc ingests one event of an external KMS:
// commands.KMSIngest.Ingest, or a decorator of it.
type IngestFunc func(ctx context.Context, e publicevent.Event) error

// IngestOptions configures IngestHandler.
type IngestOptions struct {
	// Logger receives the messages dropped as poison, at error level, with
	// the message UUID and the reason (never the payload). nil means
	// slog.Default(): a dropped event must not go unnoticed.
	Logger *slog.Logger
	// RetryDelay is how long the handler waits before nacking a failure
	// that a redelivery may cure, for transports that redeliver a nacked
	// message at once (GoChannel); 0 waits not at all. Leave it 0 over NATS,
	// whose consumer spaces redeliveries itself (NATSOptions.MinNakDelay):
	// waiting in the handler would hold up the messages behind.
	RetryDelay time.Duration
}

// IngestHandler handles the messages of IngestTopic: each is parsed with
// publicevent.Parse and given to ingest, with the message's context.
//
//   - Ingested, or already in the log: acked.
//   - Poison, acked and logged: a payload that does not parse (another
//     schema, malformed JSON), or an event ingest refuses as invalid
//     (domain.ErrInvalidArgument: not a KMS event, inconsistent with its
//     stream) or corrupt (domain.ErrCorrupt). Redelivering it cannot help.
//   - Anything else is nacked for redelivery (after RetryDelay): in
//     particular domain.ErrWrongExpectedRevision (the event arrived ahead
//     of its predecessor) and domain.ErrUnavailable (the log is down). An
//     unexpected error is retried too, rather than an event lost.
//
// The handler is stateless and safe for concurrent use.
func IngestHandler(ingest IngestFunc, opts IngestOptions) message.NoPublishHandlerFunc {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "bus", "topic", IngestTopic)
	return func(msg *message.Message) error {
		ev, err := publicevent.Parse(msg.Payload)
		if err != nil {
			logger.Error("dropped an ingest message that is not a kmsbackup.event/v1 event",
				"message_uuid", msg.UUID, "err", err)
			return nil
		}
		err = ingest(msg.Context(), ev)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, domain.ErrInvalidArgument) || domain.IsCorruption(err):
			logger.Error("dropped an ingest event that cannot be ingested",
				"message_uuid", msg.UUID, "event_id", ev.ID, "type", ev.Type, "stream", ev.Stream,
				"revision", ev.Revision, "err", err)
			return nil
		}
		if opts.RetryDelay > 0 {
			t := time.NewTimer(opts.RetryDelay)
			select {
			case <-t.C:
			case <-msg.Context().Done():
				t.Stop()
			}
		}
		return err
	}
}

// AddIngestHandler registers IngestHandler on router, reading IngestTopic
// through sub: any Watermill subscriber (over NATS,
// NATS.NewIngestSubscriber; in one process, the GoChannel the external
// publisher writes to). The router closes sub when it closes. Add
// middleware to the returned handler as needed.
func AddIngestHandler(router *message.Router, sub message.Subscriber, ingest IngestFunc, opts IngestOptions) *message.Handler {
	return router.AddConsumerHandler(IngestHandlerName, IngestTopic, sub, IngestHandler(ingest, opts))
}
