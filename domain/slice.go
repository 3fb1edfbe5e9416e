package domain

import (
	"encoding/binary"
	"math/bits"
	"time"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// sliceVersion is the format version of a slice of the first generation
// (codec v1): one blob per checkpoint, every envelope field of every event.
// Slices are written in codec v2 now (sliceparts.go); NewSliceReader still
// reads these.
const sliceVersion = 1

// EncodeSliceV1 encodes the events of one checkpoint's slice in codec v1,
// as the first generation of backups stored them: every envelope field,
// and payloads whose key material is sealed under the backup instance's
// own data key. Nothing writes it any more; tests use it to make data of
// that generation.
func EncodeSliceV1(events []Event) []byte {
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
