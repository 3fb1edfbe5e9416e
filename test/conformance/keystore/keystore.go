package keystore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// MaxRefLen is the longest ref the suite uses: the envelope's limit.
const MaxRefLen = 256

// Run runs the suite. newStore must return a working store and release it
// when its test ends (t.Cleanup); it is called once per subtest. The store
// need not be empty: refs are unique to each run, drawn from a seed that is
// logged so that a failing run can be reproduced. But its master-key check
// must be its own: each call returns a store without a check (a new
// bucket, a new database, a check stream of its own), since the subtests
// that build envelopes write one under a master key of this run.
func Run(t *testing.T, newStore func(t *testing.T) commands.KeyStore) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("keystore conformance: seed %d", seed)
	s := &suite{newStore: newStore, seed: seed, run: fmt.Sprintf("%x", seed&0xffffffff)}
	t.Run("GetMissing", s.getMissing)
	t.Run("PutGet", s.putGet)
	t.Run("Replace", s.replace)
	t.Run("Delete", s.delete)
	t.Run("Refs", s.refs)
	t.Run("Concurrent", s.concurrent)
	t.Run("InvalidArgument", s.invalidArgument)
	t.Run("KeyCheck", s.keyCheck)
	t.Run("AnyWrapped", s.anyWrapped)
	t.Run("Envelope", s.envelope)
	t.Run("WrongMasterKey", s.wrongMasterKey)
}

type suite struct {
	newStore func(t *testing.T) commands.KeyStore
	seed     uint64
	run      string

	mu  sync.Mutex
	nth int
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

func mustPut(t testing.TB, st commands.KeyStore, ref string, v []byte) {
	t.Helper()
	if err := st.PutWrapped(context.Background(), ref, v); err != nil {
		t.Fatalf("PutWrapped(%q, %d bytes): %v", ref, len(v), err)
	}
}

func mustGet(t testing.TB, st commands.KeyStore, ref string, want []byte) {
	t.Helper()
	got, ok, err := st.GetWrapped(context.Background(), ref)
	switch {
	case err != nil:
		t.Fatalf("GetWrapped(%q): %v", ref, err)
	case !ok:
		t.Fatalf("GetWrapped(%q): absent, want %d bytes", ref, len(want))
	case !bytes.Equal(got, want):
		t.Fatalf("GetWrapped(%q) = %x, want %x", ref, got, want)
	}
}

func mustAbsent(t testing.TB, st commands.KeyStore, ref string) {
	t.Helper()
	got, ok, err := st.GetWrapped(context.Background(), ref)
	if err != nil || ok || got != nil {
		t.Fatalf("GetWrapped(%q) = %x, %v, %v; want nil, false, nil", ref, got, ok, err)
	}
}

func mustDelete(t testing.TB, st commands.KeyStore, ref string) {
	t.Helper()
	if err := st.DeleteWrapped(context.Background(), ref); err != nil {
		t.Fatalf("DeleteWrapped(%q): %v", ref, err)
	}
}

func (s *suite) getMissing(t *testing.T) {
	st := s.newStore(t)
	mustAbsent(t, st, s.ref("missing"))
}

// putGet: a record comes back as it went in, and the slices on either side
// are the caller's.
func (s *suite) putGet(t *testing.T) {
	st := s.newStore(t)
	for _, n := range []int{1, 60, 4096} {
		ref := s.ref("pg")
		v := s.value(ref, n)
		in := bytes.Clone(v)
		mustPut(t, st, ref, in)
		clear(in)
		mustGet(t, st, ref, v)
		got, _, _ := st.GetWrapped(context.Background(), ref)
		clear(got)
		mustGet(t, st, ref, v)
	}
}

// replace: a put replaces the record; the same bytes again change nothing.
func (s *suite) replace(t *testing.T) {
	st := s.newStore(t)
	ref := s.ref("rep")
	for i := range 4 {
		v := s.value(fmt.Sprintf("%s-%d", ref, i), 50+i)
		mustPut(t, st, ref, v)
		mustGet(t, st, ref, v)
		mustPut(t, st, ref, v)
		mustGet(t, st, ref, v)
	}
	// Shorter than before: nothing of the old record shows through.
	mustPut(t, st, ref, []byte{7})
	mustGet(t, st, ref, []byte{7})
}

// delete: a deleted record is absent, deleting again or deleting a ref
// that never had one succeeds, and the ref can be written again.
func (s *suite) delete(t *testing.T) {
	st := s.newStore(t)
	ref := s.ref("del")
	mustPut(t, st, ref, s.value("first", 60))
	mustPut(t, st, ref, s.value("second", 60)) // a replaced record is deleted too
	mustDelete(t, st, ref)
	mustAbsent(t, st, ref)
	mustDelete(t, st, ref)
	mustAbsent(t, st, ref)
	mustDelete(t, st, s.ref("del-never"))
	v := s.value("again", 60)
	mustPut(t, st, ref, v)
	mustGet(t, st, ref, v)
}

// refs: refs with any bytes, including those an encoding could merge, and
// the longest the envelope allows, are distinct; deleting one leaves the
// others.
func (s *suite) refs(t *testing.T) {
	st := s.newStore(t)
	base := strings.TrimSuffix(s.ref("refs"), "/1")
	refs := []string{
		base + "/3", base + "/30", base + "/3/0", base + "%2F3", base + "=2F3", base + "~2F3",
		base + ".3", base + "*", base + ">", base + " 3", base + "/", base, base + "\x00", base + "\xff",
		base + "ü", base + "=", base + "==", base + "-_",
		(base + strings.Repeat("L", MaxRefLen))[:MaxRefLen],
	}
	for i, ref := range refs {
		mustPut(t, st, ref, s.value(fmt.Sprint(i), 40+i))
	}
	for i, ref := range refs {
		mustGet(t, st, ref, s.value(fmt.Sprint(i), 40+i))
	}
	mustDelete(t, st, refs[0])
	mustAbsent(t, st, refs[0])
	for i, ref := range refs[1:] {
		mustGet(t, st, ref, s.value(fmt.Sprint(i+1), 41+i))
	}
}

// concurrent: many goroutines, each the only writer of its refs, put,
// replace, read and delete at once.
func (s *suite) concurrent(t *testing.T) {
	st := s.newStore(t)
	const workers, each = 16, 4
	refs := make([][]string, workers)
	for w := range refs {
		for range each {
			refs[w] = append(refs[w], s.ref("conc"))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*4)
	for w := range workers {
		wg.Go(func() {
			for i, ref := range refs[w] {
				for round := range 2 {
					v := s.value(fmt.Sprintf("%s-%d", ref, round), 60)
					if err := st.PutWrapped(context.Background(), ref, v); err != nil {
						errs <- fmt.Errorf("PutWrapped(%q): %w", ref, err)
						return
					}
					got, ok, err := st.GetWrapped(context.Background(), ref)
					if err != nil || !ok || !bytes.Equal(got, v) {
						errs <- fmt.Errorf("GetWrapped(%q) after a put = %x, %v, %v; want %x", ref, got, ok, err, v)
					}
				}
				if i%2 == 1 {
					if err := st.DeleteWrapped(context.Background(), ref); err != nil {
						errs <- fmt.Errorf("DeleteWrapped(%q): %w", ref, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for w := range workers {
		for i, ref := range refs[w] {
			if i%2 == 1 {
				mustAbsent(t, st, ref)
			} else {
				mustGet(t, st, ref, s.value(ref+"-1", 60))
			}
		}
	}
}

// invalidArgument: an empty ref, for every method, and an empty record.
func (s *suite) invalidArgument(t *testing.T) {
	st := s.newStore(t)
	if _, _, err := st.GetWrapped(context.Background(), ""); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("GetWrapped(\"\") = %v, want ErrInvalidArgument", err)
	}
	if err := st.PutWrapped(context.Background(), "", []byte{1}); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("PutWrapped(\"\") = %v, want ErrInvalidArgument", err)
	}
	if err := st.DeleteWrapped(context.Background(), ""); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("DeleteWrapped(\"\") = %v, want ErrInvalidArgument", err)
	}
	ref := s.ref("inv")
	for _, v := range [][]byte{nil, {}} {
		if err := st.PutWrapped(context.Background(), ref, v); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("PutWrapped of an empty record = %v, want ErrInvalidArgument", err)
		}
	}
	mustAbsent(t, st, ref)
}

// keyCheck: the first CreateKeyCheck stores its check, every later one
// (concurrent ones included) returns the stored check, KeyCheck reads it,
// and an empty or oversized check is refused. On a store that already has
// a check (shared with other runs), only what does not depend on which
// check is there is checked.
func (s *suite) keyCheck(t *testing.T) {
	st := s.newStore(t)
	_, had, err := st.KeyCheck(context.Background())
	if err != nil {
		t.Fatalf("KeyCheck: %v", err)
	}
	for _, bad := range [][]byte{nil, {}, make([]byte, 1025)} {
		if _, err := st.CreateKeyCheck(context.Background(), bad); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("CreateKeyCheck of %d bytes = %v, want ErrInvalidArgument", len(bad), err)
		}
	}
	const racers = 8
	results := make([][]byte, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			results[i], errs[i] = st.CreateKeyCheck(context.Background(), s.value(fmt.Sprintf("check-%d", i), 33))
		})
	}
	wg.Wait()
	for i := range racers {
		if errs[i] != nil {
			t.Fatalf("CreateKeyCheck #%d: %v", i, errs[i])
		}
		if !bytes.Equal(results[i], results[0]) {
			t.Fatalf("concurrent CreateKeyCheck calls returned different checks: %x and %x", results[0], results[i])
		}
	}
	if !had {
		won := false
		for i := range racers {
			won = won || bytes.Equal(results[0], s.value(fmt.Sprintf("check-%d", i), 33))
		}
		if !won {
			t.Fatalf("CreateKeyCheck on a store without a check returned %x, none of the checks given", results[0])
		}
	}
	got, ok, err := st.KeyCheck(context.Background())
	if err != nil || !ok || !bytes.Equal(got, results[0]) {
		t.Fatalf("KeyCheck = %x, %v, %v; want %x", got, ok, err, results[0])
	}
	again, err := st.CreateKeyCheck(context.Background(), s.value("later", 33))
	if err != nil || !bytes.Equal(again, results[0]) {
		t.Fatalf("a later CreateKeyCheck = %x, %v; want the stored %x", again, err, results[0])
	}
}

// anyWrapped: AnyWrapped returns a record the store holds, under its ref;
// on a store without records it returns none, whatever check is stored.
func (s *suite) anyWrapped(t *testing.T) {
	st := s.newStore(t)
	mustAny := func(what string) (string, []byte, bool) {
		t.Helper()
		ref, rec, ok, err := st.AnyWrapped(context.Background())
		if err != nil {
			t.Fatalf("AnyWrapped %s: %v", what, err)
		}
		if ok {
			mustGet(t, st, ref, rec)
		}
		return ref, rec, ok
	}
	_, _, nonEmpty := mustAny("at first")
	if _, err := st.CreateKeyCheck(context.Background(), s.value("check", 33)); err != nil {
		t.Fatalf("CreateKeyCheck: %v", err)
	}
	if _, _, ok := mustAny("after a check was stored"); ok && !nonEmpty {
		t.Fatal("AnyWrapped returned the key check as a record")
	}
	ref := s.ref("any")
	v := s.value(ref, 60)
	mustPut(t, st, ref, v)
	if gotRef, got, ok := mustAny("after a put"); !ok {
		t.Fatal("AnyWrapped found no record after a put")
	} else if !nonEmpty && (gotRef != ref || !bytes.Equal(got, v)) {
		t.Fatalf("AnyWrapped = %q, %x; want the only record %q", gotRef, got, ref)
	}
	mustDelete(t, st, ref)
	if _, _, ok := mustAny("after the delete"); ok && !nonEmpty {
		t.Fatal("AnyWrapped returned a deleted record")
	}
}

// wrongMasterKey: once an envelope used the store, an envelope with
// another master key is refused (envelope.ErrWrongMasterKey) and writes
// nothing: no data key, no check.
func (s *suite) wrongMasterKey(t *testing.T) {
	st := s.newStore(t)
	ctx := t.Context()
	right, err := envelope.New(s.value("master", envelope.MasterKeySize), st)
	if err != nil {
		t.Fatal(err)
	}
	if err := right.CheckMasterKey(ctx); err != nil {
		t.Fatalf("CheckMasterKey: %v", err)
	}
	check, _, err := st.KeyCheck(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := envelope.New(s.value("another master", envelope.MasterKeySize), st)
	if err != nil {
		t.Fatal(err)
	}
	ref := s.ref("wrong")
	if err := wrong.CreateDataKey(ctx, ref); !errors.Is(err, envelope.ErrWrongMasterKey) {
		t.Fatalf("CreateDataKey under another master key = %v, want ErrWrongMasterKey", err)
	}
	mustAbsent(t, st, ref)
	if got, _, err := st.KeyCheck(context.Background()); err != nil || !bytes.Equal(got, check) {
		t.Fatalf("the check changed: %x, %v", got, err)
	}
}

// envelope: an envelope built on the store seals and opens across data-key
// rotations, a second envelope on the same store (another node) opens what
// the first sealed, and once the data key is destroyed nothing opens it:
// not the envelope that destroyed it, not a fresh one, and the store holds
// no record.
func (s *suite) envelope(t *testing.T) {
	st := s.newStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	master := s.value("master", envelope.MasterKeySize)
	newEnvelope := func() *envelope.Envelope {
		e, err := envelope.New(master, st)
		if err != nil {
			t.Fatalf("envelope.New: %v", err)
		}
		// Rotate and reserve often, so that records are replaced many times.
		e.RotateAfter, e.ReserveChunk = 3, 2
		return e
	}
	e := newEnvelope()
	ref, other := s.ref("env"), s.ref("env-other")
	for _, r := range []string{ref, other} {
		if err := e.CreateDataKey(ctx, r); err != nil {
			t.Fatalf("CreateDataKey(%q): %v", r, err)
		}
	}
	aad := []byte("conformance aad")
	var sealed []domain.Sealed
	for i := range 10 {
		v, err := e.Seal(ctx, ref, domain.Plaintext(fmt.Sprintf("secret %d", i)), aad)
		if err != nil {
			t.Fatalf("Seal #%d: %v", i, err)
		}
		sealed = append(sealed, v)
	}
	otherSealed, err := e.Seal(ctx, other, domain.Plaintext("other secret"), aad)
	if err != nil {
		t.Fatalf("Seal under %q: %v", other, err)
	}
	for _, opener := range []*envelope.Envelope{e, newEnvelope()} {
		for i, v := range sealed {
			pt, err := opener.Open(ctx, ref, v, aad)
			if err != nil || string(pt) != fmt.Sprintf("secret %d", i) {
				t.Fatalf("Open #%d = %q, %v", i, pt, err)
			}
		}
	}

	if err := e.DestroyDataKey(ctx, ref); err != nil {
		t.Fatalf("DestroyDataKey: %v", err)
	}
	mustAbsent(t, st, ref)
	for name, opener := range map[string]*envelope.Envelope{"the destroying envelope": e, "a fresh envelope": newEnvelope()} {
		if pt, err := opener.Open(ctx, ref, sealed[0], aad); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("Open by %s after DestroyDataKey = %q, %v; want ErrNotFound", name, pt, err)
		}
		// The other ref's key is untouched.
		if pt, err := opener.Open(ctx, other, otherSealed, aad); err != nil || string(pt) != "other secret" {
			t.Errorf("Open under the other ref by %s = %q, %v", name, pt, err)
		}
	}
	if err := e.DestroyDataKey(ctx, ref); err != nil {
		t.Fatalf("DestroyDataKey again: %v", err)
	}
}
