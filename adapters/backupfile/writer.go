package backupfile

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// writer frames records into the payload stream and seals it chunk by
// chunk. It holds one chunk: a full chunk is sealed and sent only once a
// byte after it arrives, since until then it may be the last.
type writer struct {
	dst     io.Writer
	aead    cipher.AEAD
	ad      []byte // the header MAC, bound into every chunk
	buf     []byte // the plaintext of the chunk being filled; cap sealedSize, to seal in place
	counter uint64 // of the chunk being filled
	records uint64 // written so far
	want    uint64 // promised by the header
	nonce   [nonceSize]byte
	closed  bool
	err     error // sticky: a failed write, a broken promise, or Close's result
}

var _ commands.FileWriter = (*writer)(nil)

func newWriter(dst io.Writer, aead cipher.AEAD, ad []byte, want uint64) *writer {
	return &writer{dst: dst, aead: aead, ad: ad, want: want, buf: make([]byte, 0, sealedSize)}
}

const writeOp = "write backup file"

// WriteRecord appends one record. A record over commands.MaxRecordSize is
// ErrInvalidArgument (and nothing is written); a record beyond the header's
// count, or a write after Close, is ErrFailedPrecondition; a failing
// destination is returned wrapped. After a failure other than a too large
// record, every later call returns the same error.
func (w *writer) WriteRecord(rec []byte) error {
	if w.closed {
		if w.err != nil {
			return w.err
		}
		return domain.Errorf(domain.ErrFailedPrecondition, writeOp, "", "", "the file is already closed")
	}
	if w.err != nil {
		return w.err
	}
	if len(rec) > commands.MaxRecordSize {
		return domain.Errorf(domain.ErrInvalidArgument, writeOp, "", "",
			"a record is at most %d bytes; this one is %d", commands.MaxRecordSize, len(rec))
	}
	if w.records == w.want {
		w.err = domain.Errorf(domain.ErrFailedPrecondition, writeOp, "", "",
			"the header promises %d records; this one would be one more", w.want)
		return w.err
	}
	var n [binary.MaxVarintLen64]byte
	if err := w.write(n[:binary.PutUvarint(n[:], uint64(len(rec)))]); err != nil {
		return err
	}
	if err := w.write(rec); err != nil {
		return err
	}
	w.records++
	return nil
}

// write appends p to the payload stream.
func (w *writer) write(p []byte) error {
	for len(p) > 0 {
		if len(w.buf) == chunkSize {
			if err := w.seal(false); err != nil {
				return err
			}
		}
		n := copy(w.buf[len(w.buf):chunkSize], p)
		w.buf = w.buf[:len(w.buf)+n]
		p = p[n:]
	}
	return nil
}

// seal seals the buffered chunk in place, sends it and wipes the buffer.
func (w *writer) seal(last bool) error {
	if !last && w.counter == maxCounter {
		w.err = domain.Errorf(domain.ErrFailedPrecondition, writeOp, "", "", "the file has the most chunks a file can have")
		return w.err
	}
	nonce(&w.nonce, w.counter, last)
	sealed := w.aead.Seal(w.buf[:0], w.nonce[:], w.buf, w.ad)
	_, err := w.dst.Write(sealed)
	clear(sealed)
	w.buf = w.buf[:0]
	if err != nil {
		w.err = fmt.Errorf("write backup file: %w", err)
		return w.err
	}
	w.counter++
	return nil
}

// Close seals and sends the last chunk, unless the records written are not
// the header's count (ErrFailedPrecondition) or an earlier write failed:
// then no last chunk is written, and what was written is no file a reader
// accepts. It does not close the destination. Calling it again returns the
// first call's result.
func (w *writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	defer func() { clear(w.buf[:cap(w.buf)]) }()
	if w.err != nil {
		return w.err
	}
	if w.records != w.want {
		w.err = domain.Errorf(domain.ErrFailedPrecondition, writeOp, "", "",
			"the header promises %d records but %d were written", w.want, w.records)
		return w.err
	}
	return w.seal(true)
}
