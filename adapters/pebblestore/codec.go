package pebblestore

import (
	"encoding/binary"
	"math"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// Event record, format version 1 (the value of an 'L' key; the position is
// the key):
//
//	byte     format version (1)
//	8 bytes  stream revision, big-endian (fixed width so that the writer can
//	         fill it in after the record was encoded by the caller)
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
	recordV1     byte = 1
	revOffset         = 1
	idOffset          = revOffset + 8
	headerLen         = idOffset + 16
	maxSchemaVal      = math.MaxUint16
)

// appendRecord appends e's record to dst with a zero revision; the writer
// sets the revision with setRecordRevision.
func appendRecord(dst []byte, e *domain.Event) []byte {
	w := wire.Writer{B: dst}
	w.B = append(w.B, recordV1)
	w.Uint64(0)
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

func setRecordRevision(rec []byte, rev uint64) {
	binary.BigEndian.PutUint64(rec[revOffset:], rev)
}

// decodeRecord decodes the record stored at position pos. Malformed bytes
// are a corruption error naming the position, never the bytes.
func decodeRecord(pos uint64, v []byte) (domain.Event, error) {
	if len(v) < headerLen {
		return domain.Event{}, domain.Corruption("pebblestore: event at position %d: record of %d bytes is too short", pos, len(v))
	}
	if v[0] != recordV1 {
		return domain.Event{}, domain.Corruption("pebblestore: event at position %d: unknown record format %d", pos, v[0])
	}
	r := wire.Reader{B: v[1:]}
	var e domain.Event
	e.Position = pos
	e.Revision = r.Uint64()
	r.Fixed(e.ID[:])
	e.Stream = r.String()
	e.Type = r.String()
	schema := r.Uvarint()
	e.OccurredAt = r.Time()
	e.Account = domain.AccountID(r.String())
	e.Region = r.String()
	e.Instance = domain.InstanceID(r.String())
	e.Data = r.Bytes()
	if err := r.Done(); err != nil {
		return domain.Event{}, domain.Corruption("pebblestore: event at position %d: %v", pos, err)
	}
	if schema > maxSchemaVal {
		return domain.Event{}, domain.Corruption("pebblestore: event at position %d: schema %d out of range", pos, schema)
	}
	e.Schema = uint16(schema)
	return e, nil
}

// recordHeader reads the revision, event ID and stream of a record without
// decoding the rest.
func recordHeader(pos uint64, v []byte) (rev uint64, id domain.EventID, stream string, err error) {
	if len(v) < headerLen || v[0] != recordV1 {
		return 0, id, "", domain.Corruption("pebblestore: event at position %d: bad record header", pos)
	}
	r := wire.Reader{B: v[1:]}
	rev = r.Uint64()
	r.Fixed(id[:])
	stream = r.String()
	if err := r.Err(); err != nil {
		return 0, id, "", domain.Corruption("pebblestore: event at position %d: %v", pos, err)
	}
	return rev, id, stream, nil
}
