package backupdata

import (
	"crypto/sha256"
	"encoding/binary"
	"math/bits"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// sum256 is a 256-bit unsigned integer in four 64-bit limbs, least
// significant first. Arithmetic wraps modulo 2^256.
type sum256 [4]uint64

func (s *sum256) add(t sum256) {
	var c uint64
	s[0], c = bits.Add64(s[0], t[0], 0)
	s[1], c = bits.Add64(s[1], t[1], c)
	s[2], c = bits.Add64(s[2], t[2], c)
	s[3], _ = bits.Add64(s[3], t[3], c)
}

func (s *sum256) sub(t sum256) {
	var b uint64
	s[0], b = bits.Sub64(s[0], t[0], 0)
	s[1], b = bits.Sub64(s[1], t[1], b)
	s[2], b = bits.Sub64(s[2], t[2], b)
	s[3], _ = bits.Sub64(s[3], t[3], b)
}

// sumOf reads 32 big-endian bytes.
func sumOf(b [32]byte) sum256 {
	return sum256{
		binary.BigEndian.Uint64(b[24:]), binary.BigEndian.Uint64(b[16:]),
		binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint64(b[:8]),
	}
}

// bytes writes the sum as 32 big-endian bytes.
func (s sum256) bytes() [32]byte {
	var b [32]byte
	binary.BigEndian.PutUint64(b[:8], s[3])
	binary.BigEndian.PutUint64(b[8:], s[2])
	binary.BigEndian.PutUint64(b[16:], s[1])
	binary.BigEndian.PutUint64(b[24:], s[0])
	return b
}

// term is one live item's share of the state digest: SHA-256 over
//
//	kind byte ('k' or 's') | uvarint len(id) | id | createSeq (8, big-endian) |
//	versions (4, big-endian) | uvarint len(text) | text
//
// where text is a key's description or a secret's key ID.
func term(kind byte, id string, createSeq uint64, versions uint32, text string) sum256 {
	w := wire.Writer{B: make([]byte, 0, 32+len(id)+len(text))}
	w.Fixed([]byte{kind})
	w.String(id)
	w.Uint64(createSeq)
	w.B = binary.BigEndian.AppendUint32(w.B, versions)
	w.String(text)
	return sumOf(sha256.Sum256(w.B))
}

func (it *Item) term() sum256 {
	return term(kindByte(it.Kind), it.ID, it.CreateSeq, it.Versions, it.text())
}

// StateDigest is the digest of a state from scratch: the sum modulo 2^256
// (as big-endian 32 bytes) of each live item's term, so it does not depend
// on the order of items. Checkpoint summaries carry the same digest,
// maintained incrementally; the empty state's digest is all zeros.
func StateDigest(items []Item) [32]byte {
	var s StateSum
	for i := range items {
		s.Add(&items[i])
	}
	return s.Digest()
}

// StateSum computes StateDigest one item at a time, so that a caller
// walking a large state (StateAt) need not hold its items. The zero value
// is the empty state. Not safe for concurrent use.
type StateSum struct{ s sum256 }

// Add counts one live item.
func (d *StateSum) Add(it *Item) { d.s.add(it.term()) }

// Digest is StateDigest of the items added so far.
func (d *StateSum) Digest() [32]byte { return d.s.bytes() }
