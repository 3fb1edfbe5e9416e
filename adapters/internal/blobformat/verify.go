package blobformat

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
)

// ErrMismatch is wrapped by every error of a Verifier: the chunks read
// back are not the blob their header describes.
var ErrMismatch = errors.New("the blob does not match its header")

// A Verifier checks a blob's chunks, taken in order as a store reads them,
// against the blob's header: Add refuses a chunk of the wrong length or
// beyond the last, and Verify, at the end, a chunk missing or a SHA-256
// that differs. Chunks of the right lengths in the right number make the
// header's size, so a blob that passes has its recorded size and digest.
// It keeps no chunk. Not safe for concurrent use.
type Verifier struct {
	h    Header
	next uint32
	sum  hash.Hash
}

// NewVerifier returns a Verifier of the blob h describes.
func NewVerifier(h Header) *Verifier {
	return &Verifier{h: h, sum: sha256.New()}
}

// Add takes the next chunk: chunk Next(). It fails, and takes nothing,
// when the blob has no more chunks or chunk has another length than the
// header gives it.
func (v *Verifier) Add(chunk []byte) error {
	if v.next >= v.h.Chunks {
		return fmt.Errorf("%w: a chunk beyond the last of %d", ErrMismatch, v.h.Chunks)
	}
	if want := v.h.ChunkLen(v.next); len(chunk) != want {
		return fmt.Errorf("%w: chunk %d has %d bytes, want %d", ErrMismatch, v.next, len(chunk), want)
	}
	v.sum.Write(chunk)
	v.next++
	return nil
}

// Next is the index of the chunk Add takes next; the header's chunk count
// once every chunk was taken.
func (v *Verifier) Next() uint32 { return v.next }

// Verify checks the blob once its chunks were added: it fails when a chunk
// is missing or the SHA-256 of the chunks differs from the header's.
func (v *Verifier) Verify() error {
	if v.next < v.h.Chunks {
		return fmt.Errorf("%w: chunk %d of %d is missing", ErrMismatch, v.next, v.h.Chunks)
	}
	if [sha256.Size]byte(v.sum.Sum(nil)) != v.h.Digest {
		return fmt.Errorf("%w: SHA-256 mismatch", ErrMismatch)
	}
	return nil
}
