package natsjs

import (
	"fmt"
	"strings"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// An event is the payload of a message whose stream sequence is its
// position and whose subject is its stream's, in the record format of
// domain.AppendEventRecord (revision at a fixed offset).
//
// Event-ID marker payload, format version 1 (written in the atomic batch
// of its event, on the subject <prefix>.id.<event ID>, so its event is in
// the log whenever it is):
//
//	byte     format version (1)
//	uvarint  offset: the event's position minus the marker's sequence
//	uvarint  stream revision of the event
//	string   stream
//
// Event-ID claim payload, format version 2 (a plain message on the same
// subject, published before its event by a single-event append; see
// doc.go): the event it announces may or may not be in the log, and is
// there if and only if the first event of the stream after sequence after
// carries the ID.
//
//	byte     format version (2)
//	uvarint  stream revision the event is to take
//	uvarint  after: the sequence of the stream's last event before it (0
//	         for a new stream)
//	string   stream
//
// A reader rejects any other format version, and any payload with missing
// or trailing bytes, as corruption.
const (
	markerV1 byte = 1
	claimV2  byte = 2
)

// appendRecord appends e's payload with revision rev to dst.
func appendRecord(dst []byte, e *domain.Event, rev uint64) []byte {
	return domain.AppendEventRecord(dst, e, rev)
}

// recordSize bounds the length of e's payload.
func recordSize(e *domain.Event) int { return domain.EventRecordSize(e) }

// decodeRecord decodes the event stored at position pos.
func decodeRecord(pos uint64, v []byte) (domain.Event, error) {
	e, err := domain.DecodeEventRecord(pos, v)
	if err != nil {
		return domain.Event{}, fmt.Errorf("jetstream: %w", err)
	}
	return e, nil
}

// recordRevision reads the revision of an event payload without decoding
// the rest.
func recordRevision(pos uint64, v []byte) (uint64, error) {
	rev, _, _, err := domain.EventRecordHeader(pos, v)
	if err != nil {
		return 0, fmt.Errorf("jetstream: %w", err)
	}
	return rev, nil
}

// marker is what an event-ID marker or claim says about its event.
type marker struct {
	claim  bool   // a claim (version 2): the event may not be in the log
	offset uint64 // marker: event position - marker sequence
	after  uint64 // claim: the sequence of the stream's event before it
	rev    uint64
	stream string
}

func appendMarker(dst []byte, m marker) []byte {
	w := wire.Writer{B: dst}
	if m.claim {
		w.B = append(w.B, claimV2)
		w.Uvarint(m.rev)
		w.Uvarint(m.after)
	} else {
		w.B = append(w.B, markerV1)
		w.Uvarint(m.offset)
		w.Uvarint(m.rev)
	}
	w.String(m.stream)
	return w.B
}

func decodeMarker(seq uint64, v []byte) (marker, error) {
	if len(v) < 1 || (v[0] != markerV1 && v[0] != claimV2) {
		return marker{}, domain.Corruption("jetstream: event-ID marker at sequence %d: bad payload header", seq)
	}
	r := wire.Reader{B: v[1:]}
	var m marker
	if v[0] == claimV2 {
		m.claim = true
		m.rev = r.Uvarint()
		m.after = r.Uvarint()
	} else {
		m.offset = r.Uvarint()
		m.rev = r.Uvarint()
	}
	m.stream = r.String()
	if err := r.Done(); err != nil {
		return marker{}, domain.Corruption("jetstream: event-ID marker at sequence %d: %v", seq, err)
	}
	if !m.claim && (m.offset == 0 || seq+m.offset < seq) {
		return marker{}, domain.Corruption("jetstream: event-ID marker at sequence %d: bad offset %d", seq, m.offset)
	}
	if m.claim && m.after >= seq {
		return marker{}, domain.Corruption("jetstream: event-ID claim at sequence %d: bad sequence %d before its event", seq, m.after)
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
