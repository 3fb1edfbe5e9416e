package esdb

import (
	"bytes"
	"fmt"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/adapters/internal/blobformat"
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

// newBlobHeader describes data cut into chunks of chunkSize (a header of
// blobformat, encoded in its version 2), flagged atomic when the header and
// every chunk fit in one append of budget bytes: such a blob is complete
// without a commit event.
func newBlobHeader(data []byte, chunkSize, budget int) blobformat.Header {
	h := blobformat.New(data, chunkSize)
	if oneAppendSize(len(data), int(h.Chunks)) <= budget {
		h.Flags |= blobformat.FlagAtomic
	}
	return h
}

// oneAppendSize is what a header and chunks chunks holding n bytes in all
// count against the server's maximum append size (see appendSize).
func oneAppendSize(n, chunks int) int {
	return blobformat.HeaderLen + 2*len(typeBlobHeader) + n + chunks*2*len(typeBlobChunk)
}

// decodeBlobHeader decodes and checks a stored header, of version 2 or of
// esdb's version 1 (the same layout under number 1, which earlier releases
// wrote).
func decodeBlobHeader(v []byte) (blobformat.Header, error) {
	return blobformat.Decode(v, blobformat.V1Flags)
}

// blobEvents are the events of a blob's stream, in revision order: the
// header (raw, as encoded), the chunks of data, and, unless h is atomic,
// the commit (raw again). The chunks share data's memory.
func blobEvents(h blobformat.Header, raw, data []byte) []esdbclient.EventData {
	out := make([]esdbclient.EventData, 0, int(h.Chunks)+2)
	out = append(out, esdbclient.EventData{EventType: typeBlobHeader, ContentType: esdbclient.ContentTypeBinary, Data: raw})
	off := 0
	for i := range h.Chunks {
		n := h.ChunkLen(i)
		out = append(out, esdbclient.EventData{EventType: typeBlobChunk, ContentType: esdbclient.ContentTypeBinary, Data: data[off : off+n : off+n]})
		off += n
	}
	if !h.Atomic() {
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
	h        blobformat.Header
	raw      []byte // the header as stored
	next     uint64 // the revision expected next
	out      []byte
	check    *blobformat.Verifier
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
	h, err := decodeBlobHeader(data)
	if err != nil {
		return nil, err
	}
	// A header may claim up to maxBlobSize: allocate at most 64 MiB before
	// the chunks confirm it.
	a := &blobAssembler{h: h, raw: bytes.Clone(data), next: 1, check: blobformat.NewVerifier(h)}
	a.out = make([]byte, 0, min(h.Size, 64<<20))
	a.complete = h.Atomic() && h.Chunks == 0
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
	if i := rev - 1; i < uint64(a.h.Chunks) {
		if eventType != typeBlobChunk {
			return fmt.Errorf("a %q at revision %d where chunk %d of %d was expected", eventType, rev, i, a.h.Chunks)
		}
		if err := a.check.Add(data); err != nil { // chunk i: the revisions follow each other
			return err
		}
		a.out = append(a.out, data...)
		a.complete = a.h.Atomic() && a.check.Next() == a.h.Chunks
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
		left = uint64(a.h.Chunks) + 2 - a.next // chunks left, and the commit
		if a.h.Atomic() {
			left--
		}
	}
	page := max(1, uint64(bytes)/uint64(a.h.ChunkSize))
	return min(left, page) + 1
}

// finish returns the blob; complete is false for an unfinished blob (a
// blob of several appends without its commit). An atomic blob with chunks
// missing, or a digest that differs, is an error.
func (a *blobAssembler) finish() (data []byte, complete bool, err error) {
	if !a.complete {
		if a.h.Atomic() {
			return nil, false, fmt.Errorf("chunk %d of %d is missing (the blob was written in one append)", a.next-1, a.h.Chunks)
		}
		return nil, false, nil
	}
	if err := a.check.Verify(); err != nil {
		return nil, false, err
	}
	return a.out, true, nil
}
