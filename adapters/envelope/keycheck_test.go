package envelope

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
)

// snapshot copies every record of the store.
func (s *memStore) snapshot() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, len(s.records))
	for k, v := range s.records {
		out[k] = bytes.Clone(v.b)
	}
	return out
}

func wantWrongKey(tb testing.TB, what string, err error) {
	tb.Helper()
	if !errors.Is(err, ErrWrongMasterKey) || !errors.Is(err, domain.ErrFailedPrecondition) {
		tb.Fatalf("%s: %v, want ErrWrongMasterKey (failed precondition)", what, err)
	}
}

// TestWrongMasterKeyIsRefused: once a store has data keys under one master
// key, an envelope with another refuses every operation, and changes
// nothing in the store.
func TestWrongMasterKeyIsRefused(t *testing.T) {
	master := MustMasterKey(t)
	store := newMemStore()
	e := MustEnvelope(t, master, store, 0, 0)
	MustCreate(t, e, refA)
	s := MustSeal(t, e, refA, []byte("v"), nil)
	before, check := store.snapshot(), bytes.Clone(store.check)

	other := MustEnvelope(t, MustMasterKey(t), store, 0, 0)
	wantWrongKey(t, "CheckMasterKey", other.CheckMasterKey(ctx))
	_, err := other.Open(ctx, refA, s, nil)
	wantWrongKey(t, "Open", err)
	if !strings.Contains(err.Error(), "another master key") {
		t.Errorf("error %q should say the master key is another", err)
	}
	_, err = other.Seal(ctx, refA, []byte("v"), nil)
	wantWrongKey(t, "Seal", err)
	wantWrongKey(t, "CreateDataKey", other.CreateDataKey(ctx, refB))
	wantWrongKey(t, "DestroyDataKey", other.DestroyDataKey(ctx, refA))
	if !maps.EqualFunc(before, store.snapshot(), bytes.Equal) || !bytes.Equal(check, store.check) {
		t.Errorf("an envelope with the wrong master key changed the store")
	}
	// The right key still works.
	MustOpenEqual(t, MustEnvelope(t, master, store, 0, 0), refA, s, nil, []byte("v"))
}

// TestCheckIsWrittenBeforeAnyDataKey: the first use of an empty store
// writes the check before any data key; if it cannot, no data key is made.
func TestCheckIsWrittenBeforeAnyDataKey(t *testing.T) {
	master := MustMasterKey(t)
	store := newMemStore()
	var order []string
	store.onPut = func(ref string, _ []byte) {
		if store.check == nil {
			order = append(order, "record before check")
		}
	}
	store.setFailPut(errStoreDown)
	e := MustEnvelope(t, master, store, 0, 0)
	if err := e.CreateDataKey(ctx, refA); !errors.Is(err, errStoreDown) {
		t.Fatalf("CreateDataKey with the check unwritable: %v", err)
	}
	if n := len(store.snapshot()); n != 0 {
		t.Fatalf("%d data keys written before the check", n)
	}
	store.setFailPut(nil)
	MustCreate(t, e, refA)
	want, err := keyCheck(master)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(store.check, want) {
		t.Fatalf("stored check %x, want the master key's", store.check)
	}
	if len(order) != 0 {
		t.Fatalf("%v", order)
	}
}

// TestStoreWithoutCheck: a store written before checks existed gets one
// from the first envelope whose master key unwraps its records; an
// envelope whose key does not is refused, and writes no check.
func TestStoreWithoutCheck(t *testing.T) {
	master := MustMasterKey(t)
	store := newMemStore()
	e := MustEnvelope(t, master, store, 0, 0)
	MustCreate(t, e, refA)
	MustCreate(t, e, refB)
	s := MustSeal(t, e, refA, []byte("v"), nil)
	store.dropCheck()
	before := store.snapshot()

	wrong := MustEnvelope(t, MustMasterKey(t), store, 0, 0)
	wantWrongKey(t, "VerifyMasterKey", wrong.VerifyMasterKey(ctx))
	err := wrong.CreateDataKey(ctx, "kms_new")
	wantWrongKey(t, "CreateDataKey", err)
	if !strings.Contains(err.Error(), "does not unwrap") {
		t.Errorf("error %q should say the store's data key does not unwrap", err)
	}
	if store.check != nil || !maps.EqualFunc(before, store.snapshot(), bytes.Equal) {
		t.Fatal("an envelope with the wrong master key wrote to a store without a check")
	}

	right := MustEnvelope(t, master, store, 0, 0)
	if err := right.VerifyMasterKey(ctx); err != nil {
		t.Fatalf("VerifyMasterKey with the right key: %v", err)
	}
	if store.check != nil {
		t.Fatal("VerifyMasterKey wrote the check")
	}
	MustOpenEqual(t, right, refA, s, nil, []byte("v"))
	if want, _ := keyCheck(master); !bytes.Equal(store.check, want) {
		t.Fatal("the first use with the right key did not write the check")
	}
	wantWrongKey(t, "after the check was written", wrong.CheckMasterKey(ctx))

	// A record that does not decode is damage, not a wrong key.
	store.dropCheck()
	first, _, _, _ := store.AnyWrapped(context.Background())
	store.set(first, []byte{9, 9})
	if err := MustEnvelope(t, master, store, 0, 0).VerifyMasterKey(ctx); !errors.Is(err, domain.ErrCorrupt) || errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("a store whose record does not decode: %v, want ErrCorrupt", err)
	}
}

// TestFirstUseRace: two envelopes with different master keys start on one
// empty store at once; one key wins, the other is refused, and every data
// key in the store unwraps under the winner.
func TestFirstUseRace(t *testing.T) {
	for range 20 {
		store := newMemStore()
		masters := [][]byte{MustMasterKey(t), MustMasterKey(t)}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				errs[i] = MustEnvelope(t, masters[i], store, 0, 0).CreateDataKey(ctx, []string{refA, refB}[i])
			})
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("both or neither won: %v, %v", errs[0], errs[1])
		}
		winner := 0
		if errs[0] != nil {
			winner = 1
		}
		wantWrongKey(t, "the loser", errs[1-winner])
		if n := len(store.snapshot()); n != 1 {
			t.Fatalf("%d data keys in the store, want the winner's only", n)
		}
		if err := MustEnvelope(t, masters[winner], store, 0, 0).CheckMasterKey(ctx); err != nil {
			t.Fatalf("the winner's key: %v", err)
		}
	}
}

// TestCheckDoesNotShowTheKey: the check is not the key nor any part of it,
// and two keys give two checks.
func TestCheckDoesNotShowTheKey(t *testing.T) {
	a, b := MustMasterKey(t), MustMasterKey(t)
	ca, _ := keyCheck(a)
	cb, _ := keyCheck(b)
	if bytes.Equal(ca, cb) || len(ca) != 33 || ca[0] != keyCheckFormat {
		t.Fatalf("checks %x and %x", ca, cb)
	}
	for i := 0; i+8 <= len(a); i++ {
		if bytes.Contains(ca, a[i:i+8]) {
			t.Fatal("the check holds bytes of the master key")
		}
	}
}
