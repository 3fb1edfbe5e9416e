package chunkread

import "io"

// Reader serves Read from the chunks Load produces. The zero value is not
// usable: set Load (and Closed). Not safe for concurrent use.
type Reader struct {
	// Load returns the next chunk, which it may build in buf (the previous
	// chunk's buffer, for reuse); io.EOF once the whole blob was read and
	// checked. An error sticks: Read returns it from then on. A chunk may
	// be empty.
	Load func(buf []byte) ([]byte, error)
	// Closed is what Read returns once Close was called before the end.
	Closed error

	buf []byte
	off int
	err error
}

// Read copies what is left of the current chunk, loading the next one
// when it is used up.
func (r *Reader) Read(p []byte) (int, error) {
	for r.err == nil && r.off == len(r.buf) {
		r.buf, r.err = r.Load(r.buf[:0])
		r.off = 0
	}
	if r.off == len(r.buf) {
		return 0, r.err
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// Done reports whether the whole blob was read and checked: Read returned
// io.EOF.
func (r *Reader) Done() bool { return r.err == io.EOF && r.off == len(r.buf) }

// Close releases the chunk buffer; Read then fails with Closed (unless the
// blob was read to its end or failed before). Idempotent.
func (r *Reader) Close() error {
	r.buf, r.off = nil, 0
	if r.err == nil {
		r.err = r.Closed
	}
	return nil
}
