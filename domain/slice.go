package domain

import (
	"encoding/binary"
	"math/bits"
	"time"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// sliceVersion is the format version of an encoded slice.
const sliceVersion = 1

// EncodeSlice encodes the events of one checkpoint's slice, as a backup
// instance stores them: every envelope field, and payloads whose key
// material is sealed under the backup instance's own data key.
func EncodeSlice(events []Event) []byte {
	n := 2 * binary.MaxVarintLen64
	for i := range events {
		n += eventSize(&events[i])
	}
	w := wire.Writer{B: make([]byte, 0, n)}
	w.Uvarint(sliceVersion)
	w.Uvarint(uint64(len(events)))
	for i := range events {
		encodeEvent(&w, &events[i])
	}
	return w.B
}

// encodeEvent writes every envelope field of e and its payload.
func encodeEvent(w *wire.Writer, e *Event) {
	w.Fixed(e.ID[:])
	w.String(e.Stream)
	w.Uvarint(e.Revision)
	w.Uvarint(e.Position)
	w.String(e.Type)
	w.Uvarint(uint64(e.Schema))
	w.Time(e.OccurredAt)
	w.String(string(e.Account))
	w.String(e.Region)
	w.String(string(e.Instance))
	w.Bytes(e.Data)
}

// eventSize is the size of e encoded by encodeEvent.
func eventSize(e *Event) int {
	n := len(e.ID)
	for _, v := range [...]uint64{e.Revision, e.Position, uint64(e.Schema), timeWire(e.OccurredAt)} {
		n += uvarintSize(v)
	}
	for _, l := range [...]int{len(e.Stream), len(e.Type), len(e.Account), len(e.Region), len(e.Instance), len(e.Data)} {
		n += uvarintSize(uint64(l)) + l
	}
	return n
}

// timeWire is the integer wire.Writer.Time writes for t.
func timeWire(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}

// uvarintSize is the size of v as an unsigned varint.
func uvarintSize(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// decodeEvent reads what encodeEvent wrote; errors stay in r.
func decodeEvent(r *wire.Reader, e *Event) {
	r.Fixed(e.ID[:])
	e.Stream = r.String()
	e.Revision = r.Uvarint()
	e.Position = r.Uvarint()
	e.Type = r.String()
	e.Schema = uint16(r.Uint32())
	e.OccurredAt = r.Time()
	e.Account = AccountID(r.String())
	e.Region = r.String()
	e.Instance = InstanceID(r.String())
	e.Data = r.Bytes()
}

// DecodeSlice decodes a slice. Malformed input is a corruption error.
func DecodeSlice(b []byte) ([]Event, error) {
	r := wire.Reader{B: b}
	if v := r.Uvarint(); r.Err() == nil && v != sliceVersion {
		return nil, Corruption("slice: unknown format version %d", v)
	}
	n := r.Uvarint()
	if r.Err() != nil || n > uint64(len(b)) {
		return nil, Corruption("slice: bad event count")
	}
	out := make([]Event, n)
	for i := range out {
		decodeEvent(&r, &out[i])
	}
	if err := r.Done(); err != nil {
		return nil, Corruption("slice: %v", err)
	}
	return out, nil
}

// SliceWriter encodes a slice one event at a time into the bytes
// EncodeSlice gives for the same events, so that a large slice is held
// once, encoded, and never as decoded events as well. The count of events
// comes first in the encoding: NewSliceWriter takes it. The zero value is
// not usable. Not safe for concurrent use.
type SliceWriter struct {
	w     wire.Writer
	head  int    // bytes of the version and count
	count uint64 // the count written in the head
	added uint64
}

// NewSliceWriter starts a slice that will hold count events.
func NewSliceWriter(count uint64) *SliceWriter {
	s := &SliceWriter{count: count}
	s.w.B = make([]byte, 0, 16)
	s.w.Uvarint(sliceVersion)
	s.w.Uvarint(count)
	s.head = len(s.w.B)
	return s
}

// Add appends e. When the buffer is full, it is sized for the events
// still due at the mean size of those added, plus 1/16, so that it rarely
// grows again (growing holds the old and the new buffer at once): for the
// first sliceSample events, then, with their mean, for all the others. It
// never reserves more than 16 times what it holds (or 4 MiB), so that a
// count that overstates costs memory in proportion to the events added.
func (s *SliceWriter) Add(e *Event) {
	if n := eventSize(e); cap(s.w.B)-len(s.w.B) < n {
		s.grow(n)
	}
	encodeEvent(&s.w, e)
	s.added++
}

const (
	// sliceSample is how many events SliceWriter sees before it sizes its
	// buffer for all those due.
	sliceSample = 256
	// sliceReserveMin is the most SliceWriter reserves for the events due,
	// whatever it holds.
	sliceReserveMin = 4 << 20
)

// grow makes room for an event of n bytes and for the events still due.
func (s *SliceWriter) grow(n int) {
	size := len(s.w.B) + n
	limit := max(16*size, sliceReserveMin)
	if added := s.added + 1; added < s.count {
		per := uint64(size-s.head)/added*17/16 + 1 // the mean event, plus 1/16
		due := s.count - added
		if added < sliceSample {
			due = min(due, sliceSample-added)
		}
		if due > uint64(limit)/per {
			size = limit
		} else {
			size = min(size+int(due*per), limit)
		}
	} else {
		size += size / 4 // more events than announced: grow as append does
	}
	b := make([]byte, len(s.w.B), size)
	copy(b, s.w.B)
	s.w.B = b
}

// Events returns how many events have been added.
func (s *SliceWriter) Events() uint64 { return s.added }

// Bytes returns the encoded slice of the events added so far: what
// EncodeSlice returns for them. If that is not the count given to
// NewSliceWriter, the head is rewritten (a copy when its size changes).
// The result shares the writer's buffer.
func (s *SliceWriter) Bytes() []byte {
	if s.added != s.count {
		h := wire.Writer{B: make([]byte, 0, 16)}
		h.Uvarint(sliceVersion)
		h.Uvarint(s.added)
		if len(h.B) == s.head {
			copy(s.w.B, h.B)
		} else {
			b := make([]byte, 0, len(h.B)+len(s.w.B)-s.head)
			s.w.B = append(append(b, h.B...), s.w.B[s.head:]...)
			s.head = len(h.B)
		}
		s.count = s.added
	}
	return s.w.B
}
