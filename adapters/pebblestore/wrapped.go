package pebblestore

import (
	"context"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var _ commands.KeyStore = (*Store)(nil)

// Wrapped data keys live under the 'W' namespace, one key per ref.

// GetWrapped returns a copy of the wrapped data key stored for ref; ok is
// false when there is none.
//
// Errors: domain.ErrInvalidArgument for an empty ref; domain.ErrCorrupt or
// domain.ErrUnavailable from the database (ErrUnavailable also once the
// store is closed). Safe for concurrent use.
func (s *Store) GetWrapped(ctx context.Context, ref string) ([]byte, bool, error) {
	if ref == "" {
		return nil, false, domain.Invalid("get wrapped key", "the key ref is empty")
	}
	if err := s.enter("get wrapped key"); err != nil {
		return nil, false, err
	}
	defer s.leave()
	v, ok, err := s.get(wrappedKey(ref))
	if err != nil {
		return nil, false, storeErr("get wrapped key "+ref, err)
	}
	return v, ok, nil
}

// PutWrapped stores wrapped as ref's wrapped data key, replacing any
// previous one, and returns once it is durable (pebble.Sync).
//
// Errors: domain.ErrInvalidArgument for an empty ref or empty wrapped bytes;
// domain.ErrUnavailable when the store is closed or the write fails. Safe for
// concurrent use. Idempotent: putting the same bytes again changes nothing.
func (s *Store) PutWrapped(ctx context.Context, ref string, wrapped []byte) error {
	if ref == "" {
		return domain.Invalid("put wrapped key", "the key ref is empty")
	}
	if len(wrapped) == 0 {
		return domain.Invalid("put wrapped key", "the wrapped key for %q is empty", ref)
	}
	if err := s.enter("put wrapped key"); err != nil {
		return err
	}
	defer s.leave()
	return storeErr("put wrapped key "+ref, s.db.Set(wrappedKey(ref), wrapped, pebble.Sync))
}

// DeleteWrapped deletes ref's wrapped data key durably (pebble.Sync), which
// crypto-shreds everything sealed under that data key. It then compacts the
// key's range before returning: the memtable holding the key is flushed and
// every sstable that overlaps the key is rewritten down to the last level,
// where the tombstone drops the old value, so no live sstable keeps the
// wrapped bytes. This is best effort at the file-system level: obsolete
// files are unlinked, not overwritten, a recycled WAL file may hold the
// bytes until it is reused, and an open snapshot keeps them alive. The
// wrapped key is sealed under the master key in any case.
//
// Errors: domain.ErrInvalidArgument for an empty ref; domain.ErrUnavailable
// when the store is closed, the delete fails, or the compaction fails (the
// key is then already deleted; calling again retries the compaction). Safe
// for concurrent use. Idempotent: deleting a missing ref succeeds. It may
// take as long as a flush and a compaction of the key's range.
func (s *Store) DeleteWrapped(ctx context.Context, ref string) error {
	if ref == "" {
		return domain.Invalid("delete wrapped key", "the key ref is empty")
	}
	if err := s.enter("delete wrapped key"); err != nil {
		return err
	}
	defer s.leave()
	k := wrappedKey(ref)
	if err := s.db.Delete(k, pebble.Sync); err != nil {
		return storeErr("delete wrapped key "+ref, err)
	}
	end := append(append([]byte(nil), k...), 0) // the smallest key after k
	if err := s.db.Compact(context.Background(), k, end, false); err != nil {
		return storeErr("compact deleted wrapped key "+ref, err)
	}
	return nil
}
