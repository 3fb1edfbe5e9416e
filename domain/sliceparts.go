package domain

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// Slices of codec v2, cut into parts.
//
// A checkpoint's slice is stored as one or more parts, each a blob of at
// most about MaxSlicePart bytes, so that no slice is ever whole in memory:
// the writer stores a part as soon as it is full, a reader decodes one part
// at a time. A part of codec v2 holds what its events share once, in a
// header, and each event compactly:
//
//	uvarint  format version (2)
//	string   account, region, KMS instance, stream (uvarint length + bytes)
//	then, until the end of the part, one record per event:
//	16 bytes event ID
//	uvarint  revision: the first event's own, then the difference from
//	         the previous event's (revisions only grow)
//	varint   occurred-at, Unix nanoseconds (0 = zero time): the first
//	         event's own, then the difference from the previous event's
//	byte     type code (typeCodes), or 0 followed by the type's name
//	uvarint  schema
//	bytes    payload (uvarint length + bytes), as EncodeData wrote it
//
// The global log position of an event is not kept (nothing reads it from a
// backup). Parts of codec v1 (a slice written by the first generation, in
// one blob: every envelope field of every event) still decode:
// NewSliceReader reads both.
const (
	sliceV2 = 2
	// MaxSlicePart is where a slice is cut into parts: an event that would
	// take a part past it starts the next part. A part holds at least one
	// event, so one event larger than this makes a part of its own.
	MaxSlicePart = 4 << 20
)

// typeCodes are the one-byte codes of the event types a slice holds; any
// other type is written as code 0 and its name.
var typeCodes = map[string]byte{
	TypeKeyCreated: 1, TypeKeyRotated: 2, TypeKeyDeleted: 3,
	TypeSecretCreated: 4, TypeSecretRotated: 5, TypeSecretDeleted: 6,
	TypeKeyRestored: 7, TypeSecretRestored: 8,
	TypeInstanceCreated: 9, TypeInstanceReleased: 10,
}

// typeNames is typeCodes reversed.
var typeNames = func() [256]string {
	var out [256]string
	for name, code := range typeCodes {
		out[code] = name
	}
	return out
}()

// SlicePart names one part of a checkpoint's slice: its blob, the blob's
// SHA-256, how many events it holds, and the revisions it covers (the
// first event's, and one past the last event's).
type SlicePart struct {
	Name       string
	Digest     [32]byte
	Events     uint64
	From, Next uint64
}

// SliceHeader is what the events of a slice share: they are all of one
// KMS instance's stream.
type SliceHeader struct {
	Account  AccountID
	Region   string
	Instance InstanceID
	Stream   string
}

// HeaderOf is the header of the slice holding e.
func HeaderOf(e *Event) SliceHeader {
	return SliceHeader{Account: e.Account, Region: e.Region, Instance: e.Instance, Stream: e.Stream}
}

// SliceEncoder encodes the events of one slice into parts of codec v2. Use
// Fits before each Add: when the event does not fit, take the full part
// with Part first. Not safe for concurrent use.
type SliceEncoder struct {
	h      SliceHeader
	limit  int
	w      wire.Writer
	head   int // bytes of the header
	events uint64
	from   uint64
	next   uint64
	prevT  int64
}

// NewSliceEncoder starts a slice of events of h, cut at limit bytes a part
// (MaxSlicePart in production; tests pass less).
func NewSliceEncoder(h SliceHeader, limit int) *SliceEncoder {
	s := &SliceEncoder{h: h, limit: limit}
	s.reset()
	return s
}

func (s *SliceEncoder) reset() {
	s.w.B = s.w.B[:0]
	s.w.Uvarint(sliceV2)
	s.w.String(string(s.h.Account))
	s.w.String(s.h.Region)
	s.w.String(string(s.h.Instance))
	s.w.String(s.h.Stream)
	s.head, s.events, s.prevT = len(s.w.B), 0, 0
}

// recordSize bounds the size of e's record.
func recordSize(e *Event) int {
	return 16 + 2*binary.MaxVarintLen64 + 1 + len(e.Type) + binary.MaxVarintLen64 + binary.MaxVarintLen64 + len(e.Data) + 2
}

// Fits reports whether e can be added to the current part without taking
// it past the limit. An empty part takes any event.
func (s *SliceEncoder) Fits(e *Event) bool {
	return s.events == 0 || len(s.w.B)+recordSize(e) <= s.limit
}

// Add appends e to the current part. e must be of the slice's stream,
// account, region and instance, and come after the events added before it
// (a higher revision). Errors: ErrInvalidArgument otherwise (nothing is
// added).
func (s *SliceEncoder) Add(e *Event) error {
	if HeaderOf(e) != s.h {
		return Invalid("encode slice", "event %s is of stream %q, not the slice's %q", e.ID, e.Stream, s.h.Stream)
	}
	if s.events > 0 && e.Revision <= s.next-1 {
		return Invalid("encode slice", "event %s has revision %d, not after %d", e.ID, e.Revision, s.next-1)
	}
	s.w.Fixed(e.ID[:])
	t := int64(timeWire(e.OccurredAt))
	if s.events == 0 {
		s.from = e.Revision
		s.w.Uvarint(e.Revision)
		s.w.B = binary.AppendVarint(s.w.B, t)
	} else {
		s.w.Uvarint(e.Revision - (s.next - 1))
		s.w.B = binary.AppendVarint(s.w.B, t-s.prevT)
	}
	if code, ok := typeCodes[e.Type]; ok {
		s.w.B = append(s.w.B, code)
	} else {
		s.w.B = append(s.w.B, 0)
		s.w.String(e.Type)
	}
	s.w.Uvarint(uint64(e.Schema))
	s.w.Bytes(e.Data)
	s.events++
	s.next = e.Revision + 1
	s.prevT = t
	return nil
}

// Events is how many events the current part holds.
func (s *SliceEncoder) Events() uint64 { return s.events }

// Part returns the current part and starts the next one: its bytes, its
// events and the revisions it covers. The bytes are valid until the next
// Add (the encoder reuses its buffer).
func (s *SliceEncoder) Part() (data []byte, events, from, next uint64) {
	data, events, from, next = s.w.B, s.events, s.from, s.next
	if events == 0 {
		from, next = 0, 0
	}
	b := s.w.B
	s.w.B = make([]byte, 0, cap(b)) // the caller holds b until its next Add
	s.reset()
	return data, events, from, next
}

// SliceReader decodes a slice blob, of codec v1 or v2, event by event.
// Not safe for concurrent use.
type SliceReader struct {
	r       wire.Reader
	version uint64
	h       SliceHeader
	left    uint64 // v1: events still due
	n       uint64 // events read
	prevRev uint64
	prevT   int64
	err     error // the first failure: it sticks
}

// NewSliceReader starts reading blob b. Errors: ErrCorrupt for an unknown
// format version or a header that does not decode.
func NewSliceReader(b []byte) (*SliceReader, error) {
	s := &SliceReader{r: wire.Reader{B: b}}
	s.version = s.r.Uvarint()
	switch {
	case s.r.Err() != nil:
		return nil, Corruption("slice: no format version")
	case s.version == sliceVersion:
		s.left = s.r.Uvarint()
		if s.r.Err() != nil || s.left > uint64(len(b)) {
			return nil, Corruption("slice: bad event count")
		}
	case s.version == sliceV2:
		s.h = SliceHeader{Account: AccountID(s.r.String()), Region: s.r.String(), Instance: InstanceID(s.r.String()), Stream: s.r.String()}
		if err := s.r.Err(); err != nil {
			return nil, Corruption("slice: header: %v", err)
		}
	default:
		return nil, Corruption("slice: unknown format version %d", s.version)
	}
	return s, nil
}

// Next decodes the next event into e and reports whether there was one.
// In a part of codec v2, e.Data aliases the blob (no copy: do not change
// it, and copy it to keep it beyond the blob). Errors: ErrCorrupt for an
// event that does not decode (the reader then stays failed).
func (s *SliceReader) Next(e *Event) (bool, error) {
	if s.err != nil {
		return false, s.err
	}
	if err := s.r.Err(); err != nil {
		return false, s.fail(err.Error())
	}
	if s.version == sliceVersion {
		if s.left == 0 {
			if err := s.r.Done(); err != nil {
				return false, s.fail(err.Error())
			}
			return false, nil
		}
		*e = Event{}
		decodeEvent(&s.r, e)
		if err := s.r.Err(); err != nil {
			return false, s.fail(err.Error())
		}
		s.left--
		s.n++
		return true, nil
	}
	if len(s.r.B) == 0 {
		return false, nil
	}
	*e = Event{Stream: s.h.Stream, Account: s.h.Account, Region: s.h.Region, Instance: s.h.Instance}
	s.r.Fixed(e.ID[:])
	rev := s.r.Uvarint()
	dt, n := binary.Varint(s.r.B)
	if n <= 0 {
		return false, s.fail("bad time")
	}
	s.r.B = s.r.B[n:]
	if s.n == 0 {
		e.Revision, s.prevT = rev, dt
	} else {
		if rev == 0 {
			return false, s.fail("revision not after the previous one")
		}
		e.Revision, s.prevT = s.prevRev+rev, s.prevT+dt
	}
	if s.prevT != 0 {
		e.OccurredAt = timeOf(s.prevT)
	}
	if len(s.r.B) == 0 {
		return false, s.fail("no type")
	}
	code := s.r.B[0]
	s.r.B = s.r.B[1:]
	if code == 0 {
		e.Type = s.r.String()
	} else if e.Type = typeNames[code]; e.Type == "" {
		return false, s.fail(fmt.Sprintf("unknown type code %d", code))
	}
	schema := s.r.Uint32()
	if schema > 0xffff {
		return false, s.fail("schema out of range")
	}
	e.Schema = uint16(schema)
	size := s.r.Uvarint()
	if s.r.Err() != nil || size > uint64(len(s.r.B)) {
		return false, s.fail("truncated payload")
	}
	e.Data = s.r.B[:size:size]
	s.r.B = s.r.B[size:]
	if err := s.r.Err(); err != nil {
		return false, s.fail(err.Error())
	}
	s.prevRev = e.Revision
	s.n++
	return true, nil
}

func (s *SliceReader) fail(msg string) error {
	s.err = Corruption("slice: event %d: %s", s.n, msg)
	return s.err
}

// timeOf is the time timeWire gave n for.
func timeOf(n int64) time.Time { return time.Unix(0, n).UTC() }

// Events is how many events have been read.
func (s *SliceReader) Events() uint64 { return s.n }

// DecodeSliceAll decodes every event of a slice blob of either codec, each
// event's Data its own copy.
func DecodeSliceAll(b []byte) ([]Event, error) {
	r, err := NewSliceReader(b)
	if err != nil {
		return nil, err
	}
	var out []Event
	for {
		var e Event
		ok, err := r.Next(&e)
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		e.Data = append([]byte(nil), e.Data...)
		out = append(out, e)
	}
}
