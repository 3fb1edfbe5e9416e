package natsjs

import (
	"encoding/binary"
	"math"
	"strings"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// Event message payload, format version 1 (the message's stream sequence
// is the event's position; its subject is the event stream's subject):
//
//	byte     format version (1)
//	8 bytes  stream revision, big-endian (fixed width, so that the head of
//	         a stream is read without decoding the rest)
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
// Event-ID marker payload, format version 1 (one marker per event, on the
// subject <prefix>.id.<event ID>; the marker and its event are in the same
// atomic batch):
//
//	byte     format version (1)
//	uvarint  offset: the event's position minus the marker's sequence
//	uvarint  stream revision of the event
//	string   stream
//
// A reader rejects any other format version, and any payload with missing
// or trailing bytes, as corruption.
const (
	recordV1  byte = 1
	markerV1  byte = 1
	revOffset      = 1
	idOffset       = revOffset + 8
	headerLen      = idOffset + 16
)

// appendRecord appends e's payload with revision rev to dst.
func appendRecord(dst []byte, e *domain.Event, rev uint64) []byte {
	w := wire.Writer{B: dst}
	w.B = append(w.B, recordV1)
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

// recordSize bounds the length of e's payload.
func recordSize(e *domain.Event) int {
	// headerLen, six length prefixes, schema and time varints: 64 is ample.
	return headerLen + 64 + len(e.Stream) + len(e.Type) + len(e.Account) + len(e.Region) + len(e.Instance) + len(e.Data)
}

// decodeRecord decodes the event stored at position pos. Malformed bytes
// are a corruption error naming the position, never the bytes.
func decodeRecord(pos uint64, v []byte) (domain.Event, error) {
	if len(v) < headerLen {
		return domain.Event{}, domain.Corruption("jetstream: event at position %d: payload of %d bytes is too short", pos, len(v))
	}
	if v[0] != recordV1 {
		return domain.Event{}, domain.Corruption("jetstream: event at position %d: unknown payload format %d", pos, v[0])
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
		return domain.Event{}, domain.Corruption("jetstream: event at position %d: %v", pos, err)
	}
	if schema > math.MaxUint16 {
		return domain.Event{}, domain.Corruption("jetstream: event at position %d: schema %d out of range", pos, schema)
	}
	e.Schema = uint16(schema)
	return e, nil
}

// recordRevision reads the revision of an event payload without decoding
// the rest.
func recordRevision(pos uint64, v []byte) (uint64, error) {
	if len(v) < headerLen || v[0] != recordV1 {
		return 0, domain.Corruption("jetstream: event at position %d: bad payload header", pos)
	}
	return binary.BigEndian.Uint64(v[revOffset:]), nil
}

// marker is what an event-ID marker says about its event.
type marker struct {
	offset uint64 // event position - marker sequence
	rev    uint64
	stream string
}

func appendMarker(dst []byte, m marker) []byte {
	w := wire.Writer{B: dst}
	w.B = append(w.B, markerV1)
	w.Uvarint(m.offset)
	w.Uvarint(m.rev)
	w.String(m.stream)
	return w.B
}

func decodeMarker(seq uint64, v []byte) (marker, error) {
	if len(v) < 1 || v[0] != markerV1 {
		return marker{}, domain.Corruption("jetstream: event-ID marker at sequence %d: bad payload header", seq)
	}
	r := wire.Reader{B: v[1:]}
	var m marker
	m.offset = r.Uvarint()
	m.rev = r.Uvarint()
	m.stream = r.String()
	if err := r.Done(); err != nil {
		return marker{}, domain.Corruption("jetstream: event-ID marker at sequence %d: %v", seq, err)
	}
	if m.offset == 0 || seq+m.offset < seq {
		return marker{}, domain.Corruption("jetstream: event-ID marker at sequence %d: bad offset %d", seq, m.offset)
	}
	return m, nil
}

// escape starts a hex escape in a subject token.
const escape = '~'

// subjectToken encodes a stream name as one subject token: letters, digits,
// '-' and '_' stand for themselves; every other byte (including '~', '.',
// '*', '>' and white space, which a token cannot hold) becomes '~' and two
// upper-case hex digits. The encoding is injective, so two streams never
// share a subject, and a stream whose name extends another's gets a token
// that extends the other's token, never a subject the other's filter
// matches (filters here are literal subjects).
func subjectToken(stream string) string {
	plain := true
	for i := 0; i < len(stream); i++ {
		if !tokenSafe(stream[i]) {
			plain = false
			break
		}
	}
	if plain {
		return stream
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(stream) + 16)
	for i := 0; i < len(stream); i++ {
		c := stream[i]
		if tokenSafe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte(escape)
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

func tokenSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
