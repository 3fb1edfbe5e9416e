package esdb

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/adapters/internal/blobformat"
)

// TestBlobStreamWritesVersion2: a blob's stream starts with the shared
// header in version 2, flagged atomic when the blob fits in one append,
// and a blob of several appends ends with the same bytes.
func TestBlobStreamWritesVersion2(t *testing.T) {
	const maxAppend = 64 << 10
	cs, err := blobChunkSize(maxAppend)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1000, 10 << 10, 200 << 10} {
		data := testBlob(n, 7)
		_, events, appends := blobStreamOf(data, maxAppend)
		want := blobformat.New(data, cs)
		if len(appends) == 1 {
			want.Flags = blobformat.FlagAtomic
		}
		if !bytes.Equal(events[0].Data, want.Encode()) {
			t.Fatalf("%d bytes: header %x, want %x", n, events[0].Data, want.Encode())
		}
		if last := events[len(events)-1]; len(appends) > 1 && !bytes.Equal(last.Data, want.Encode()) {
			t.Fatalf("%d bytes: commit %x, want the header", n, last.Data)
		}
	}
}

// legacyV1Events are the events of data's blob stream as esdb wrote them
// before version 2: a header of version 1 (version, flags, size, chunk
// size, chunk count, SHA-256), the chunks, and, unless atomic, a commit
// repeating the header. noFlags writes pebblestore's version-1 layout
// instead, which esdb never wrote.
func legacyV1Events(data []byte, chunkSize int, atomic, noFlags bool) []esdbclient.EventData {
	chunks := (len(data) + chunkSize - 1) / chunkSize
	digest := sha256.Sum256(data)
	header := []byte{1}
	switch {
	case noFlags:
	case atomic:
		header = append(header, 1)
	default:
		header = append(header, 0)
	}
	header = binary.BigEndian.AppendUint64(header, uint64(len(data)))
	header = binary.BigEndian.AppendUint32(header, uint32(chunkSize))
	header = binary.BigEndian.AppendUint32(header, uint32(chunks))
	header = append(header, digest[:]...)
	events := []esdbclient.EventData{{EventType: typeBlobHeader, ContentType: esdbclient.ContentTypeBinary, Data: header}}
	for i := range chunks {
		chunk := data[i*chunkSize : min(len(data), (i+1)*chunkSize)]
		events = append(events, esdbclient.EventData{EventType: typeBlobChunk, ContentType: esdbclient.ContentTypeBinary, Data: chunk})
	}
	if !atomic {
		events = append(events, esdbclient.EventData{EventType: typeBlobCommit, ContentType: esdbclient.ContentTypeBinary, Data: header})
	}
	return events
}

// TestBlobAssemblesVersion1: blob streams written by earlier releases,
// under esdb's version-1 header, assemble as they did, atomic or with a
// commit; an unfinished one is absent, a damaged one an error; a header
// in pebblestore's version-1 layout is unreadable.
func TestBlobAssemblesVersion1(t *testing.T) {
	for _, c := range []struct {
		n, chunkSize int
		atomic       bool
	}{{0, 512 << 10, true}, {1000, 300, true}, {1000, 300, false}, {3<<20 + 5, 512 << 10, false}} {
		data := testBlob(c.n, 8)
		events := legacyV1Events(data, c.chunkSize, c.atomic, false)
		got, complete, err := assemble(events)
		if err != nil || !complete || !bytes.Equal(got, data) {
			t.Fatalf("version 1, %d bytes, atomic %v: %d bytes, complete %v, %v", c.n, c.atomic, len(got), complete, err)
		}
		if !c.atomic {
			for n := 1; n < len(events); n++ {
				if _, complete, err := assemble(events[:n]); complete || err != nil {
					t.Fatalf("version 1, %d of %d events: complete %v, %v; want unfinished", n, len(events), complete, err)
				}
			}
		}
		if c.n > 0 {
			bad := bytes.Clone(data)
			bad[c.n/2] ^= 1
			// Chunks of other bytes under data's header (and commit).
			damaged := legacyV1Events(bad, c.chunkSize, c.atomic, false)
			damaged[0] = events[0]
			if !c.atomic {
				damaged[len(damaged)-1] = events[len(events)-1]
			}
			if _, _, err := assemble(damaged); err == nil {
				t.Fatalf("version 1, %d bytes: chunks that differ from the header's digest accepted", c.n)
			}
		}
	}
	if _, err := startBlob(0, typeBlobHeader, legacyV1Events([]byte("x"), 300, true, true)[0].Data); err == nil {
		t.Error("pebblestore's version-1 layout accepted")
	}
}
