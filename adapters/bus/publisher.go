package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// Topic is the Watermill topic of the public event stream, schema
// kmsbackup.event/v1. It has no dots: NATS JetStream makes stream names of
// topics, and those cannot contain dots. A later schema gets its own topic
// (kmsbackup_events_v2), published side by side during its deprecation
// period.
const Topic = "kmsbackup_events"

// Metadata keys set on every message, so that consumers can route and
// filter without parsing the payload.
const (
	MetadataPosition = "position" // the event's global log position, in decimal
	MetadataAccount  = "account"  // the account the event belongs to
	MetadataType     = "type"     // the event type, e.g. "KeyCreated"
	MetadataSchema   = "schema"   // publicevent.Schema
)

// Publisher publishes public events on Topic.
type Publisher struct {
	pub message.Publisher
}

var _ commands.PublicEventPublisher = (*Publisher)(nil)

// NewPublisher publishes through pub: the embedded GoChannel, NATS.Publisher
// (which also makes JetStream drop republished duplicates within its
// window), or any other Watermill publisher. The caller keeps ownership of
// pub and closes it.
func NewPublisher(pub message.Publisher) *Publisher { return &Publisher{pub: pub} }

// Publish sends events as one Watermill publish, in order. Errors:
// ctx.Err(); domain.ErrInvalidArgument for an event that does not marshal;
// domain.ErrUnavailable when the transport fails, in which case any prefix
// of events may have gone out. Safe for concurrent use.
func (p *Publisher) Publish(ctx context.Context, events []publicevent.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	msgs := make([]*message.Message, len(events))
	for i, ev := range events {
		msg, err := NewMessage(ev)
		if err != nil {
			return err
		}
		msg.SetContext(ctx)
		msgs[i] = msg
	}
	if err := p.pub.Publish(Topic, msgs...); err != nil {
		// The vendor error is kept as text only: callers see our sentinel.
		return fmt.Errorf("bus: publish positions %d-%d on %s: %w: %v",
			events[0].Position, events[len(events)-1].Position, Topic, domain.ErrUnavailable, err)
	}
	return nil
}

// NewMessage encodes one event as the Watermill message published for it:
// UUID = event ID, payload = the event's JSON, metadata as documented.
func NewMessage(ev publicevent.Event) (*message.Message, error) {
	payload, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("bus: encode event %s: %w: %v", ev.ID, domain.ErrInvalidArgument, err)
	}
	msg := message.NewMessage(ev.ID, payload)
	msg.Metadata.Set(MetadataPosition, strconv.FormatUint(ev.Position, 10))
	msg.Metadata.Set(MetadataAccount, ev.Account)
	msg.Metadata.Set(MetadataType, ev.Type)
	msg.Metadata.Set(MetadataSchema, ev.Schema)
	return msg, nil
}
