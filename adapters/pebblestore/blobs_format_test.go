package pebblestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/adapters/internal/blobformat"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// TestBlobWritesVersion2: PutBlob stores the shared header, version 2,
// with no flag set (a blob is always written in one batch).
func TestBlobWritesVersion2(t *testing.T) {
	s := MustOpen(t, "db", vfs.NewMem())
	for i, n := range []int{0, 1000, 3*blobChunkSize + 5} {
		data := blobData(uint64(i), n)
		mustPutBlob(t, s, "bkp_A/1", "v2", data)
		stored, ok, err := s.get(blobKey("bkp_A/1", "v2"))
		if err != nil || !ok {
			t.Fatalf("header of %d bytes: %v, %v", n, ok, err)
		}
		if want := blobformat.New(data, blobChunkSize).Encode(); !bytes.Equal(stored, want) {
			t.Fatalf("header of %d bytes = %x, want %x (version 2, no flags)", n, stored, want)
		}
		if err := s.DeleteBlob(context.Background(), "bkp_A/1", "v2"); err != nil {
			t.Fatal(err)
		}
	}
}

// legacyV1Header encodes data's header as pebblestore wrote it before
// version 2: version 1, then size, chunk size, chunk count and SHA-256,
// with no flags byte.
func legacyV1Header(data []byte, flagsByte bool) []byte {
	chunks := (len(data) + blobChunkSize - 1) / blobChunkSize
	digest := sha256.Sum256(data)
	b := []byte{1}
	if flagsByte { // esdb's version 1, which pebblestore never wrote
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(len(data)))
	b = binary.BigEndian.AppendUint32(b, blobChunkSize)
	b = binary.BigEndian.AppendUint32(b, uint32(chunks))
	return append(b, digest[:]...)
}

// putLegacyBlob writes blob (ref, name) as the store wrote it before
// version 2, header and chunks in one synced batch.
func putLegacyBlob(t *testing.T, s *Store, ref, name string, header, data []byte) {
	t.Helper()
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(blobKey(ref, name), header, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i*blobChunkSize < len(data); i++ {
		chunk := data[i*blobChunkSize : min(len(data), (i+1)*blobChunkSize)]
		if err := b.Set(chunkKey(ref, name, uint32(i)), chunk, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// TestBlobReadsVersion1: blobs written by earlier releases, under
// pebblestore's version-1 header, read as they did, whole and streamed;
// a put of the same bytes leaves them as they are, one of other bytes is
// refused; esdb's version-1 layout, which this store never wrote, is
// corrupt.
func TestBlobReadsVersion1(t *testing.T) {
	s := MustOpen(t, "db", vfs.NewMem())
	ctx := context.Background()
	const ref = "bkp_A/1"
	for i, n := range []int{0, 1000, blobChunkSize, 3*blobChunkSize + 5} {
		data := blobData(uint64(10+i), n)
		name := "v1-" + string(rune('a'+i))
		header := legacyV1Header(data, false)
		putLegacyBlob(t, s, ref, name, header, data)

		mustGetBlob(t, s, ref, name, data)
		r, err := s.OpenBlob(ctx, ref, name)
		if err != nil {
			t.Fatalf("OpenBlob of a version-1 blob of %d bytes: %v", n, err)
		}
		streamed, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(streamed, data) {
			t.Fatalf("streamed version-1 blob of %d bytes: %d bytes, %v", n, len(streamed), err)
		}
		if sum, ok := r.(commands.BlobDigester).Digest(); !ok || sum != sha256.Sum256(data) {
			t.Fatalf("Digest of a version-1 blob: %x, %v", sum, ok)
		}
		_ = r.Close()

		mustPutBlob(t, s, ref, name, data)
		if stored, _, err := s.get(blobKey(ref, name)); err != nil || !bytes.Equal(stored, header) {
			t.Fatalf("a put of the same bytes rewrote the version-1 header: %x, %v", stored, err)
		}
		if err := s.PutBlob(ctx, ref, name, append(bytes.Clone(data), 0)); !errors.Is(err, domain.ErrAlreadyExists) {
			t.Fatalf("a put of other bytes over a version-1 blob: %v, want ErrAlreadyExists", err)
		}
		// A version-1 blob whose bytes no longer match is still caught.
		if n > 0 {
			bad := bytes.Clone(data)
			bad[n-1] ^= 1
			putLegacyBlob(t, s, ref, name+"-bad", header, bad)
			if _, err := s.GetBlob(ctx, ref, name+"-bad"); !domain.IsCorruption(err) {
				t.Fatalf("a damaged version-1 blob: %v, want a corruption", err)
			}
		}
	}

	data := blobData(20, 1000)
	putLegacyBlob(t, s, ref, "esdb-v1", legacyV1Header(data, true), data)
	if _, err := s.GetBlob(ctx, ref, "esdb-v1"); !domain.IsCorruption(err) {
		t.Errorf("GetBlob of esdb's version-1 layout: %v, want a corruption", err)
	}
	if _, err := s.OpenBlob(ctx, ref, "esdb-v1"); !domain.IsCorruption(err) {
		t.Errorf("OpenBlob of esdb's version-1 layout: %v, want a corruption", err)
	}
}
