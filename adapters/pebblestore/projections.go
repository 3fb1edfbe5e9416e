package pebblestore

import (
	"errors"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Projection data lives under its own namespace ('P'); positions under 'Q'.
// The keys a projection passes in are stored behind that one-byte prefix and
// handed back without it.

const opProjection = "projection"

// Get returns a copy of the value of projection key; ok is false when the key
// is absent.
//
// Errors: domain.ErrCorrupt or domain.ErrUnavailable from the database
// (ErrUnavailable also once the store is closed). Safe for concurrent use.
func (s *Store) Get(key []byte) ([]byte, bool, error) {
	if err := s.enter(opProjection); err != nil {
		return nil, false, err
	}
	defer s.leave()
	v, ok, err := s.get(projKey(key))
	if err != nil {
		return nil, false, storeErr("projection get", err)
	}
	return v, ok, nil
}

// Scan calls fn for every projection key with prefix, in key order,
// starting at start (inclusive; nil means the beginning of the prefix),
// until fn returns false or an error, which Scan returns. k and v are valid
// only during fn. It reads one consistent snapshot.
//
// Errors: fn's error; domain.ErrCorrupt or domain.ErrUnavailable from the
// database. Safe for concurrent use.
func (s *Store) Scan(prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	if err := s.enter(opProjection); err != nil {
		return err
	}
	defer s.leave()
	return scan(s.db, prefix, start, fn)
}

// reader is what a *pebble.DB and an indexed *pebble.Batch share.
type reader interface {
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}

func scan(r reader, prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	lower, upper := projRange(prefix)
	if start != nil {
		if k := projKey(start); string(k) > string(lower) {
			lower = k
		}
	}
	if string(lower) >= string(upper) {
		return nil
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return storeErr("projection scan", err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return storeErr("projection scan", err)
		}
		more, err := fn(it.Key()[1:], v)
		if err != nil || !more {
			_ = it.Close()
			return err
		}
	}
	return storeErr("projection scan", errors.Join(it.Error(), it.Close()))
}

// projRange returns the bounds of the projection keys with prefix.
func projRange(prefix []byte) (lower, upper []byte) {
	lower = projKey(prefix)
	upper = prefixEnd(lower)
	if upper == nil || upper[0] != nsProj {
		upper = []byte{nsProj + 1}
	}
	return lower, upper
}

// Position returns the last log position projection name has applied, 0 if
// it has applied none.
//
// Errors: domain.ErrCorrupt for a malformed stored position;
// domain.ErrUnavailable when the store is closed or the read fails. Safe for
// concurrent use.
func (s *Store) Position(name string) (uint64, error) {
	if err := s.enter(opProjection); err != nil {
		return 0, err
	}
	defer s.leave()
	v, ok, err := s.get(projPosKey(name))
	if err != nil {
		return 0, storeErr("projection position", err)
	}
	if !ok {
		return 0, nil
	}
	pos, ok := getUint64(v)
	if !ok {
		return 0, domain.Corruption("pebblestore: projection %q: bad position", name)
	}
	return pos, nil
}

// Update runs fn in one transaction (a Pebble indexed batch, so the Txn's Get
// and Scan see its own writes) and commits its writes together with
// position as projection name's new position, atomically. If fn fails
// nothing is written and fn's error is returned. The commit is not synced
// (pebble.NoSync): projections are rebuildable from the log, so a crash may
// lose the last updates, never half of one.
//
// Errors: domain.ErrInvalidArgument for an empty name; fn's error;
// domain.ErrUnavailable when the store is closed or the commit fails. The
// Txn must not be used after fn returns. Not safe for concurrent use on the
// same name; different names may be updated concurrently. Idempotent when fn
// is (same writes, same position).
func (s *Store) Update(name string, position uint64, fn func(projections.Txn) error) error {
	if name == "" {
		return domain.Invalid("projection update", "the projection name is empty")
	}
	if err := s.enter(opProjection); err != nil {
		return err
	}
	defer s.leave()
	b := s.db.NewIndexedBatch()
	defer b.Close()
	tx := &txn{b: b}
	err := fn(tx)
	tx.b = nil
	if err != nil {
		return err
	}
	if err := b.Set(projPosKey(name), putUint64(position), nil); err != nil {
		return storeErr("projection update", err)
	}
	return storeErr("projection update", b.Commit(pebble.NoSync))
}

// txn is the projections.Txn of one Update.
type txn struct{ b *pebble.Batch }

var _ projections.Txn = (*txn)(nil)

var errTxnDone = &domain.Error{Op: opProjection, Kind: domain.ErrFailedPrecondition,
	Msg: "the transaction is over: a Txn is valid only inside its Update"}

func (t *txn) Get(key []byte) ([]byte, bool, error) {
	if t.b == nil {
		return nil, false, errTxnDone
	}
	v, closer, err := t.b.Get(projKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, storeErr("projection get", err)
	}
	out := append([]byte(nil), v...)
	return out, true, closer.Close()
}

func (t *txn) Scan(prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	if t.b == nil {
		return errTxnDone
	}
	return scan(t.b, prefix, start, fn)
}

func (t *txn) Set(key, value []byte) error {
	if t.b == nil {
		return errTxnDone
	}
	return storeErr("projection set", t.b.Set(projKey(key), value, nil))
}

func (t *txn) Delete(key []byte) error {
	if t.b == nil {
		return errTxnDone
	}
	return storeErr("projection delete", t.b.Delete(projKey(key), nil))
}

func (t *txn) DeletePrefix(prefix []byte) error {
	if t.b == nil {
		return errTxnDone
	}
	lower, upper := projRange(prefix)
	return storeErr("projection delete prefix", t.b.DeleteRange(lower, upper, nil))
}
