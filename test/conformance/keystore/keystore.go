package keystore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// MaxRefLen is the longest ref the suite uses: the envelope's limit.
const MaxRefLen = 256

// NewStores returns two handles on one store, standing for two engine
// nodes that share it: two connections (two clients) for a store across
// the network, or the same handle twice for a store that one process
// holds (Pebble, the in-memory store), whose nodes are then the envelopes
// built on it. It must release them when its test ends (t.Cleanup).
type NewStores func(t *testing.T) (a, b commands.KeyStore)

// Run runs the suite. newStores is called once per subtest. The store need
// not be empty: refs are unique to each run, drawn from a seed that is
// logged so that a failing run can be reproduced. But its master-key check
// must be its own: each call returns a store without a check (a new
// bucket, a new database, a check stream of its own), since the subtests
// that build envelopes write one under a master key of this run.
func Run(t *testing.T, newStores NewStores) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("keystore conformance: seed %d", seed)
	s := &suite{newStores: newStores, seed: seed, run: fmt.Sprintf("%x", seed&0xffffffff)}
	t.Run("GetMissing", s.getMissing)
	t.Run("PutGet", s.putGet)
	t.Run("Replace", s.replace)
	t.Run("Delete", s.delete)
	t.Run("Refs", s.refs)
	t.Run("Concurrent", s.concurrent)
	t.Run("InvalidArgument", s.invalidArgument)
	t.Run("Revisions", s.revisions)
	t.Run("RevisionsAcrossHandles", s.revisionsAcrossHandles)
	t.Run("CreateRace", s.createRace)
	t.Run("NoLostUpdate", s.noLostUpdate)
	t.Run("KeyCheck", s.keyCheck)
	t.Run("AnyWrapped", s.anyWrapped)
	t.Run("WrongMasterKey", s.wrongMasterKey)
	t.Run("Envelope", s.envelope)
	t.Run("EnvelopesRotateTogether", s.envelopesRotateTogether)
	t.Run("DestroySeenByEveryNode", s.destroySeenByEveryNode)
}

type suite struct {
	newStores NewStores
	seed      uint64
	run       string

	mu  sync.Mutex
	nth int
}

// newStore returns one handle on a new store.
func (s *suite) newStore(t *testing.T) commands.KeyStore {
	a, _ := s.newStores(t)
	return a
}

// alternate returns a for even i, b for odd i: the workers of a subtest
// take turns on the two nodes.
func alternate(i int, a, b commands.KeyStore) commands.KeyStore {
	if i%2 == 1 {
		return b
	}
	return a
}

// ref returns a ref unique to this run, shaped like a data ref.
func (s *suite) ref(what string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nth++
	return fmt.Sprintf("bkp_conf%s%s%d/1", s.run, what, s.nth)
}

// value returns n reproducible bytes, different for each (seed, tag).
func (s *suite) value(tag string, n int) []byte {
	key := sha256.Sum256(fmt.Appendf(nil, "%d\x00%s", s.seed, tag))
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// mustPut writes v as ref's record, expecting revision expected, and
// returns the new revision.
func mustPut(t testing.TB, st commands.KeyStore, ref string, v []byte, expected uint64) uint64 {
	t.Helper()
	rev, err := st.PutWrapped(context.Background(), ref, v, expected)
	if err != nil {
		t.Fatalf("PutWrapped(%q, %d bytes, expecting %d): %v", ref, len(v), expected, err)
	}
	if rev == 0 {
		t.Fatalf("PutWrapped(%q, expecting %d) returned revision 0", ref, expected)
	}
	return rev
}

// mustPutConflict checks that a write expecting expected is refused with
// domain.ErrWrongExpectedRevision.
func mustPutConflict(t testing.TB, st commands.KeyStore, ref string, v []byte, expected uint64, what string) {
	t.Helper()
	rev, err := st.PutWrapped(context.Background(), ref, v, expected)
	if !errors.Is(err, domain.ErrWrongExpectedRevision) {
		t.Fatalf("PutWrapped(%q) expecting %d (%s) = %d, %v; want ErrWrongExpectedRevision", ref, expected, what, rev, err)
	}
}

// mustGet checks that ref's record is want, and returns its revision.
func mustGet(t testing.TB, st commands.KeyStore, ref string, want []byte) uint64 {
	t.Helper()
	got, rev, err := st.GetWrapped(context.Background(), ref)
	switch {
	case err != nil:
		t.Fatalf("GetWrapped(%q): %v", ref, err)
	case rev == 0:
		t.Fatalf("GetWrapped(%q): absent, want %d bytes", ref, len(want))
	case !bytes.Equal(got, want):
		t.Fatalf("GetWrapped(%q) = %x, want %x", ref, got, want)
	}
	return rev
}

// mustGetRev checks that ref's record is want at revision rev.
func mustGetRev(t testing.TB, st commands.KeyStore, ref string, want []byte, rev uint64) {
	t.Helper()
	if got := mustGet(t, st, ref, want); got != rev {
		t.Fatalf("GetWrapped(%q) at revision %d, want %d", ref, got, rev)
	}
}

func mustAbsent(t testing.TB, st commands.KeyStore, ref string) {
	t.Helper()
	got, rev, err := st.GetWrapped(context.Background(), ref)
	if err != nil || rev != 0 || got != nil {
		t.Fatalf("GetWrapped(%q) = %x, %d, %v; want nil, 0, nil", ref, got, rev, err)
	}
}

func mustDelete(t testing.TB, st commands.KeyStore, ref string) {
	t.Helper()
	if err := st.DeleteWrapped(context.Background(), ref); err != nil {
		t.Fatalf("DeleteWrapped(%q): %v", ref, err)
	}
}
