package pebblestore

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var _ commands.KeyStore = (*Store)(nil)

// Wrapped data keys live under the 'W' namespace, one key per ref, and the
// revision of each ref's record under 'V' (8 bytes, big-endian), written
// in the same batch as the record. The revision stays when the record is
// deleted, so that a ref created again continues above it (a writer
// holding a revision from before the delete never matches). A record
// written before revisions existed has no 'V' key: its revision is 1, and
// its next write (or its delete) records one.
//
// Writes of records and revisions (PutWrapped, DeleteWrapped) are
// serialised by Store.wrappedMu, which makes each compare-and-swap atomic:
// one process holds the store. Reads take a snapshot, so that they see a
// record and its revision from the same write.

const (
	opGetWrapped    = "get wrapped key"
	opPutWrapped    = "put wrapped key"
	opDeleteWrapped = "delete wrapped key"
)

// GetWrapped returns a copy of the wrapped data key stored for ref, and its
// revision; rev is 0 when there is none.
//
// Errors: domain.ErrInvalidArgument for an empty ref; domain.ErrCorrupt or
// domain.ErrUnavailable from the database (ErrUnavailable also once the
// store is closed). Safe for concurrent use.
func (s *Store) GetWrapped(ctx context.Context, ref string) ([]byte, uint64, error) {
	if ref == "" {
		return nil, 0, domain.Invalid(opGetWrapped, "the key ref is empty")
	}
	if err := s.enter(opGetWrapped); err != nil {
		return nil, 0, err
	}
	defer s.leave()
	snap := s.db.NewSnapshot()
	defer snap.Close()
	w, rev, _, err := wrappedAt(snap, ref)
	if err != nil {
		return nil, 0, storeErr(opGetWrapped+" "+ref, err)
	}
	return w, rev, nil
}

// PutWrapped stores wrapped as ref's wrapped data key if ref's revision is
// expected (0: ref has none), with its new revision, in one batch, and
// returns the revision once it is durable (pebble.Sync).
//
// Errors: domain.ErrInvalidArgument for an empty ref or empty wrapped
// bytes; domain.ErrWrongExpectedRevision when ref's revision is another
// (nothing is written); domain.ErrCorrupt for a stored revision that does
// not decode; domain.ErrUnavailable when the store is closed or the write
// fails. Safe for concurrent use (writes of records are serialised). Not
// idempotent: repeated after a success it fails with
// ErrWrongExpectedRevision.
func (s *Store) PutWrapped(ctx context.Context, ref string, wrapped []byte, expected uint64) (uint64, error) {
	if ref == "" {
		return 0, domain.Invalid(opPutWrapped, "the key ref is empty")
	}
	if len(wrapped) == 0 {
		return 0, domain.Invalid(opPutWrapped, "the wrapped key for %q is empty", ref)
	}
	if err := s.enter(opPutWrapped); err != nil {
		return 0, err
	}
	defer s.leave()
	s.wrappedMu.Lock()
	defer s.wrappedMu.Unlock()
	_, cur, last, err := wrappedAt(s.db, ref)
	if err != nil {
		return 0, storeErr(opPutWrapped+" "+ref, err)
	}
	if cur != expected {
		return 0, wrongRevision(ref, cur, expected)
	}
	next := max(cur, last) + 1
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(wrappedKey(ref), wrapped, nil)
	_ = b.Set(wrappedRevKey(ref), putUint64(next), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, storeErr(opPutWrapped+" "+ref, err)
	}
	return next, nil
}

// DeleteWrapped deletes ref's wrapped data key durably (pebble.Sync),
// keeping its revision, which crypto-shreds everything sealed under that
// data key. It then compacts the key's range before returning: the
// memtable holding the key is flushed and every sstable that overlaps the
// key is rewritten down to the last level, where the tombstone drops the
// old value, so no live sstable keeps the wrapped bytes. This is best
// effort at the file-system level: obsolete files are unlinked, not
// overwritten, a recycled WAL file may hold the bytes until it is reused,
// and an open snapshot keeps them alive. The wrapped key is sealed under
// the master key in any case.
//
// Errors: domain.ErrInvalidArgument for an empty ref; domain.ErrUnavailable
// when the store is closed, the delete fails, or the compaction fails (the
// key is then already deleted; calling again retries the compaction);
// domain.ErrCorrupt for a stored revision that does not decode. Safe for
// concurrent use. Idempotent: deleting a missing ref succeeds. It may take
// as long as a flush and a compaction of the key's range.
func (s *Store) DeleteWrapped(ctx context.Context, ref string) error {
	if ref == "" {
		return domain.Invalid(opDeleteWrapped, "the key ref is empty")
	}
	if err := s.enter(opDeleteWrapped); err != nil {
		return err
	}
	defer s.leave()
	if err := s.deleteWrapped(ref); err != nil {
		return storeErr(opDeleteWrapped+" "+ref, err)
	}
	k := wrappedKey(ref)
	end := append(append([]byte(nil), k...), 0) // the smallest key after k
	if err := s.db.Compact(context.Background(), k, end, false); err != nil {
		return storeErr("compact deleted wrapped key "+ref, err)
	}
	return nil
}

// deleteWrapped deletes ref's record and records its last revision, in one
// synced batch. Errors are unmapped.
func (s *Store) deleteWrapped(ref string) error {
	s.wrappedMu.Lock()
	defer s.wrappedMu.Unlock()
	_, cur, last, err := wrappedAt(s.db, ref)
	if err != nil || cur == 0 {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Delete(wrappedKey(ref), nil)
	_ = b.Set(wrappedRevKey(ref), putUint64(max(cur, last)), nil)
	return b.Commit(pebble.Sync)
}

// wrappedAt reads ref's record and revision in r: the record (nil when
// there is none), its revision cur (0 then; 1 for a record written before
// revisions), and last, the revision recorded for the ref (0 for none),
// which outlives a delete. Errors are unmapped.
func wrappedAt(r pebble.Reader, ref string) (wrapped []byte, cur, last uint64, err error) {
	w, ok, err := get(r, wrappedKey(ref))
	if err != nil {
		return nil, 0, 0, err
	}
	v, vok, err := get(r, wrappedRevKey(ref))
	if err != nil {
		return nil, 0, 0, err
	}
	if vok {
		if last, vok = getUint64(v); !vok {
			return nil, 0, 0, domain.Corruption("pebblestore: the revision of wrapped key %q is %d bytes, not 8", ref, len(v))
		}
	}
	switch {
	case !ok:
		return nil, 0, last, nil
	case last == 0:
		return w, 1, 0, nil
	}
	return w, last, last, nil
}

func wrongRevision(ref string, cur, expected uint64) error {
	return &domain.Error{Op: opPutWrapped, Kind: domain.ErrWrongExpectedRevision, Item: ref,
		Msg: fmt.Sprintf("the record is at revision %d, not %d", cur, expected), Hint: "read it again"}
}
