package esdb

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// Envelope, format version 1: the event's user metadata in EventStoreDB
// (content type binary). EventStoreDB keeps the event ID, stream, revision,
// position and type itself; e.Data is the event's data, unchanged.
//
//	byte     format version (1)
//	uvarint  schema
//	uvarint  occurred-at, Unix nanoseconds (0 = zero time), as wire.Writer.Time
//	string   account         (uvarint length + bytes, as wire.Writer.String)
//	string   region
//	string   instance
//
// A reader rejects any other format version, and any metadata with missing
// or trailing bytes, as corruption: an event in one of our streams that was
// not written by this adapter is reported, never guessed at.
const envelopeV1 byte = 1

// appendEnvelope appends e's envelope to dst.
func appendEnvelope(dst []byte, e *domain.Event) []byte {
	w := wire.Writer{B: dst}
	w.B = append(w.B, envelopeV1)
	w.Uvarint(uint64(e.Schema))
	w.Time(e.OccurredAt)
	w.String(string(e.Account))
	w.String(e.Region)
	w.String(string(e.Instance))
	return w.B
}

// envelopeSize bounds the length of e's envelope: the version byte, five
// varints (schema, time, three string lengths) and the strings.
func envelopeSize(e *domain.Event) int {
	return 1 + 5*binary.MaxVarintLen64 + len(e.Account) + len(e.Region) + len(e.Instance)
}

// toEventData is the proposed EventStoreDB event for e. The event ID is the
// ULID's 16 bytes read as a UUID, so it round-trips bit for bit.
func toEventData(e *domain.Event) esdbclient.EventData {
	return esdbclient.EventData{
		EventID:     uuid.UUID(e.ID),
		EventType:   e.Type,
		ContentType: esdbclient.ContentTypeBinary,
		Data:        e.Data,
		Metadata:    appendEnvelope(make([]byte, 0, envelopeSize(e)), e),
	}
}

// appendSize is what EventStoreDB counts against its maximum append size
// for e (its Event.SizeOnDisk: data, metadata and twice the type's UTF-16
// length, which twice the UTF-8 length bounds).
func appendSize(d *esdbclient.EventData) int {
	return len(d.Data) + len(d.Metadata) + 2*len(d.EventType)
}

// fromRecorded decodes an event read from EventStoreDB. Malformed metadata
// is a corruption error naming the stream and revision, never the bytes.
func fromRecorded(r *esdbclient.RecordedEvent) (domain.Event, error) {
	pos, err := eventPosition(r)
	if err != nil {
		return domain.Event{}, err
	}
	where := func(format string, args ...any) error {
		return domain.Corruption("esdb: event %d of stream %q: %s", r.EventNumber, r.StreamID, fmt.Sprintf(format, args...))
	}
	m := r.UserMetadata
	if len(m) == 0 {
		return domain.Event{}, where("no kmsbackup envelope in its metadata (an event not written by kmsbackup?)")
	}
	if m[0] != envelopeV1 {
		return domain.Event{}, where("unknown envelope format %d (an event not written by kmsbackup?)", m[0])
	}
	rd := wire.Reader{B: m[1:]}
	schema := rd.Uvarint()
	at := rd.Time()
	account := rd.String()
	region := rd.String()
	instance := rd.String()
	if err := rd.Done(); err != nil {
		return domain.Event{}, where("envelope: %v", err)
	}
	if schema > math.MaxUint16 {
		return domain.Event{}, where("schema %d out of range", schema)
	}
	data := r.Data
	if len(data) == 0 {
		data = nil
	}
	return domain.Event{
		ID:         domain.EventID(r.EventID),
		Stream:     r.StreamID,
		Revision:   r.EventNumber,
		Position:   pos,
		Type:       r.EventType,
		Schema:     uint16(schema),
		OccurredAt: at,
		Account:    domain.AccountID(account),
		Region:     region,
		Instance:   domain.InstanceID(instance),
		Data:       data,
	}, nil
}

// eventPosition is our global position of r: its commit position in $all.
// For every event written by an ordinary (implicitly committed) append, the
// commit position is the event's own log position, so it is distinct for
// every event and strictly increases in $all order. EventStoreDB reports
// ulong.MaxValue ("no position") for events read from a stream on servers
// older than 22.6; that is reported as a failed precondition.
func eventPosition(r *esdbclient.RecordedEvent) (uint64, error) {
	c := r.Position.Commit
	if c == 0 || c > math.MaxInt64 {
		return 0, &domain.Error{Op: "read", Kind: domain.ErrFailedPrecondition, Item: r.StreamID,
			Msg:  fmt.Sprintf("EventStoreDB reported no $all position for event %d", r.EventNumber),
			Hint: "use EventStoreDB 22.6 or later, or KurrentDB, which report positions on stream reads"}
	}
	return c, nil
}

// allFrom is where a forward read of $all for the events after position
// after starts: the start of $all for 0, else the event at after itself
// (reads are inclusive; the caller skips it). after must be a position
// EventStoreDB gave (see ReadAll for other values).
func allFrom(after uint64) esdbclient.AllPosition {
	if after == 0 {
		return esdbclient.Start{}
	}
	return esdbclient.Position{Commit: after, Prepare: after}
}

// chunkStart is the start of the transaction-file chunk holding position
// p: always the start of a record, so a valid place to read $all from.
func chunkStart(p, chunkSize uint64) uint64 {
	if chunkSize == 0 {
		return 0
	}
	return p - p%chunkSize
}

// keyAfter reports whether $all position a comes after b.
func keyAfter(a, b esdbclient.Position) bool {
	return a.Commit > b.Commit || (a.Commit == b.Commit && a.Prepare > b.Prepare)
}

// streamFrom maps a ReadStream start to EventStoreDB's: a revision, or the
// end of the stream when reading backwards from math.MaxUint64 (or any
// revision EventStoreDB cannot represent). ok is false when a forward read
// starts beyond any possible revision (the result is empty).
func streamFrom(from uint64, backwards bool) (pos esdbclient.StreamPosition, ok bool) {
	if from > math.MaxInt64 {
		if backwards {
			return esdbclient.End{}, true
		}
		return nil, false
	}
	return esdbclient.Revision(from), true
}

// direction maps the ReadStream flag.
func direction(backwards bool) esdbclient.Direction {
	if backwards {
		return esdbclient.Backwards
	}
	return esdbclient.Forwards
}

// esdbExpected is the exact condition the adapter appends under, once it
// has read the stream's head: no stream, or exactly that head revision.
// (The caller's condition, domain.ExpectedRevision, is checked against the
// same head beforehand; see Append.)
func esdbExpected(exists bool, head uint64) esdbclient.ExpectedRevision {
	if !exists {
		return esdbclient.NoStream{}
	}
	return esdbclient.Revision(head)
}

// expectedStart is the revision at which a batch appended under expected
// starts, when expected names it (no stream: 0; exact r: r+1).
func expectedStart(expected domain.ExpectedRevision) (uint64, bool) {
	if expected.IsNoStream() {
		return 0, true
	}
	if r, ok := expected.Exact(); ok && r < math.MaxInt64 {
		return r + 1, true
	}
	return 0, false
}

// isSystem reports whether an event belongs to EventStoreDB itself: a
// stream or an event type starting with "$" (statistics, projection
// emitted links, stream metadata, scavenges...).
func isSystem(stream, eventType string) bool {
	return strings.HasPrefix(stream, "$") || strings.HasPrefix(eventType, "$")
}

// matchesPrefix reports whether stream starts with one of prefixes (the
// empty prefix matches every stream).
func matchesPrefix(stream string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(stream, p) {
			return true
		}
	}
	return false
}

// subscriptionFilter is the server-side filter of our $all subscriptions:
// the stream prefixes, or, when the empty prefix asks for every stream,
// EventStoreDB's filter excluding system event types. The adapter filters
// again on its side (isSystem, matchesPrefix), so the two cannot disagree.
func subscriptionFilter(prefixes []string) *esdbclient.SubscriptionFilter {
	for _, p := range prefixes {
		if p == "" {
			return esdbclient.ExcludeSystemEventsFilter()
		}
	}
	return &esdbclient.SubscriptionFilter{Type: esdbclient.StreamFilterType, Prefixes: prefixes}
}
