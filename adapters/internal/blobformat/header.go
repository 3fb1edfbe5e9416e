package blobformat

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kmsbackup/kmsbackup/commands"
)

// Version is the format version of the headers Encode writes.
const Version = 2

// HeaderLen is the length of an encoded header (of version 2, and of
// esdb's version 1).
const HeaderLen = 1 + 1 + 8 + 4 + 4 + sha256.Size

// Limits that Decode enforces and New expects.
const (
	// MaxSize bounds one blob (commands.MaxBlobSize).
	MaxSize = commands.MaxBlobSize
	// MaxChunkSize bounds a header's chunk size: well above what any store
	// writes (1 MiB for pebblestore, 512 KiB for esdb), so that a damaged
	// header cannot make a reader expect one chunk of a gigabyte.
	MaxChunkSize = 16 << 20
)

// Flags are a header's flag bits. Decode rejects a header with a bit it
// does not know.
type Flags uint8

// FlagAtomic says that the header and every chunk were written in one
// atomic write, so that the blob is complete without a commit record after
// its chunks. A store that writes some blobs in several steps (esdb) sets
// it on those it wrote at once; a store that always writes a blob at once
// (pebblestore) leaves the flags 0.
const FlagAtomic Flags = 1

const knownFlags = FlagAtomic

// ErrHeader is wrapped by every error of Decode: the header is unreadable
// (damaged, of an unknown version, or of a layout the store never wrote).
var ErrHeader = errors.New("unreadable blob header")

// Header describes a stored blob. Encoded in version 2, HeaderLen bytes:
//
//	byte      format version (2)
//	byte      flags (FlagAtomic; every other bit 0)
//	uint64    size of the blob in bytes, big-endian
//	uint32    chunk size, big-endian
//	uint32    chunk count, big-endian
//	[32]byte  SHA-256 of the whole blob
//
// The blob is cut into Chunks chunks: every chunk but the last has exactly
// ChunkSize bytes, the last holds the rest (ChunkLen); an empty blob has no
// chunk. A header of Decode always agrees with itself: Size at most
// MaxSize, ChunkSize from 1 to MaxChunkSize, Chunks the number of chunks
// of ChunkSize that hold Size bytes.
type Header struct {
	Flags     Flags
	Size      uint64
	ChunkSize uint32
	Chunks    uint32
	Digest    [sha256.Size]byte
}

// New describes data cut into chunks of chunkSize bytes, with no flag set.
// It panics when chunkSize is not from 1 to MaxChunkSize or data is larger
// than MaxSize: callers check both first (the size is the caller's
// argument error, the chunk size its own constant or option).
func New(data []byte, chunkSize int) Header {
	if chunkSize < 1 || chunkSize > MaxChunkSize || len(data) > MaxSize {
		panic(fmt.Sprintf("blobformat: New of %d bytes in chunks of %d", len(data), chunkSize))
	}
	return Header{
		Size:      uint64(len(data)),
		ChunkSize: uint32(chunkSize),
		Chunks:    uint32((len(data) + chunkSize - 1) / chunkSize),
		Digest:    sha256.Sum256(data),
	}
}

// Atomic reports whether FlagAtomic is set.
func (h Header) Atomic() bool { return h.Flags&FlagAtomic != 0 }

// ChunkLen is the length chunk i of the blob must have; 0 when the blob
// has no chunk i.
func (h Header) ChunkLen(i uint32) int {
	switch {
	case i >= h.Chunks:
		return 0
	case i+1 < h.Chunks:
		return int(h.ChunkSize)
	}
	return int(h.Size - uint64(h.ChunkSize)*uint64(h.Chunks-1))
}

// Encode returns h in version 2, as it is: it does not check h (Decode
// does).
func (h Header) Encode() []byte {
	b := make([]byte, 0, HeaderLen)
	b = append(b, Version, byte(h.Flags))
	b = binary.BigEndian.AppendUint64(b, h.Size)
	b = binary.BigEndian.AppendUint32(b, h.ChunkSize)
	b = binary.BigEndian.AppendUint32(b, h.Chunks)
	return append(b, h.Digest[:]...)
}

// Legacy names the version-1 layout a store may hold beside version 2.
// pebblestore and esdb wrote different layouts under the same version
// number 1, so a version-1 header is readable only by knowing which store
// wrote it; each store passes its own, and a layout it never wrote is
// unreadable to it.
type Legacy uint8

const (
	// NoLegacy reads version 2 only (a store without version-1 data).
	NoLegacy Legacy = iota
	// V1NoFlags is pebblestore's version 1, 49 bytes: version (1), size,
	// chunk size, chunk count, SHA-256, as in version 2 but without the
	// flags byte. Its headers decode with no flag set.
	V1NoFlags
	// V1Flags is esdb's version 1, HeaderLen bytes: version (1), flags
	// (FlagAtomic), size, chunk size, chunk count, SHA-256: version 2's
	// layout under number 1.
	V1Flags
)

// v1NoFlagsLen is the length of a V1NoFlags header.
const v1NoFlagsLen = HeaderLen - 1

// Decode decodes a header stored in version 2, or in the version-1 layout
// legacy, and checks it: its length is its layout's, it sets no unknown
// flag, its size is at most MaxSize, its chunk size from 1 to
// MaxChunkSize, and its chunk count the one its size and chunk size make.
// Every error wraps ErrHeader and names the field at fault, never the
// digest.
func Decode(b []byte, legacy Legacy) (Header, error) {
	if len(b) == 0 {
		return Header{}, fmt.Errorf("%w: empty", ErrHeader)
	}
	var (
		h      Header
		fields []byte // size onwards
	)
	switch v := b[0]; {
	case v == Version, v == 1 && legacy == V1Flags:
		if len(b) != HeaderLen {
			return Header{}, fmt.Errorf("%w: version %d header of %d bytes, want %d", ErrHeader, v, len(b), HeaderLen)
		}
		h.Flags, fields = Flags(b[1]), b[2:]
		if unknown := h.Flags &^ knownFlags; unknown != 0 {
			return Header{}, fmt.Errorf("%w: unknown flags %#02x", ErrHeader, byte(unknown))
		}
	case v == 1 && legacy == V1NoFlags:
		if len(b) != v1NoFlagsLen {
			return Header{}, fmt.Errorf("%w: version 1 header of %d bytes, want %d", ErrHeader, len(b), v1NoFlagsLen)
		}
		fields = b[1:]
	case v == 1:
		return Header{}, fmt.Errorf("%w: version 1, a layout this store never wrote", ErrHeader)
	default:
		return Header{}, fmt.Errorf("%w: unknown version %d", ErrHeader, v)
	}
	h.Size = binary.BigEndian.Uint64(fields)
	h.ChunkSize = binary.BigEndian.Uint32(fields[8:])
	h.Chunks = binary.BigEndian.Uint32(fields[12:])
	copy(h.Digest[:], fields[16:])
	switch {
	case h.Size > MaxSize:
		return Header{}, fmt.Errorf("%w: size %d, more than %d", ErrHeader, h.Size, MaxSize)
	case h.ChunkSize == 0 || h.ChunkSize > MaxChunkSize:
		return Header{}, fmt.Errorf("%w: chunk size %d, not from 1 to %d", ErrHeader, h.ChunkSize, MaxChunkSize)
	}
	if want := (h.Size + uint64(h.ChunkSize) - 1) / uint64(h.ChunkSize); uint64(h.Chunks) != want {
		return Header{}, fmt.Errorf("%w: %d chunks, want %d for %d bytes in chunks of %d", ErrHeader, h.Chunks, want, h.Size, h.ChunkSize)
	}
	return h, nil
}
