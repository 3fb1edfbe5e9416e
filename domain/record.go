package domain

import (
	"encoding/binary"
	"math"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// The stored event record, format version 1: how the event logs (the
// embedded one and the one on NATS JetStream) keep one event. The position
// is the log's own (a key, a message sequence), not in the record:
//
//	byte     format version (1)
//	8 bytes  stream revision, big-endian (fixed width, so that a writer can
//	         fill it in after encoding, and a reader can read it alone)
//	16 bytes event ID
//	string   stream          (uvarint length + bytes, as wire.Writer.String)
//	string   type
//	uvarint  schema
//	uvarint  occurred-at, Unix nanoseconds (0 = zero time), as wire.Writer.Time
//	string   account
//	string   region
//	string   instance
//	bytes    data            (uvarint length + bytes)
//
// A reader rejects any other format version, and any record with missing or
// trailing bytes, as corruption.
const (
	eventRecordV1   byte = 1
	recordRevOffset      = 1
	recordIDOffset       = recordRevOffset + 8
	recordHeaderLen      = recordIDOffset + 16
)

// AppendEventRecord appends e's record to dst with revision rev (0 when the
// writer sets it later with SetEventRecordRevision).
func AppendEventRecord(dst []byte, e *Event, rev uint64) []byte {
	w := wire.Writer{B: dst}
	w.B = append(w.B, eventRecordV1)
	w.Uint64(rev)
	w.Fixed(e.ID[:])
	w.String(e.Stream)
	w.String(e.Type)
	w.Uvarint(uint64(e.Schema))
	w.Time(e.OccurredAt)
	w.String(string(e.Account))
	w.String(e.Region)
	w.String(string(e.Instance))
	w.Bytes(e.Data)
	return w.B
}

// EventRecordSize bounds the length of e's record.
func EventRecordSize(e *Event) int {
	// The header, six length prefixes, schema and time varints: 64 is ample.
	return recordHeaderLen + 64 + len(e.Stream) + len(e.Type) + len(e.Account) + len(e.Region) + len(e.Instance) + len(e.Data)
}

// SetEventRecordRevision sets the revision of an encoded record.
func SetEventRecordRevision(rec []byte, rev uint64) {
	binary.BigEndian.PutUint64(rec[recordRevOffset:], rev)
}

// DecodeEventRecord decodes the record stored at position pos. Malformed
// bytes are a corruption error naming the position, never the bytes.
func DecodeEventRecord(pos uint64, v []byte) (Event, error) {
	return DecodeEventRecordAfter(pos, v, nil)
}

// DecodeEventRecordAfter decodes a record like DecodeEventRecord, sharing
// with prev (the event decoded before it, or nil) the strings the two
// have alike: a reader of consecutive events, whose type, account, region
// and instance mostly repeat, allocates them once.
func DecodeEventRecordAfter(pos uint64, v []byte, prev *Event) (Event, error) {
	if prev == nil {
		prev = &Event{}
	}
	if len(v) < recordHeaderLen {
		return Event{}, Corruption("event at position %d: record of %d bytes is too short", pos, len(v))
	}
	if v[0] != eventRecordV1 {
		return Event{}, Corruption("event at position %d: unknown record format %d", pos, v[0])
	}
	r := wire.Reader{B: v[1:]}
	var e Event
	e.Position = pos
	e.Revision = r.Uint64()
	r.Fixed(e.ID[:])
	e.Stream = r.StringLike(prev.Stream)
	e.Type = r.StringLike(prev.Type)
	schema := r.Uvarint()
	e.OccurredAt = r.Time()
	e.Account = AccountID(r.StringLike(string(prev.Account)))
	e.Region = r.StringLike(prev.Region)
	e.Instance = InstanceID(r.StringLike(string(prev.Instance)))
	e.Data = r.Bytes()
	if err := r.Done(); err != nil {
		return Event{}, Corruption("event at position %d: %v", pos, err)
	}
	if schema > math.MaxUint16 {
		return Event{}, Corruption("event at position %d: schema %d out of range", pos, schema)
	}
	e.Schema = uint16(schema)
	return e, nil
}

// EventRecordHeader reads the revision, event ID and stream of a record
// without decoding the rest.
func EventRecordHeader(pos uint64, v []byte) (rev uint64, id EventID, stream string, err error) {
	if len(v) < recordHeaderLen || v[0] != eventRecordV1 {
		return 0, id, "", Corruption("event at position %d: bad record header", pos)
	}
	r := wire.Reader{B: v[1:]}
	rev = r.Uint64()
	r.Fixed(id[:])
	stream = r.String()
	if err := r.Err(); err != nil {
		return 0, id, "", Corruption("event at position %d: %v", pos, err)
	}
	return rev, id, stream, nil
}
