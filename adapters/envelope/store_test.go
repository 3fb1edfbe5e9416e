package envelope

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// memStore is an in-memory KeyStore that counts reads and writes and can
// be told to fail. Revisions come from one counter for the whole store, so
// they grow over every ref's life.
type memStore struct {
	mu      sync.Mutex
	records map[string]memRecord
	seq     uint64 // the last revision given
	check   []byte
	puts    int
	gets    int
	failPut error // returned by PutWrapped when set
	failDel error // returned by DeleteWrapped when set
	onPut   func(ref string, wrapped []byte)
	// beforePut runs at the start of each PutWrapped, with mu held.
	beforePut func(ref string)
}

type memRecord struct {
	b   []byte
	rev uint64
}

func newMemStore() *memStore { return &memStore{records: make(map[string]memRecord)} }

// errEmpty is what the real stores answer for an empty ref or record.
var errEmpty = domain.Invalid("key store", "empty ref or record")

func (s *memStore) GetWrapped(ctx context.Context, ref string) ([]byte, uint64, error) {
	if ref == "" {
		return nil, 0, errEmpty
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	r := s.records[ref]
	return bytes.Clone(r.b), r.rev, nil
}

func (s *memStore) PutWrapped(ctx context.Context, ref string, wrapped []byte, expected uint64) (uint64, error) {
	if ref == "" || len(wrapped) == 0 {
		return 0, errEmpty
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failPut != nil {
		return 0, s.failPut
	}
	if s.beforePut != nil {
		s.beforePut(ref)
	}
	if cur := s.records[ref].rev; cur != expected {
		return 0, domain.Errorf(domain.ErrWrongExpectedRevision, "key store: put", ref, "", "revision %d, not %d", cur, expected)
	}
	s.seq++
	s.records[ref] = memRecord{bytes.Clone(wrapped), s.seq}
	s.puts++
	if s.onPut != nil {
		s.onPut(ref, wrapped)
	}
	return s.seq, nil
}

func (s *memStore) DeleteWrapped(ctx context.Context, ref string) error {
	if ref == "" {
		return errEmpty
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failDel != nil {
		return s.failDel
	}
	delete(s.records, ref)
	return nil
}

func (s *memStore) KeyCheck(ctx context.Context) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.check), s.check != nil, nil
}

func (s *memStore) CreateKeyCheck(ctx context.Context, check []byte) ([]byte, error) {
	if len(check) == 0 || len(check) > 1024 {
		return nil, domain.Invalid("key store", "the key check must be 1 to 1024 bytes")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failPut != nil {
		return nil, s.failPut
	}
	if s.check == nil {
		s.check = bytes.Clone(check)
	}
	return bytes.Clone(s.check), nil
}

// AnyWrapped returns the record of the smallest ref.
func (s *memStore) AnyWrapped(ctx context.Context) (string, []byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	refs := slices.Sorted(maps.Keys(s.records))
	if len(refs) == 0 {
		return "", nil, false, nil
	}
	return refs[0], bytes.Clone(s.records[refs[0]].b), true, nil
}

// dropCheck forgets the check, as a store written before checks existed.
func (s *memStore) dropCheck() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.check = nil
}

func (s *memStore) raw(ref string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[ref]
	return bytes.Clone(r.b), ok
}

// set replaces ref's record behind every envelope's back.
func (s *memStore) set(ref string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.records[ref] = memRecord{bytes.Clone(b), s.seq}
}

func (s *memStore) setFailPut(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failPut = err
}

func (s *memStore) putCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts
}

func (s *memStore) getCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

// MustRecord decodes ref's stored record.
func (s *memStore) MustRecord(tb testing.TB, ref string) record {
	tb.Helper()
	b, ok := s.raw(ref)
	if !ok {
		tb.Fatalf("store has no record for %s", ref)
	}
	rec, err := decodeRecord(b)
	if err != nil {
		tb.Fatalf("decode record of %s: %v", ref, err)
	}
	return rec
}

var errStoreDown = errors.New("memstore: down")

// MustMasterKey returns a fresh random master key.
func MustMasterKey(tb testing.TB) []byte {
	tb.Helper()
	k := make([]byte, MasterKeySize)
	if _, err := rand.Read(k); err != nil {
		tb.Fatal(err)
	}
	return k
}

// MustEnvelope returns an Envelope over store with the given limits (zero
// keeps the defaults).
func MustEnvelope(tb testing.TB, master []byte, store commands.KeyStore, rotateAfter, chunk uint64) *Envelope {
	tb.Helper()
	e, err := New(master, store)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if rotateAfter != 0 {
		e.RotateAfter = rotateAfter
	}
	if chunk != 0 {
		e.ReserveChunk = chunk
	}
	return e
}
