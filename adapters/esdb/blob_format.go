package esdb

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/domain"
)

// appendBudget is what one append of a blob may take on a server whose
// maximum append size is maxAppend.
func appendBudget(maxAppend int) int { return maxAppend - blobAppendMargin }

// blobChunkSize is the chunk size for a server whose maximum append size is
// maxAppend: every chunk event must fit in one append.
func blobChunkSize(maxAppend int) (int, error) {
	cs := min(maxBlobChunkSize, maxAppend-blobEventSlack)
	if cs < minBlobChunkSize {
		return 0, domain.Invalid(opOpenBlobs, "Options.MaxAppendSize %d leaves no room for blob chunks: it must be at least %d",
			maxAppend, minBlobChunkSize+blobEventSlack)
	}
	return cs, nil
}

// blobItem names a blob in errors: ref and name, never data.
func blobItem(ref, name string) string { return fmt.Sprintf("%q/%q", ref, name) }

// blobHeader describes a stored blob. Encoded (blobHeaderLen bytes):
//
//	byte      format version (1)
//	byte      flags (blobAtomic)
//	uint64    length, big-endian
//	uint32    chunk size
//	uint32    chunk count
//	[32]byte  SHA-256 of the whole blob
type blobHeader struct {
	atomic    bool
	length    uint64
	chunkSize uint32
	chunks    uint32
	digest    [sha256.Size]byte
}

// newBlobHeader describes data cut into chunks of chunkSize, flagged atomic
// when the header and every chunk fit in one append of budget bytes.
func newBlobHeader(data []byte, chunkSize, budget int) blobHeader {
	h := blobHeader{
		length:    uint64(len(data)),
		chunkSize: uint32(chunkSize),
		chunks:    uint32((len(data) + chunkSize - 1) / chunkSize),
		digest:    sha256.Sum256(data),
	}
	h.atomic = oneAppendSize(len(data), int(h.chunks)) <= budget
	return h
}

// oneAppendSize is what a header and chunks chunks holding n bytes in all
// count against the server's maximum append size (see appendSize).
func oneAppendSize(n, chunks int) int {
	return blobHeaderLen + 2*len(typeBlobHeader) + n + chunks*2*len(typeBlobChunk)
}

func (h blobHeader) encode() []byte {
	b := make([]byte, 0, blobHeaderLen)
	b = append(b, blobHeaderV1, 0)
	if h.atomic {
		b[1] = blobAtomic
	}
	b = binary.BigEndian.AppendUint64(b, h.length)
	b = binary.BigEndian.AppendUint32(b, h.chunkSize)
	b = binary.BigEndian.AppendUint32(b, h.chunks)
	return append(b, h.digest[:]...)
}

// decodeBlobHeader decodes and checks a header: its fields must agree with
// each other and stay within the limits PutBlob enforces.
func decodeBlobHeader(v []byte) (blobHeader, bool) {
	var h blobHeader
	if len(v) != blobHeaderLen || v[0] != blobHeaderV1 || v[1]&^blobAtomic != 0 {
		return h, false
	}
	h.atomic = v[1]&blobAtomic != 0
	h.length = binary.BigEndian.Uint64(v[2:])
	h.chunkSize = binary.BigEndian.Uint32(v[10:])
	h.chunks = binary.BigEndian.Uint32(v[14:])
	copy(h.digest[:], v[18:])
	if h.length > maxBlobSize || h.chunkSize == 0 ||
		uint64(h.chunks) != (h.length+uint64(h.chunkSize)-1)/uint64(h.chunkSize) {
		return h, false
	}
	return h, true
}

// chunkLen is the length chunk i of the blob must have.
func (h blobHeader) chunkLen(i uint32) int {
	if i+1 < h.chunks {
		return int(h.chunkSize)
	}
	return int(h.length - uint64(h.chunkSize)*uint64(h.chunks-1))
}

// blobEvents are the events of a blob's stream, in revision order: the
// header (raw, as encoded), the chunks of data, and, unless h is atomic,
// the commit (raw again). The chunks share data's memory.
func blobEvents(h blobHeader, raw, data []byte) []esdbclient.EventData {
	out := make([]esdbclient.EventData, 0, int(h.chunks)+2)
	out = append(out, esdbclient.EventData{EventType: typeBlobHeader, ContentType: esdbclient.ContentTypeBinary, Data: raw})
	off := 0
	for i := range h.chunks {
		n := h.chunkLen(i)
		out = append(out, esdbclient.EventData{EventType: typeBlobChunk, ContentType: esdbclient.ContentTypeBinary, Data: data[off : off+n : off+n]})
		off += n
	}
	if !h.atomic {
		out = append(out, esdbclient.EventData{EventType: typeBlobCommit, ContentType: esdbclient.ContentTypeBinary, Data: raw})
	}
	return out
}

// groupAppends cuts events into consecutive batches of at most budget
// bytes each (appendSize), in order; an event larger than budget goes
// alone.
func groupAppends(events []esdbclient.EventData, budget int) [][]esdbclient.EventData {
	var (
		out   [][]esdbclient.EventData
		start int
		size  int
	)
	for i := range events {
		n := appendSize(&events[i])
		if i > start && size+n > budget {
			out = append(out, events[start:i:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(events) {
		out = append(out, events[start:])
	}
	return out
}

// blobAssembler checks the events of a blob's stream, in revision order,
// and puts the blob together.
type blobAssembler struct {
	h        blobHeader
	raw      []byte // the header as stored
	next     uint64 // the revision expected next
	out      []byte
	sum      hash.Hash
	complete bool
}

// startBlob begins with the stream's first event, which must be the header
// at revision 0.
func startBlob(rev uint64, eventType string, data []byte) (*blobAssembler, error) {
	switch {
	case rev != 0:
		return nil, fmt.Errorf("the stream starts at revision %d, not 0", rev)
	case eventType != typeBlobHeader:
		return nil, fmt.Errorf("the stream starts with a %q, not a blob header", eventType)
	}
	h, ok := decodeBlobHeader(data)
	if !ok {
		return nil, errors.New("unreadable blob header")
	}
	// A header may claim up to maxBlobSize: allocate at most 64 MiB before
	// the chunks confirm it.
	a := &blobAssembler{h: h, raw: bytes.Clone(data), next: 1, sum: sha256.New()}
	a.out = make([]byte, 0, min(h.length, 64<<20))
	a.complete = h.atomic && h.chunks == 0
	return a, nil
}

// add takes the event at revision rev.
func (a *blobAssembler) add(rev uint64, eventType string, data []byte) error {
	switch {
	case a.complete:
		return fmt.Errorf("unexpected %q at revision %d, after the end of the blob", eventType, rev)
	case rev != a.next:
		return fmt.Errorf("event at revision %d where %d was expected", rev, a.next)
	}
	a.next++
	if i := rev - 1; i < uint64(a.h.chunks) {
		if eventType != typeBlobChunk {
			return fmt.Errorf("a %q at revision %d where chunk %d of %d was expected", eventType, rev, i, a.h.chunks)
		}
		if want := a.h.chunkLen(uint32(i)); len(data) != want {
			return fmt.Errorf("chunk %d has %d bytes, want %d", i, len(data), want)
		}
		a.out = append(a.out, data...)
		a.sum.Write(data)
		a.complete = a.h.atomic && i+1 == uint64(a.h.chunks)
		return nil
	}
	if eventType != typeBlobCommit || !bytes.Equal(data, a.raw) {
		return fmt.Errorf("a %q at revision %d where the commit of the header was expected", eventType, rev)
	}
	a.complete = true
	return nil
}

// nextRead is how many events the next read should ask for: those still
// expected (at most blobReadBytes of chunks), plus one to see what
// follows.
func (a *blobAssembler) nextRead() uint64 {
	return a.readUpTo(blobReadBytes)
}

// readUpTo is nextRead for reads of at most bytes of chunks.
func (a *blobAssembler) readUpTo(bytes int) uint64 {
	left := uint64(0)
	if !a.complete {
		left = uint64(a.h.chunks) + 2 - a.next // chunks left, and the commit
		if a.h.atomic {
			left--
		}
	}
	page := max(1, uint64(bytes)/uint64(a.h.chunkSize))
	return min(left, page) + 1
}

// finish returns the blob; complete is false for an unfinished blob (a
// blob of several appends without its commit). An atomic blob with chunks
// missing, or a digest that differs, is an error.
func (a *blobAssembler) finish() (data []byte, complete bool, err error) {
	if !a.complete {
		if a.h.atomic {
			return nil, false, fmt.Errorf("chunk %d of %d is missing (the blob was written in one append)", a.next-1, a.h.chunks)
		}
		return nil, false, nil
	}
	if !bytes.Equal(a.sum.Sum(nil), a.h.digest[:]) {
		return nil, false, errors.New("SHA-256 mismatch")
	}
	return a.out, true, nil
}
