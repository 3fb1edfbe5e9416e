package pebblestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"

	"github.com/kmsbackup/kmsbackup/adapters/internal/blobformat"
	"github.com/kmsbackup/kmsbackup/adapters/internal/chunkread"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var _ commands.BlobStore = (*Store)(nil)

// Blobs live under the 'B' namespace (see keys.go). A blob (ref, name) owns
// every key that starts with its prefix
//
//	'B' ref 0x00 name 0x00
//
// The prefix itself holds the header (blobformat.Header: format version,
// flags, length, chunk size, chunk count, SHA-256 of the whole blob),
// written in version 2 with no flag set (a blob is always written in one
// batch); headers of version 1, which earlier releases wrote in
// pebblestore's own layout without a flags byte, are read as they are
// (blobformat.V1NoFlags). The prefix followed by a 4-byte big-endian chunk
// index holds that chunk. Every chunk but the last is exactly the chunk
// size; the last holds the rest; an empty blob has a header and no chunk.
// Neither ref nor name may contain 0x00, so the terminators make one ref's
// keys (and one name's) a contiguous range that no other ref or name
// shares, even one whose text extends it ("bkp_X/1" and "bkp_X/10").
const (
	nsBlob byte = 'B'

	// blobChunkSize is the size of the chunks PutBlob writes. The header
	// records it, so a later version may change it without a new layout.
	blobChunkSize = 1 << 20
	// maxBlobSize bounds one blob: it is written in one batch and read back
	// into one slice.
	maxBlobSize = commands.MaxBlobSize
	// maxBlobRefLen and maxBlobNameLen bound refs and names (in bytes), and
	// so the key length.
	maxBlobRefLen  = commands.MaxBlobRefLen
	maxBlobNameLen = commands.MaxBlobNameLen

	blobChunkIdx = 4 // bytes of a chunk index
)

const (
	opPutBlob     = "put blob"
	opGetBlob     = "get blob"
	opDestroyBlob = "destroy blobs"
)

// blobRefPrefix returns 'B' ref 0x00: the prefix of every key of ref.
func blobRefPrefix(ref string) []byte {
	k := make([]byte, 0, 2+len(ref))
	k = append(k, nsBlob)
	k = append(k, ref...)
	return append(k, 0)
}

// blobKey returns 'B' ref 0x00 name 0x00, the header key of (ref, name) and
// the prefix of its chunk keys, with room for a chunk index.
func blobKey(ref, name string) []byte {
	k := make([]byte, 0, 3+len(ref)+len(name)+blobChunkIdx)
	k = append(k, nsBlob)
	k = append(k, ref...)
	k = append(k, 0)
	k = append(k, name...)
	return append(k, 0)
}

// decodeBlobHeader decodes and checks a stored header, of version 2 or of
// pebblestore's version 1.
func decodeBlobHeader(v []byte) (blobformat.Header, error) {
	return blobformat.Decode(v, blobformat.V1NoFlags)
}

// blobItem names a blob in errors: ref and name, never data.
func blobItem(ref, name string) string { return fmt.Sprintf("%q/%q", ref, name) }

// PutBlob stores data as blob name of ref and returns once it is durable:
// the header and every chunk are written in one batch committed with
// pebble.Sync, so a crash leaves all of the blob or none of it. data is not
// retained.
//
// Idempotent: when the blob already holds the same bytes (same length and
// SHA-256) nothing is written; PutBlob then syncs the WAL before returning,
// so that it never acknowledges a blob left visible but not yet durable by a
// put that failed. It does not re-read the stored chunks (GetBlob verifies
// them).
//
// Errors: domain.ErrInvalidArgument for an empty ref or name, one that
// contains a NUL byte or is too long (256 bytes for a ref, 1024 for a
// name), or data larger than 1 GiB; domain.ErrAlreadyExists when the blob
// holds other bytes; domain.ErrCorrupt when its stored header is unreadable;
// domain.ErrUnavailable when the store is closed or the write fails (the
// blob may then be stored or not: retry with the same bytes); ctx.Err() when
// ctx has ended before the write starts (ctx is checked before and after
// waiting for a concurrent put of the same blob; neither that wait nor a
// commit in progress is interrupted).
//
// Safe for concurrent use. Calls on the same (ref, name) are serialised
// (they never interleave: of two concurrent puts of different bytes one
// succeeds and the other gets ErrAlreadyExists); calls on different blobs
// proceed in parallel and their syncs are grouped by Pebble. A put
// concurrent with DestroyBlobs of its ref may land before the destruction
// or after it.
func (s *Store) PutBlob(ctx context.Context, ref, name string, data []byte) error {
	if err := commands.CheckBlobName(opPutBlob, ref, name); err != nil {
		return err
	}
	if len(data) > maxBlobSize {
		return &domain.Error{Op: opPutBlob, Kind: domain.ErrInvalidArgument, Item: blobItem(ref, name),
			Msg: fmt.Sprintf("the blob has %d bytes, more than %d", len(data), maxBlobSize)}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	h := blobformat.New(data, blobChunkSize) // hash before taking any lock
	if err := s.enter(opPutBlob); err != nil {
		return err
	}
	defer s.leave()
	key := blobKey(ref, name)
	unlock := lockBlob(s, key, true)
	defer unlock()
	if err := ctx.Err(); err != nil {
		return err
	}

	old, ok, err := s.get(key)
	if err != nil {
		return storeErr(opPutBlob+" "+blobItem(ref, name), err)
	}
	if ok {
		oh, err := decodeBlobHeader(old)
		switch {
		case err != nil:
			return domain.Corruption("pebblestore: %s %s: %v", opPutBlob, blobItem(ref, name), err)
		case oh.Size != h.Size || oh.Digest != h.Digest:
			return &domain.Error{Op: opPutBlob, Kind: domain.ErrAlreadyExists, Item: blobItem(ref, name),
				Msg: "the blob already holds other bytes"}
		}
		// Same bytes. Pebble shows a synced write before its sync returns,
		// so a put that failed may have left this header visible but not
		// durable: a synced (empty) log record makes everything before it
		// durable.
		return storeErr(opPutBlob+" "+blobItem(ref, name), s.db.LogData(nil, pebble.Sync))
	}

	if len(data) >= ingestBlobBytes && s.blobTables.TableFormat != sstable.TableFormatUnspecified {
		return s.ingestBlob(ctx, ref, name, key, &h, data)
	}
	b := s.db.NewBatchWithSize(len(data) + int(h.Chunks+1)*(len(key)+blobChunkIdx+16) + blobformat.HeaderLen)
	defer b.Close()
	if err := b.Set(key, h.Encode(), nil); err != nil {
		return storeErr(opPutBlob+" "+blobItem(ref, name), err)
	}
	ck := key[:len(key)+blobChunkIdx] // blobKey left room for the index
	for i := range h.Chunks {
		binary.BigEndian.PutUint32(ck[len(key):], i)
		off := int(i) * blobChunkSize
		if err := b.Set(ck, data[off:off+h.ChunkLen(i)], nil); err != nil {
			return storeErr(opPutBlob+" "+blobItem(ref, name), err)
		}
	}
	return storeErr(opPutBlob+" "+blobItem(ref, name), b.Commit(pebble.Sync))
}

// ingestBlobBytes is the size from which PutBlob writes a blob as a table
// and ingests it (ingest.go) instead of committing it through the
// write-ahead log: written once rather than three times (log, flush,
// compaction). An ingest syncs the table, the manifest and the directory
// where a commit syncs the log once, so smaller blobs (a checkpoint's
// slice, mostly) stay on the log; bases' and uploads' parts (4 and 16 MiB)
// are ingested.
const ingestBlobBytes = 2 << 20

// ingestBlob writes the blob's header and chunks, under key, as one table
// and ingests it: durable when it returns, all of it or nothing.
func (s *Store) ingestBlob(ctx context.Context, ref, name string, key []byte, h *blobformat.Header, data []byte) error {
	op := opPutBlob + " " + blobItem(ref, name)
	l := newTableLoad(op, s.fs, s.dir, s.blobTables)
	defer l.discard()
	if err := l.add(0, key, h.Encode()); err != nil {
		return err
	}
	ck := key[:len(key)+blobChunkIdx] // blobKey left room for the index
	for i := range h.Chunks {
		binary.BigEndian.PutUint32(ck[len(key):], i)
		off := int(i) * blobChunkSize
		if err := l.add(0, ck, data[off:off+h.ChunkLen(i)]); err != nil {
			return err
		}
	}
	return l.ingest(context.WithoutCancel(ctx), s.db)
}

// GetBlob returns a copy of blob name of ref, read from one consistent view
// of the database, after checking that every chunk is present with its
// expected length and that the whole has the length and SHA-256 recorded
// when it was put. It never returns bytes that fail these checks.
//
// Errors: domain.ErrInvalidArgument for a ref or name PutBlob would refuse;
// domain.ErrNotFound when ref holds no blob of that name; domain.ErrCorrupt
// (domain.IsCorruption) when the header is unreadable, a chunk is missing,
// has the wrong length or is unexpected, or the digest differs, and when
// Pebble reports corruption; domain.ErrUnavailable when the store is closed
// or the read fails; ctx.Err() when ctx ends first (checked between chunks).
//
// Safe for concurrent use; reads of a blob wait for a PutBlob of the same
// blob in progress, so they never see a blob before its put is
// acknowledged. (A put that failed may leave a blob visible that a crash
// then removes.) Read-only, hence idempotent.
func (s *Store) GetBlob(ctx context.Context, ref, name string) ([]byte, error) {
	if err := commands.CheckBlobName(opGetBlob, ref, name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(opGetBlob); err != nil {
		return nil, err
	}
	defer s.leave()
	key := blobKey(ref, name)
	unlock := lockBlob(s, key, false)
	defer unlock()

	item := blobItem(ref, name)
	corrupt := func(format string, args ...any) error {
		return domain.Corruption("pebblestore: %s %s: %s", opGetBlob, item, fmt.Sprintf(format, args...))
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: key, UpperBound: prefixEnd(key)})
	if err != nil {
		return nil, storeErr(opGetBlob+" "+item, err)
	}
	defer it.Close()
	if !it.First() {
		if err := it.Error(); err != nil {
			return nil, storeErr(opGetBlob+" "+item, err)
		}
		return nil, domain.NotFound(opGetBlob, "blob", item)
	}
	if !bytes.Equal(it.Key(), key) {
		return nil, corrupt("chunks without a header")
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, storeErr(opGetBlob+" "+item, err)
	}
	h, err := decodeBlobHeader(v)
	if err != nil {
		return nil, corrupt("%v", err)
	}

	// The header is checked, but a tampered one could still claim up to
	// maxBlobSize: allocate at most 64 MiB before the chunks confirm it.
	out := make([]byte, 0, min(h.Size, 64<<20))
	check := blobformat.NewVerifier(h)
	for i := range h.Chunks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !it.Next() {
			if err := it.Error(); err != nil {
				return nil, storeErr(opGetBlob+" "+item, err)
			}
			return nil, corrupt("chunk %d of %d is missing", i, h.Chunks)
		}
		k := it.Key()
		if len(k) != len(key)+blobChunkIdx {
			return nil, corrupt("unexpected key of %d bytes after chunk %d", len(k), i)
		}
		if got := binary.BigEndian.Uint32(k[len(key):]); got != i {
			return nil, corrupt("chunk %d of %d is missing (found chunk %d)", i, h.Chunks, got)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, storeErr(opGetBlob+" "+item, err)
		}
		if err := check.Add(v); err != nil {
			return nil, corrupt("%v", err)
		}
		out = append(out, v...)
	}
	if it.Next() {
		return nil, corrupt("unexpected data after chunk %d of %d", h.Chunks, h.Chunks)
	}
	if err := it.Error(); err != nil {
		return nil, storeErr(opGetBlob+" "+item, err)
	}
	if err := check.Verify(); err != nil {
		return nil, corrupt("%v", err)
	}
	return out, nil
}

// DestroyBlobs deletes every blob of ref with one range deletion committed
// with pebble.Sync, then compacts that range, as DeleteWrapped does, so
// that no live sstable keeps the bytes (best effort at the file-system
// level: see DeleteWrapped). Only ref's keys are covered: other refs,
// including those whose text extends ref, are untouched.
//
// Errors: domain.ErrInvalidArgument for a ref PutBlob would refuse;
// domain.ErrUnavailable when the store is closed, the deletion fails, or
// the compaction fails; ctx.Err() when ctx has ended before the deletion,
// and wrapped when it ends during the compaction. After a compaction error
// the blobs are already deleted durably; calling again retries the
// compaction.
//
// Safe for concurrent use: a GetBlob running at the same time returns the
// whole blob or ErrNotFound; a PutBlob of ref running at the same time may
// land before or after the deletion, so callers stop writing a ref before
// destroying it. Idempotent: destroying a ref with no blob succeeds. It may
// take as long as a flush and a compaction of the range.
func (s *Store) DestroyBlobs(ctx context.Context, ref string) error {
	if err := commands.CheckBlobRef(opDestroyBlob, ref); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(opDestroyBlob); err != nil {
		return err
	}
	defer s.leave()
	start := blobRefPrefix(ref)
	end := prefixEnd(start) // 'B' ref 0x01: ref contains no 0x00, so this is never nil
	if err := s.db.DeleteRange(start, end, pebble.Sync); err != nil {
		return storeErr(fmt.Sprintf("%s %q", opDestroyBlob, ref), err)
	}
	if err := s.db.Compact(ctx, start, end, false); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pebblestore: %s %q: compaction after the deletion: %w", opDestroyBlob, ref, ctx.Err())
		}
		return storeErr(fmt.Sprintf("%s %q: compaction after the deletion", opDestroyBlob, ref), err)
	}
	return nil
}

// Per-blob locks. PutBlob holds a blob's lock for writing from its existence
// check to the end of its synced commit, so that puts of one blob never
// interleave and a read never sees a blob whose commit is visible but not
// yet synced (Pebble publishes a batch before its WAL sync returns);
// GetBlob holds it for reading. Puts of different blobs do not contend, and
// Pebble's commit pipeline groups their syncs, so the event-log writer
// (whose group commit exists to assign positions) is not involved. The
// table is keyed by store and blob key, so that the blob code stays in this
// file, and holds an entry only while a call uses it: its size is the
// number of blobs being accessed.

type blobLockKey struct {
	s   *Store
	key string
}

type blobLock struct {
	mu   sync.RWMutex
	refs int // guarded by blobLocks.mu
}

var blobLocks = struct {
	mu sync.Mutex
	m  map[blobLockKey]*blobLock
}{m: map[blobLockKey]*blobLock{}}

// lockBlob locks blob key of s, exclusively when write is set, and returns
// the function that unlocks it.
func lockBlob(s *Store, key []byte, write bool) (unlock func()) {
	k := blobLockKey{s, string(key)}
	blobLocks.mu.Lock()
	l := blobLocks.m[k]
	if l == nil {
		l = &blobLock{}
		blobLocks.m[k] = l
	}
	l.refs++
	blobLocks.mu.Unlock()
	if write {
		l.mu.Lock()
	} else {
		l.mu.RLock()
	}
	return func() {
		if write {
			l.mu.Unlock()
		} else {
			l.mu.RUnlock()
		}
		blobLocks.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(blobLocks.m, k)
		}
		blobLocks.mu.Unlock()
	}
}

const opDeleteBlob = "delete blob"

// OpenBlob returns a reader of blob name of ref that reads one chunk at a
// time (at most 1 MiB in memory), each with a point read, and checks what
// it read as it goes: every chunk must be present with its expected length,
// and the whole must have the length and SHA-256 recorded when it was put;
// the last Read returns io.EOF only then, domain.ErrCorrupt otherwise. The
// header is read under the blob's lock (as GetBlob reads it), so the reader
// never sees a put before it is acknowledged; the reader holds no iterator
// or snapshot between reads, so an open reader never keeps the store from
// closing (a Read after Close of the store fails with
// domain.ErrUnavailable).
//
// Errors, of OpenBlob or of a Read: domain.ErrInvalidArgument for a ref or
// name PutBlob would refuse; domain.ErrNotFound when the blob is absent, or
// was deleted while read; domain.ErrCorrupt as above and when Pebble
// reports corruption; domain.ErrUnavailable when the store is closed or a
// read fails; ctx's error, checked before each chunk. Safe for concurrent
// use; the reader is not. Read-only.
func (s *Store) OpenBlob(ctx context.Context, ref, name string) (io.ReadCloser, error) {
	if err := commands.CheckBlobName(opGetBlob, ref, name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(opGetBlob); err != nil {
		return nil, err
	}
	defer s.leave()
	key := blobKey(ref, name)
	unlock := lockBlob(s, key, false)
	defer unlock()
	item := blobItem(ref, name)
	v, ok, err := s.get(key)
	if err != nil {
		return nil, storeErr(opGetBlob+" "+item, err)
	}
	if !ok {
		return nil, domain.NotFound(opGetBlob, "blob", item)
	}
	h, err := decodeBlobHeader(v)
	if err != nil {
		return nil, domain.Corruption("pebblestore: %s %s: %v", opGetBlob, item, err)
	}
	r := &blobReader{s: s, ctx: ctx, key: key, item: item, h: h, check: blobformat.NewVerifier(h)}
	r.Reader = chunkread.Reader{Load: r.load, Closed: errReaderClosed}
	return r, nil
}

// blobReader reads a blob chunk by chunk (see OpenBlob).
type blobReader struct {
	s     *Store
	ctx   context.Context
	key   []byte // the blob's header key, with room for a chunk index
	item  string
	h     blobformat.Header
	check *blobformat.Verifier // its Next is the chunk to read next
	chunkread.Reader
}

// load reads the next chunk into buf, or ends the blob: io.EOF when it
// matches its header.
func (r *blobReader) load(buf []byte) ([]byte, error) {
	corrupt := func(format string, args ...any) error {
		return domain.Corruption("pebblestore: %s %s: %s", opGetBlob, r.item, fmt.Sprintf(format, args...))
	}
	next := r.check.Next()
	if next == r.h.Chunks {
		if err := r.check.Verify(); err != nil {
			return nil, corrupt("%v", err)
		}
		return nil, io.EOF
	}
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.s.enter(opGetBlob); err != nil {
		return nil, err
	}
	defer r.s.leave()
	ck := binary.BigEndian.AppendUint32(r.key[:len(r.key):len(r.key)], next)
	v, closer, err := r.s.db.Get(ck)
	if errors.Is(err, pebble.ErrNotFound) {
		// Gone with the whole blob (deleted while read), or damaged.
		if _, ok, herr := r.s.get(r.key); herr == nil && !ok {
			return nil, domain.NotFound(opGetBlob, "blob", r.item)
		}
		return nil, corrupt("chunk %d of %d is missing", next, r.h.Chunks)
	}
	if err != nil {
		return nil, storeErr(opGetBlob+" "+r.item, err)
	}
	if err := r.check.Add(v); err != nil {
		_ = closer.Close()
		return nil, corrupt("%v", err)
	}
	buf = append(buf, v...)
	if err := closer.Close(); err != nil {
		return nil, storeErr(opGetBlob+" "+r.item, err)
	}
	return buf, nil
}

var _ commands.BlobDigester = (*blobReader)(nil)

// Digest is the blob's SHA-256, checked, once Read returned io.EOF.
func (r *blobReader) Digest() (sum [32]byte, ok bool) {
	return r.h.Digest, r.Done()
}

var errReaderClosed = &domain.Error{Op: opGetBlob, Kind: domain.ErrFailedPrecondition, Msg: "the blob reader is closed"}

// DeleteBlob deletes blob name of ref with one range deletion committed
// with pebble.Sync, under the blob's lock. It does not compact: the blob
// is ciphertext under a data key that lives on (DestroyBlobs, which
// destroys a generation, compacts). Only that blob's keys are covered.
//
// Errors: domain.ErrInvalidArgument for a ref or name PutBlob would
// refuse; domain.ErrUnavailable when the store is closed or the deletion
// fails; ctx.Err() when ctx has ended before. Idempotent; safe for
// concurrent use (a GetBlob at the same time gets the whole blob or
// domain.ErrNotFound).
func (s *Store) DeleteBlob(ctx context.Context, ref, name string) error {
	if err := commands.CheckBlobName(opDeleteBlob, ref, name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(opDeleteBlob); err != nil {
		return err
	}
	defer s.leave()
	key := blobKey(ref, name)
	unlock := lockBlob(s, key, true)
	defer unlock()
	return storeErr(opDeleteBlob+" "+blobItem(ref, name), s.db.DeleteRange(key, prefixEnd(key), pebble.Sync))
}
