package keystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/domain"
)

// keyCheck: the first CreateKeyCheck stores its check, every later one
// (concurrent ones on both handles included) returns the stored check,
// KeyCheck reads it, and an empty or oversized check is refused. On a
// store that already has a check (shared with other runs), only what does
// not depend on which check is there is checked.
func (s *suite) keyCheck(t *testing.T) {
	a, b := s.newStores(t)
	_, had, err := a.KeyCheck(context.Background())
	if err != nil {
		t.Fatalf("KeyCheck: %v", err)
	}
	for _, bad := range [][]byte{nil, {}, make([]byte, 1025)} {
		if _, err := a.CreateKeyCheck(context.Background(), bad); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("CreateKeyCheck of %d bytes = %v, want ErrInvalidArgument", len(bad), err)
		}
	}
	const racers = 8
	results := make([][]byte, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		st := alternate(i, a, b)
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
	for _, st := range []interface {
		KeyCheck(context.Context) ([]byte, bool, error)
	}{a, b} {
		got, ok, err := st.KeyCheck(context.Background())
		if err != nil || !ok || !bytes.Equal(got, results[0]) {
			t.Fatalf("KeyCheck = %x, %v, %v; want %x", got, ok, err, results[0])
		}
	}
	again, err := a.CreateKeyCheck(context.Background(), s.value("later", 33))
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
	mustPut(t, st, ref, v, 0)
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
// another master key, on either handle, is refused
// (envelope.ErrWrongMasterKey) and writes nothing: no data key, no check.
func (s *suite) wrongMasterKey(t *testing.T) {
	a, b := s.newStores(t)
	ctx := t.Context()
	right, err := envelope.New(s.value("master", envelope.MasterKeySize), a)
	if err != nil {
		t.Fatal(err)
	}
	if err := right.CheckMasterKey(ctx); err != nil {
		t.Fatalf("CheckMasterKey: %v", err)
	}
	check, _, err := a.KeyCheck(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := envelope.New(s.value("another master", envelope.MasterKeySize), b)
	if err != nil {
		t.Fatal(err)
	}
	ref := s.ref("wrong")
	if err := wrong.CreateDataKey(ctx, ref); !errors.Is(err, envelope.ErrWrongMasterKey) {
		t.Fatalf("CreateDataKey under another master key = %v, want ErrWrongMasterKey", err)
	}
	mustAbsent(t, a, ref)
	if got, _, err := a.KeyCheck(context.Background()); err != nil || !bytes.Equal(got, check) {
		t.Fatalf("the check changed: %x, %v", got, err)
	}
}
