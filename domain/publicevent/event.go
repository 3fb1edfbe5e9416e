package publicevent

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// Schema is the ID of the schema this package writes and reads. It is the
// "schema" field of every event.
const Schema = "kmsbackup.event/v1"

// TimeFormat is the layout of "occurred_at": RFC 3339 in UTC with exactly
// nine fractional digits, so that the text sorts like the time.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

var (
	// ErrUnknownSchema is wrapped by Parse's error when the message names a
	// schema other than Schema: a consumer built for v1 reading v2, or a
	// message that is not a kmsbackup event at all. The error names the
	// schema found.
	ErrUnknownSchema = errors.New("publicevent: unknown schema")
	// ErrMalformed is wrapped by Parse's error when the message claims
	// Schema but does not follow it (bad JSON, a bad ID or time, a data
	// object of the wrong shape).
	ErrMalformed = errors.New("publicevent: malformed event")
	// ErrNoPublicForm is wrapped by FromEvent's error for an event type that
	// this package does not map yet. It is a programming error: every event
	// type the log holds needs a public form before it is appended.
	ErrNoPublicForm = errors.New("publicevent: event type has no public form")
)

// Event is one event of the public stream. The envelope fields mirror the
// log's envelope; Data holds the type-specific fields.
type Event struct {
	Schema     string    // always Schema
	ID         string    // the event's ULID: the idempotency key consumers dedupe on
	Type       string    // e.g. "KeyCreated"
	Stream     string    // e.g. "kms-kms_01H..."
	Revision   uint64    // 0-based position within Stream
	Position   uint64    // global position in the log, from 1, strictly increasing
	OccurredAt time.Time // UTC
	Account    string    // the account the event belongs to
	Region     string    // empty when the event has no region
	Instance   string    // the KMS instance, empty when the event has none
	Data       Data      // one of the types in data.go, or *Unknown
}

// wireEvent is the JSON layout of an Event, in the documented field order.
type wireEvent struct {
	Schema     string          `json:"schema"`
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Stream     string          `json:"stream"`
	Revision   uint64          `json:"revision"`
	Position   uint64          `json:"position"`
	OccurredAt string          `json:"occurred_at"`
	Account    string          `json:"account"`
	Region     string          `json:"region"`
	Instance   string          `json:"instance"`
	Data       json.RawMessage `json:"data"`
}

// MarshalJSON writes the documented v1 layout. It fails if Data is missing
// or is of another type than Type.
func (e Event) MarshalJSON() ([]byte, error) {
	if e.Data == nil {
		return nil, fmt.Errorf("publicevent: marshal event %s: no data", e.ID)
	}
	if t := e.Data.EventType(); t != e.Type {
		return nil, fmt.Errorf("publicevent: marshal event %s: data of type %s in an event of type %s", e.ID, t, e.Type)
	}
	data, err := json.Marshal(e.Data)
	if err != nil {
		return nil, fmt.Errorf("publicevent: marshal event %s: %w", e.ID, err)
	}
	return json.Marshal(wireEvent{
		Schema: e.Schema, ID: e.ID, Type: e.Type, Stream: e.Stream, Revision: e.Revision,
		Position: e.Position, OccurredAt: e.OccurredAt.UTC().Format(TimeFormat),
		Account: e.Account, Region: e.Region, Instance: e.Instance, Data: data,
	})
}

// UnmarshalJSON reads an event as Parse does.
func (e *Event) UnmarshalJSON(b []byte) error {
	ev, err := Parse(b)
	if err != nil {
		return err
	}
	*e = ev
	return nil
}

// Parse reads one event. It checks the schema first, so that a message in
// another schema is reported as such (ErrUnknownSchema) whatever its shape;
// a v1 message that breaks the schema is ErrMalformed. Unknown fields are
// ignored and an unknown event type is returned with Data of type *Unknown,
// as the versioning policy asks of consumers.
func Parse(b []byte) (Event, error) {
	var probe struct {
		Schema *string `json:"schema"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch {
	case probe.Schema == nil:
		return Event{}, fmt.Errorf("%w: the message has no \"schema\" field, so it is not a kmsbackup event", ErrUnknownSchema)
	case *probe.Schema != Schema:
		return Event{}, fmt.Errorf("%w %q: this consumer reads %q only; upgrade it, or read the topic that carries %s",
			ErrUnknownSchema, *probe.Schema, Schema, Schema)
	}

	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if _, err := ulid.ParseStrict(w.ID); err != nil {
		return Event{}, fmt.Errorf("%w: id %q is not a ULID", ErrMalformed, w.ID)
	}
	if w.Type == "" {
		return Event{}, fmt.Errorf("%w: event %s has no type", ErrMalformed, w.ID)
	}
	at, err := time.Parse(time.RFC3339Nano, w.OccurredAt)
	if err != nil {
		return Event{}, fmt.Errorf("%w: event %s: occurred_at %q is not an RFC 3339 time", ErrMalformed, w.ID, w.OccurredAt)
	}
	data, err := parseData(w.Type, w.Data)
	if err != nil {
		return Event{}, fmt.Errorf("%w: event %s: data of %s: %w", ErrMalformed, w.ID, w.Type, err)
	}
	return Event{
		Schema: w.Schema, ID: w.ID, Type: w.Type, Stream: w.Stream, Revision: w.Revision,
		Position: w.Position, OccurredAt: at.UTC(), Account: w.Account, Region: w.Region,
		Instance: w.Instance, Data: data,
	}, nil
}
