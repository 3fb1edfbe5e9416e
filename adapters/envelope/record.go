package envelope

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// A ref's record, as stored in the KeyStore (encoded with domain/wire):
//
//	format(1 byte) = recordFormat
//	reserved        uvarint  seals of the newest DEK version that may have been made
//	count           uvarint  number of DEK versions, at least 1
//	count times:
//	  version       uvarint  1..2^32-1, strictly increasing
//	  wrapped       bytes    uvarint length (60) || nonce(12) || AES-256-GCM(master, DEK)(32) || tag(16)
//
// Each wrapped DEK is authenticated under the master key with dekAAD(ref,
// version), so a DEK copied to another ref or version does not unwrap. The
// reservation is a high-water mark, not a count: it is bumped (and written)
// before the seals it covers are made, and a restarted Envelope assumes all
// of it was used.
const recordFormat byte = 1

// wrappedDEK is one DEK version, wrapped under the master key.
type wrappedDEK struct {
	version uint32
	wrapped []byte
}

// record is the decoded form of a ref's stored record.
type record struct {
	reserved uint64
	versions []wrappedDEK // in increasing version order
}

func (r record) newest() uint32 { return r.versions[len(r.versions)-1].version }

func (r record) encode() []byte {
	w := wire.Writer{B: make([]byte, 0, 1+10+1+len(r.versions)*(5+1+wrappedLen))}
	w.Fixed([]byte{recordFormat})
	w.Uvarint(r.reserved)
	w.Uvarint(uint64(len(r.versions)))
	for _, v := range r.versions {
		w.Uvarint(uint64(v.version))
		w.Bytes(v.wrapped)
	}
	return w.B
}

// decodeRecord parses a stored record. Any malformation is a corruption.
func decodeRecord(b []byte) (record, error) {
	r := wire.Reader{B: b}
	var format [1]byte
	r.Fixed(format[:])
	if r.Err() == nil && format[0] != recordFormat {
		return record{}, domain.Corruption("unknown data key record format %d", format[0])
	}
	var rec record
	rec.reserved = r.Uvarint()
	n := r.Uvarint()
	if r.Err() == nil && (n == 0 || n > uint64(len(r.B))) { // each version takes more than a byte
		return record{}, domain.Corruption("data key record lists %d versions", n)
	}
	rec.versions = make([]wrappedDEK, 0, min(n, 16))
	for i := uint64(0); i < n && r.Err() == nil; i++ {
		v := wrappedDEK{version: r.Uint32(), wrapped: r.Bytes()}
		if r.Err() != nil {
			break
		}
		if v.version == 0 || (i > 0 && v.version <= rec.versions[i-1].version) {
			return record{}, domain.Corruption("data key record has version %d out of order", v.version)
		}
		if len(v.wrapped) != wrappedLen {
			return record{}, domain.Corruption("data key record has a %d-byte wrapped key, want %d", len(v.wrapped), wrappedLen)
		}
		rec.versions = append(rec.versions, v)
	}
	if err := r.Done(); err != nil {
		return record{}, domain.Corruption("data key record is malformed: %v", err)
	}
	return rec, nil
}
