package pebblestore

import (
	"bytes"
	"context"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kmsbackup/kmsbackup/domain"
)

// The master-key check lives under its own key, nsKeyCheck "check", beside
// the wrapped data keys ('W').

var keyCheckKey = []byte{nsKeyCheck, 'c', 'h', 'e', 'c', 'k'}

// maxKeyCheckLen bounds a key check (the envelope's is 33 bytes).
const maxKeyCheckLen = 1024

// KeyCheck returns a copy of the stored master-key check; ok is false when
// there is none.
//
// Errors: domain.ErrCorrupt or domain.ErrUnavailable from the database
// (ErrUnavailable also once the store is closed). Safe for concurrent use.
func (s *Store) KeyCheck(ctx context.Context) ([]byte, bool, error) {
	if err := s.enter("get key check"); err != nil {
		return nil, false, err
	}
	defer s.leave()
	v, ok, err := s.get(keyCheckKey)
	if err != nil {
		return nil, false, storeErr("get key check", err)
	}
	return v, ok, nil
}

// CreateKeyCheck stores check as the master-key check unless one is stored
// already, durably (pebble.Sync), and returns the check stored afterwards:
// check itself, or the one found.
//
// Errors: domain.ErrInvalidArgument for an empty check or one over 1 KiB;
// domain.ErrUnavailable when the store is closed or the write fails. Safe
// for concurrent use (calls are serialised; one process holds the store).
// Idempotent.
func (s *Store) CreateKeyCheck(ctx context.Context, check []byte) ([]byte, error) {
	const op = "create key check"
	if len(check) == 0 || len(check) > maxKeyCheckLen {
		return nil, domain.Invalid(op, "the key check must be 1 to %d bytes, not %d", maxKeyCheckLen, len(check))
	}
	if err := s.enter(op); err != nil {
		return nil, err
	}
	defer s.leave()
	s.keyCheckMu.Lock()
	defer s.keyCheckMu.Unlock()
	v, ok, err := s.get(keyCheckKey)
	if err != nil {
		return nil, storeErr(op, err)
	}
	if ok {
		return v, nil
	}
	if err := s.db.Set(keyCheckKey, check, pebble.Sync); err != nil {
		return nil, storeErr(op, err)
	}
	return bytes.Clone(check), nil
}

// AnyWrapped returns one stored wrapped data-key record (the first by ref)
// with its ref; ok is false when the store holds none.
//
// Errors: domain.ErrCorrupt or domain.ErrUnavailable from the database.
// Safe for concurrent use.
func (s *Store) AnyWrapped(ctx context.Context) (ref string, wrapped []byte, ok bool, err error) {
	const op = "find a wrapped key"
	if err := s.enter(op); err != nil {
		return "", nil, false, err
	}
	defer s.leave()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{nsWrapped}, UpperBound: []byte{nsWrapped + 1}})
	if err != nil {
		return "", nil, false, storeErr(op, err)
	}
	defer it.Close()
	if !it.First() {
		return "", nil, false, storeErr(op, it.Error())
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return "", nil, false, storeErr(op, err)
	}
	return string(it.Key()[1:]), bytes.Clone(v), true, nil
}
