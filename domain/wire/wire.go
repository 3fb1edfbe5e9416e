package wire

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
)

// ErrShort is returned (wrapped) when a buffer ends before a value does.
var ErrShort = errors.New("wire: truncated input")

// Writer appends values to a byte slice.
type Writer struct{ B []byte }

// Uvarint appends an unsigned varint.
func (w *Writer) Uvarint(v uint64) { w.B = binary.AppendUvarint(w.B, v) }

// Uint64 appends a fixed 8-byte big-endian integer.
func (w *Writer) Uint64(v uint64) { w.B = binary.BigEndian.AppendUint64(w.B, v) }

// Bytes appends a length-prefixed byte string.
func (w *Writer) Bytes(b []byte) {
	w.Uvarint(uint64(len(b)))
	w.B = append(w.B, b...)
}

// String appends a length-prefixed string.
func (w *Writer) String(s string) {
	w.Uvarint(uint64(len(s)))
	w.B = append(w.B, s...)
}

// Fixed appends bytes without a length prefix.
func (w *Writer) Fixed(b []byte) { w.B = append(w.B, b...) }

// Bool appends one byte.
func (w *Writer) Bool(v bool) {
	if v {
		w.B = append(w.B, 1)
	} else {
		w.B = append(w.B, 0)
	}
}

// Time appends a time as Unix nanoseconds (UTC; the zero time is 0).
func (w *Writer) Time(t time.Time) {
	if t.IsZero() {
		w.Uvarint(0)
		return
	}
	w.Uvarint(uint64(t.UnixNano()))
}

// Reader consumes values from a byte slice. The first error sticks: every
// later call returns a zero value, and Err reports it.
type Reader struct {
	B   []byte
	err error
}

// Err reports the first decoding error, if any.
func (r *Reader) Err() error { return r.err }

// Done reports an error if decoding failed or bytes are left over.
func (r *Reader) Done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.B) != 0 {
		return errors.New("wire: trailing bytes")
	}
	return nil
}

func (r *Reader) fail() { r.Fail(ErrShort) }

// Fail makes err the decoding error (unless there already is one): the
// input is malformed, and nothing more is read.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.B = nil
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.B)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.B = r.B[n:]
	return v
}

// Uint32 reads a varint that must fit in 32 bits.
func (r *Reader) Uint32() uint32 {
	v := r.Uvarint()
	if v > math.MaxUint32 {
		r.fail()
		return 0
	}
	return uint32(v)
}

// Uint64 reads a fixed 8-byte big-endian integer.
func (r *Reader) Uint64() uint64 {
	if r.err != nil || len(r.B) < 8 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(r.B)
	r.B = r.B[8:]
	return v
}

// Bytes reads a length-prefixed byte string. The result is a copy.
func (r *Reader) Bytes() []byte {
	n := r.Uvarint()
	if r.err != nil || n > uint64(len(r.B)) {
		r.fail()
		return nil
	}
	out := make([]byte, n)
	copy(out, r.B[:n])
	r.B = r.B[n:]
	return out
}

// Raw reads a length-prefixed byte string in place: the result aliases
// the input.
func (r *Reader) Raw() []byte {
	n := r.Uvarint()
	if r.err != nil || n > uint64(len(r.B)) {
		r.fail()
		return nil
	}
	out := r.B[:n:n]
	r.B = r.B[n:]
	return out
}

// String reads a length-prefixed string.
func (r *Reader) String() string {
	n := r.Uvarint()
	if r.err != nil || n > uint64(len(r.B)) {
		r.fail()
		return ""
	}
	s := string(r.B[:n])
	r.B = r.B[n:]
	return s
}

// StringLike reads a length-prefixed string like String, returning like
// itself, without allocating, when the bytes are like's: a reader of many
// records whose fields repeat shares them.
func (r *Reader) StringLike(like string) string {
	n := r.Uvarint()
	if r.err != nil || n > uint64(len(r.B)) {
		r.fail()
		return ""
	}
	b := r.B[:n]
	r.B = r.B[n:]
	if string(b) == like {
		return like
	}
	return string(b)
}

// Fixed reads exactly len(dst) bytes into dst.
func (r *Reader) Fixed(dst []byte) {
	if r.err != nil || len(r.B) < len(dst) {
		r.fail()
		return
	}
	copy(dst, r.B[:len(dst)])
	r.B = r.B[len(dst):]
}

// Bool reads one byte.
func (r *Reader) Bool() bool {
	if r.err != nil || len(r.B) < 1 {
		r.fail()
		return false
	}
	v := r.B[0]
	r.B = r.B[1:]
	if v > 1 {
		r.err = errors.New("wire: bad bool")
		return false
	}
	return v == 1
}

// Time reads a time written by Writer.Time.
func (r *Reader) Time() time.Time {
	v := r.Uvarint()
	if v == 0 || r.err != nil {
		return time.Time{}
	}
	return time.Unix(0, int64(v)).UTC()
}

// Count reads the number of items that follow, each of which takes at
// least one byte: a count larger than the bytes left fails the reader
// rather than asking the caller to allocate for it.
func (r *Reader) Count() int {
	n := r.Uvarint()
	if r.err == nil && n > uint64(len(r.B)) {
		r.fail()
		return 0
	}
	return int(n)
}
