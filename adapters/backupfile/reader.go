package backupfile

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// reader opens the payload one chunk at a time and cuts records out of it.
// It holds one sealed chunk plus one byte read ahead (which tells a full
// last chunk from a full middle one) and, for a record that spans chunks,
// one record buffer of at most commands.MaxRecordSize.
type reader struct {
	src     io.Reader
	aead    cipher.AEAD
	ad      []byte // the header MAC, bound into every chunk
	h       domain.FileHeader
	buf     []byte // a sealed chunk and one lookahead byte; opened in place
	pt      []byte // what is left of the current chunk's plaintext, within buf
	last    bool   // the current chunk is the last
	ahead   byte   // the byte read after the current chunk, when hasAhead
	hasAhd  bool
	counter uint64 // of the next chunk
	rec     []byte // a record that spans chunks
	prev    []byte // what Next returned last; wiped on the next call
	records uint64 // returned so far
	nonce   [nonceSize]byte
	err     error // sticky: io.EOF or a failure
}

var _ commands.FileReader = (*reader)(nil)

func newReader(src io.Reader, aead cipher.AEAD, ad []byte, h domain.FileHeader) *reader {
	return &reader{src: src, aead: aead, ad: ad, h: h, buf: make([]byte, sealedSize+1)}
}

// Header returns the authenticated header.
func (r *reader) Header() domain.FileHeader { return r.h }

// Next returns the next record, valid until the next call, or io.EOF once
// the last chunk has been read, ended at a record boundary, followed by
// nothing, and the records numbered the header's count. Every integrity
// failure is domain.BadBackupFile; a failing source (other than by ending)
// is returned wrapped. Once Next has returned an error it returns it again.
func (r *reader) Next() ([]byte, error) {
	clear(r.prev)
	r.prev = nil
	if r.err != nil {
		return nil, r.err
	}
	rec, err := r.next()
	if err != nil {
		r.err = err
		r.wipe()
		return nil, err
	}
	r.prev = rec
	return rec, nil
}

func (r *reader) next() ([]byte, error) {
	more, err := r.more()
	if err != nil {
		return nil, err
	}
	if !more {
		if r.records != r.h.Records {
			return nil, domain.BadBackupFile()
		}
		return nil, io.EOF
	}
	if r.records == r.h.Records { // bytes after the promised records
		return nil, domain.BadBackupFile()
	}
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n > commands.MaxRecordSize { // before allocating for it
		return nil, domain.BadBackupFile()
	}
	r.records++
	if n <= uint64(len(r.pt)) { // within this chunk: no copy
		rec := r.pt[:n:n]
		r.pt = r.pt[n:]
		return rec, nil
	}
	if uint64(cap(r.rec)) < n {
		clear(r.rec[:cap(r.rec)])
		r.rec = make([]byte, n)
	}
	rec := r.rec[:n]
	for done := 0; done < len(rec); {
		more, err := r.more()
		if err != nil {
			return nil, err
		}
		if !more { // the payload ends inside a record
			return nil, domain.BadBackupFile()
		}
		c := copy(rec[done:], r.pt)
		r.pt = r.pt[c:]
		done += c
	}
	return rec, nil
}

// uvarint reads a record's length, which may span two chunks. Only the
// shortest encoding of a length is one (as binary.AppendUvarint writes it),
// so that a payload has one reading and a record one encoding.
func (r *reader) uvarint() (uint64, error) {
	if v, n := binary.Uvarint(r.pt); n > 0 {
		if n > 1 && r.pt[n-1] == 0 {
			return 0, domain.BadBackupFile()
		}
		r.pt = r.pt[n:]
		return v, nil
	} else if n < 0 {
		return 0, domain.BadBackupFile()
	}
	var v uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		more, err := r.more()
		if err != nil {
			return 0, err
		}
		if !more {
			return 0, domain.BadBackupFile()
		}
		b := r.pt[0]
		r.pt = r.pt[1:]
		if (i == binary.MaxVarintLen64-1 && b > 1) || (i > 0 && b == 0) {
			break // overflows 64 bits, or is not the shortest encoding
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, domain.BadBackupFile()
}

// more reports whether payload bytes are left, opening the next chunk when
// the current one is used up.
func (r *reader) more() (bool, error) {
	for len(r.pt) == 0 {
		if r.last {
			return false, nil
		}
		if err := r.openChunk(); err != nil {
			return false, err
		}
	}
	return true, nil
}

// openChunk reads the next sealed chunk and authenticates and decrypts it
// in place. The chunk is the last when the source ends before the byte
// after a full chunk; then nothing may follow it, which is how trailing
// bytes are refused (they would be taken for part of the chunk, or for
// another one, and fail to open).
func (r *reader) openChunk() error {
	clear(r.buf[:chunkSize]) // the plaintext of the chunk before
	n := 0
	if r.hasAhd {
		r.buf[0], n = r.ahead, 1
	}
	m, err := io.ReadFull(r.src, r.buf[n:])
	n += m
	last := false
	switch {
	case err == nil:
		n = sealedSize
		r.ahead = r.buf[sealedSize]
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		last = true
	default:
		return fmt.Errorf("read backup file: %w", err)
	}
	r.hasAhd = !last
	if n < tagSize || (!last && r.counter == maxCounter) {
		return domain.BadBackupFile()
	}
	nonce(&r.nonce, r.counter, last)
	pt, err := r.aead.Open(r.buf[:0], r.nonce[:], r.buf[:n], r.ad)
	if err != nil {
		return domain.BadBackupFile()
	}
	if last && len(pt) == 0 && r.counter != 0 { // an empty last chunk only for an empty payload
		return domain.BadBackupFile()
	}
	r.pt, r.last = pt, last
	if !last {
		r.counter++
	}
	return nil
}

// wipe forgets every plaintext the reader holds (best effort).
func (r *reader) wipe() {
	clear(r.buf)
	clear(r.rec[:cap(r.rec)])
	r.pt, r.rec = nil, nil
}
