package domain

import "github.com/kmsbackup/kmsbackup/domain/wire"

// sliceVersion is the format version of an encoded slice.
const sliceVersion = 1

// EncodeSlice encodes the events of one checkpoint's slice, as a backup
// instance stores them: every envelope field, and payloads whose key
// material is sealed under the backup instance's own data key.
func EncodeSlice(events []Event) []byte {
	n := 16
	for i := range events {
		n += 128 + len(events[i].Data)
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
