package envelope

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

const (
	refA = "kms_01J9ZQ3V8K2M4N6P8R0T2V4X6Z"
	refB = "bkp_01J9ZQ3V8K2M4N6P8R0T2V4X70"
)

var ctx = context.Background()

// MustCreate creates ref's data key.
func MustCreate(tb testing.TB, e *Envelope, ref string) {
	tb.Helper()
	if err := e.CreateDataKey(ctx, ref); err != nil {
		tb.Fatalf("CreateDataKey(%s): %v", ref, err)
	}
}

// MustSeal seals pt under ref.
func MustSeal(tb testing.TB, e *Envelope, ref string, pt, aad []byte) domain.Sealed {
	tb.Helper()
	s, err := e.Seal(ctx, ref, pt, aad)
	if err != nil {
		tb.Fatalf("Seal(%s): %v", ref, err)
	}
	return s
}

// MustOpenEqual opens sealed and checks it gives want, without ever
// printing either.
func MustOpenEqual(tb testing.TB, e *Envelope, ref string, sealed domain.Sealed, aad, want []byte) {
	tb.Helper()
	got, err := e.Open(ctx, ref, sealed, aad)
	if err != nil {
		tb.Fatalf("Open(%s): %v", ref, err)
	}
	if !bytes.Equal(got, want) {
		tb.Fatalf("Open(%s) returned %d bytes that differ from the %d sealed", ref, len(got), len(want))
	}
}

func wantKind(tb testing.TB, what string, err, kind error) {
	tb.Helper()
	if !errors.Is(err, kind) {
		tb.Fatalf("%s: error %v, want one wrapping %v", what, err, kind)
	}
}

func versionOf(s domain.Sealed) uint32 { return binary.BigEndian.Uint32(s[1:headerLen]) }

func TestRoundTrip(t *testing.T) {
	e := MustEnvelope(t, MustMasterKey(t), newMemStore(), 0, 0)
	MustCreate(t, e, refA)
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	tests := []struct {
		name string
		pt   []byte
		aad  []byte
	}{
		{"empty plaintext, no aad", nil, nil},
		{"one byte", []byte{0}, []byte("acct")},
		{"key material", bytes.Repeat([]byte{0xA5}, 32), domain.AssociatedData("acct_x", "kms-kms_x", domain.EventID{1, 2, 3})},
		{"64 KiB", big, []byte("a")},
		{"aad only", nil, bytes.Repeat([]byte{7}, 1000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := MustSeal(t, e, refA, tt.pt, tt.aad)
			if got, want := len(s), MinSealedLen+len(tt.pt); got != want {
				t.Errorf("sealed length %d, want %d", got, want)
			}
			if s[0] != sealFormat || versionOf(s) != 1 {
				t.Errorf("header: format %d version %d, want %d and 1", s[0], versionOf(s), sealFormat)
			}
			MustOpenEqual(t, e, refA, s, tt.aad, tt.pt)
			if s2 := MustSeal(t, e, refA, tt.pt, tt.aad); bytes.Equal(s, s2) {
				t.Errorf("sealing twice gave identical outputs: nonces are not fresh")
			}
		})
	}
}

func TestOpenReturnsPlaintextThatRedacts(t *testing.T) {
	e := MustEnvelope(t, MustMasterKey(t), newMemStore(), 0, 0)
	MustCreate(t, e, refA)
	pt, err := e.Open(ctx, refA, MustSeal(t, e, refA, []byte("top secret value"), nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v %s %+v %#v", pt, pt, pt, pt); strings.Contains(s, "secret") {
		t.Errorf("formatted plaintext is not redacted")
	}
}

func TestOpenRejectsOtherAssociatedData(t *testing.T) {
	e := MustEnvelope(t, MustMasterKey(t), newMemStore(), 0, 0)
	MustCreate(t, e, refA)
	MustCreate(t, e, refB)
	aad := domain.AssociatedData("acct_1", "kms-x", domain.EventID{9})
	s := MustSeal(t, e, refA, []byte("value"), aad)
	tests := []struct {
		name string
		ref  string
		aad  []byte
	}{
		{"nil aad", refA, nil},
		{"other event", refA, domain.AssociatedData("acct_1", "kms-x", domain.EventID{8})},
		{"other account", refA, domain.AssociatedData("acct_2", "kms-x", domain.EventID{9})},
		{"aad with a byte more", refA, append(bytes.Clone(aad), 0)},
		{"aad with a byte less", refA, aad[:len(aad)-1]},
		{"other ref, same aad", refB, aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := e.Open(ctx, tt.ref, s, tt.aad)
			wantKind(t, "Open", err, domain.ErrCorrupt)
			if pt != nil {
				t.Errorf("Open returned %d bytes along with the error", len(pt))
			}
		})
	}
}

func TestOpenRejectsEveryByteFlip(t *testing.T) {
	// RotateAfter 1 gives the ref several versions, so a flipped version
	// field may name another existing version.
	e := MustEnvelope(t, MustMasterKey(t), newMemStore(), 1, 0)
	MustCreate(t, e, refA)
	var s domain.Sealed
	for range 3 {
		s = MustSeal(t, e, refA, []byte("flip me"), []byte("aad"))
	}
	if versionOf(s) != 3 {
		t.Fatalf("sealed under version %d, want 3", versionOf(s))
	}
	for i := range s {
		for x := 1; x < 256; x++ {
			bad := bytes.Clone(s)
			bad[i] ^= byte(x)
			pt, err := e.Open(ctx, refA, bad, []byte("aad"))
			if !errors.Is(err, domain.ErrCorrupt) || pt != nil {
				t.Fatalf("byte %d xor %#02x: Open gave %d bytes and error %v, want ErrCorrupt", i, x, len(pt), err)
			}
		}
	}
}

func TestOpenRejectsTruncationAndExtension(t *testing.T) {
	e := MustEnvelope(t, MustMasterKey(t), newMemStore(), 0, 0)
	MustCreate(t, e, refA)
	s := MustSeal(t, e, refA, []byte("some value"), nil)
	for n := range len(s) {
		if _, err := e.Open(ctx, refA, s[:n], nil); !errors.Is(err, domain.ErrCorrupt) {
			t.Errorf("first %d of %d bytes: error %v, want ErrCorrupt", n, len(s), err)
		}
	}
	for _, tail := range [][]byte{{0}, {1, 2, 3}} {
		if _, err := e.Open(ctx, refA, append(bytes.Clone(s), tail...), nil); !errors.Is(err, domain.ErrCorrupt) {
			t.Errorf("%d bytes appended: error %v, want ErrCorrupt", len(tail), err)
		}
	}
}

func TestOpenRejectsBadHeader(t *testing.T) {
	e := MustEnvelope(t, MustMasterKey(t), newMemStore(), 0, 0)
	MustCreate(t, e, refA)
	s := MustSeal(t, e, refA, []byte("v"), nil)
	withHeader := func(format byte, version uint32) domain.Sealed {
		b := bytes.Clone(s)
		b[0] = format
		binary.BigEndian.PutUint32(b[1:headerLen], version)
		return b
	}
	tests := []struct {
		name   string
		sealed domain.Sealed
		msg    string
	}{
		{"format 0", withHeader(0, 1), "unknown sealed format 0"},
		{"format 2", withHeader(2, 1), "unknown sealed format 2"},
		{"version 0", withHeader(sealFormat, 0), "version 0, which does not exist"},
		{"version 2 not yet created", withHeader(sealFormat, 2), "version 2, which does not exist"},
		{"max version", withHeader(sealFormat, ^uint32(0)), "does not exist"},
		{"header only", s[:headerLen], "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Open(ctx, refA, tt.sealed, nil)
			wantKind(t, "Open", err, domain.ErrCorrupt)
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), refA) {
				t.Errorf("error %q should name %s and say %q", err, refA, tt.msg)
			}
		})
	}
}

func TestRotationKeepsOldVersionsReadable(t *testing.T) {
	master := MustMasterKey(t)
	store := newMemStore()
	e := MustEnvelope(t, master, store, 3, 2)
	MustCreate(t, e, refA)
	var sealed []domain.Sealed
	var versions []uint32
	for i := range 10 {
		s := MustSeal(t, e, refA, []byte{byte(i)}, []byte{byte(i)})
		sealed = append(sealed, s)
		versions = append(versions, versionOf(s))
	}
	if diff := cmp.Diff([]uint32{1, 1, 1, 2, 2, 2, 3, 3, 3, 4}, versions); diff != "" {
		t.Errorf("DEK version of each seal (-want +got):\n%s", diff)
	}
	// A fresh Envelope (cold cache) opens every version from the store.
	for _, env := range []*Envelope{e, MustEnvelope(t, master, store, 3, 2)} {
		for i, s := range sealed {
			MustOpenEqual(t, env, refA, s, []byte{byte(i)}, []byte{byte(i)})
		}
	}
	var stored []uint32
	for _, v := range store.MustRecord(t, refA).versions {
		stored = append(stored, v.version)
	}
	if diff := cmp.Diff([]uint32{1, 2, 3, 4}, stored); diff != "" {
		t.Errorf("stored versions (-want +got):\n%s", diff)
	}
}

// usage reads k's current version and use count.
func usage(tb testing.TB, e *Envelope, ref string) (version uint32, used uint64) {
	tb.Helper()
	k := e.cached(ref)
	if k == nil {
		tb.Fatalf("%s is not loaded", ref)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current, k.used
}

func TestUseCountSurvivesRestarts(t *testing.T) {
	const rotateAfter, chunk = 10, 4
	master := MustMasterKey(t)
	store := newMemStore()

	// Every reservation written must exceed the previous one for the same
	// version: a reservation is never handed out twice.
	type res struct {
		version  uint32
		reserved uint64
	}
	var writes []res
	store.onPut = func(ref string, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			t.Errorf("store received a bad record: %v", err)
			return
		}
		writes = append(writes, res{rec.newest(), rec.reserved})
	}

	seen := map[[2]uint64]bool{} // (version, seal index) pairs handed out
	perVersion := map[uint32]int{}
	var all []domain.Sealed
	// Each incarnation seals a few values, then "crashes" (is dropped).
	for i, n := range []int{3, 1, 0, 6, 4, 9, 2} {
		e := MustEnvelope(t, master, store, rotateAfter, chunk)
		if i == 0 {
			MustCreate(t, e, refA)
		}
		for range n {
			s := MustSeal(t, e, refA, []byte("x"), nil)
			all = append(all, s)
			v, used := usage(t, e, refA)
			if v != versionOf(s) {
				t.Fatalf("sealed under version %d, current is %d", versionOf(s), v)
			}
			key := [2]uint64{uint64(v), used}
			if seen[key] {
				t.Fatalf("incarnation %d reused seal %d of version %d", i, used, v)
			}
			seen[key] = true
			perVersion[v]++
			rec := store.MustRecord(t, refA)
			if rec.newest() != v || used > rec.reserved {
				t.Fatalf("incarnation %d: seal %d of version %d beyond the stored reservation %d of version %d",
					i, used, v, rec.reserved, rec.newest())
			}
			if used > rotateAfter {
				t.Fatalf("version %d sealed %d values, limit %d", v, used, rotateAfter)
			}
		}
	}
	for v, n := range perVersion {
		if n > rotateAfter {
			t.Errorf("version %d sealed %d values, limit %d", v, n, rotateAfter)
		}
	}
	if len(perVersion) < 3 {
		t.Errorf("only %d DEK versions used: the test no longer rotates across restarts", len(perVersion))
	}
	for i := 1; i < len(writes); i++ {
		if writes[i].version == writes[i-1].version && writes[i].reserved <= writes[i-1].reserved {
			t.Errorf("reservation of version %d went from %d to %d", writes[i].version, writes[i-1].reserved, writes[i].reserved)
		}
		if writes[i].version < writes[i-1].version {
			t.Errorf("record went back from version %d to %d", writes[i-1].version, writes[i].version)
		}
	}
	e := MustEnvelope(t, master, store, rotateAfter, chunk)
	for _, s := range all {
		MustOpenEqual(t, e, refA, s, nil, []byte("x"))
	}
}

func TestRestartResumesAtReservation(t *testing.T) {
	master := MustMasterKey(t)
	store := newMemStore()
	e1 := MustEnvelope(t, master, store, 100, 4)
	MustCreate(t, e1, refA)
	for range 3 {
		MustSeal(t, e1, refA, nil, nil)
	}
	puts := store.putCount()
	if got := store.MustRecord(t, refA).reserved; got != 4 {
		t.Fatalf("reserved %d after 3 seals with chunk 4, want 4", got)
	}
	MustSeal(t, e1, refA, nil, nil) // the 4th seal is still covered
	if store.putCount() != puts {
		t.Fatalf("a seal inside the reservation wrote to the store")
	}

	e2 := MustEnvelope(t, master, store, 100, 4)
	MustSeal(t, e2, refA, nil, nil)
	if _, used := usage(t, e2, refA); used != 5 {
		t.Errorf("restarted envelope counts %d seals, want 5 (4 reserved before, then 1)", used)
	}
	if got := store.MustRecord(t, refA).reserved; got != 8 {
		t.Errorf("reserved %d after restart and one seal, want 8", got)
	}
}

func TestDestroyShreds(t *testing.T) {
	master := MustMasterKey(t)
	store := newMemStore()
	e := MustEnvelope(t, master, store, 0, 0)
	MustCreate(t, e, refA)
	MustCreate(t, e, refB)
	sa := MustSeal(t, e, refA, []byte("a"), nil)
	sb := MustSeal(t, e, refB, []byte("b"), nil)

	for range 2 { // idempotent
		if err := e.DestroyDataKey(ctx, refA); err != nil {
			t.Fatalf("DestroyDataKey: %v", err)
		}
	}
	if _, ok := store.raw(refA); ok {
		t.Fatalf("record of %s survived its destruction", refA)
	}
	for name, env := range map[string]*Envelope{"same envelope": e, "fresh envelope": MustEnvelope(t, master, store, 0, 0)} {
		_, err := env.Open(ctx, refA, sa, nil)
		wantKind(t, name+": Open after destroy", err, domain.ErrNotFound)
		if !strings.Contains(err.Error(), refA) || !strings.Contains(err.Error(), "CreateDataKey") {
			t.Errorf("%s: error %q should name the ref and hint at CreateDataKey", name, err)
		}
		_, err = env.Seal(ctx, refA, []byte("a"), nil)
		wantKind(t, name+": Seal after destroy", err, domain.ErrNotFound)
		MustOpenEqual(t, env, refB, sb, nil, []byte("b")) // other refs unaffected
	}

	// A new key under the same ref does not bring old values back.
	MustCreate(t, e, refA)
	_, err := e.Open(ctx, refA, sa, nil)
	wantKind(t, "Open under the re-created key", err, domain.ErrCorrupt)
}

func TestDestroyWhileInUse(t *testing.T) {
	store := newMemStore()
	e := MustEnvelope(t, MustMasterKey(t), store, 0, 1) // every seal writes a reservation
	MustCreate(t, e, refA)
	k := e.cached(refA)
	if err := e.DestroyDataKey(ctx, refA); err != nil {
		t.Fatal(err)
	}
	// A caller still holding the old state neither seals nor resurrects
	// the record.
	if _, _, err := e.take(context.Background(), "test", k); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("take on destroyed state: %v, want ErrNotFound", err)
	}
	if _, ok := store.raw(refA); ok {
		t.Errorf("record resurrected")
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	master := MustMasterKey(t)
	store := newMemStore()
	e := MustEnvelope(t, master, store, 0, 0)
	MustCreate(t, e, refA)
	s := MustSeal(t, e, refA, []byte("kept"), nil)
	puts := store.putCount()
	MustCreate(t, e, refA)
	MustCreate(t, MustEnvelope(t, master, store, 0, 0), refA) // cold cache: loads, does not replace
	if store.putCount() != puts {
		t.Errorf("CreateDataKey of an existing key wrote to the store")
	}
	MustOpenEqual(t, MustEnvelope(t, master, store, 0, 0), refA, s, nil, []byte("kept"))
}

func TestWrappedKeyIsBoundToItsRef(t *testing.T) {
	master := MustMasterKey(t)
	store := newMemStore()
	e := MustEnvelope(t, master, store, 0, 0)
	MustCreate(t, e, refA)
	s := MustSeal(t, e, refA, []byte("v"), nil)
	raw, _ := store.raw(refA)
	store.set(refB, raw) // move A's record to B

	fresh := MustEnvelope(t, master, store, 0, 0)
	_, err := fresh.Open(ctx, refB, s, nil)
	wantKind(t, "Open under the other ref", err, domain.ErrCorrupt)
	_, err = fresh.Seal(ctx, refB, []byte("v"), nil)
	wantKind(t, "Seal under the other ref", err, domain.ErrCorrupt)
}

func TestCorruptRecord(t *testing.T) {
	master := MustMasterKey(t)
	store := newMemStore()
	MustCreate(t, MustEnvelope(t, master, store, 1, 0), refA)
	good, _ := store.raw(refA)
	rec, err := decodeRecord(good)
	if err != nil {
		t.Fatal(err)
	}
	withVersions := func(vs ...wrappedDEK) []byte { return record{reserved: 1, versions: vs}.encode() }
	w := rec.versions[0].wrapped
	tests := []struct {
		name string
		raw  []byte
	}{
		{"empty", nil},
		{"format only", []byte{recordFormat}},
		{"unknown format", append([]byte{2}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"no versions", withVersions()},
		{"version 0", withVersions(wrappedDEK{0, w})},
		{"versions out of order", withVersions(wrappedDEK{2, w}, wrappedDEK{1, w})},
		{"duplicate version", withVersions(wrappedDEK{1, w}, wrappedDEK{1, w})},
		{"short wrapped key", withVersions(wrappedDEK{1, w[:59]})},
		{"wrapped key under another version", withVersions(wrappedDEK{2, w})},
		{"huge version count", []byte{recordFormat, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"flipped wrapped byte", func() []byte { b := bytes.Clone(good); b[len(b)-1] ^= 1; return b }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store.set(refA, tt.raw)
			e := MustEnvelope(t, master, store, 0, 0)
			_, err := e.Seal(ctx, refA, []byte("v"), nil)
			wantKind(t, "Seal", err, domain.ErrCorrupt)
			if !strings.Contains(err.Error(), refA) {
				t.Errorf("error %q does not name the ref", err)
			}
		})
	}
}

func TestUnknownRef(t *testing.T) {
	e := MustEnvelope(t, MustMasterKey(t), newMemStore(), 0, 0)
	for _, op := range []struct {
		name string
		run  func() error
	}{
		{"Seal", func() error { _, err := e.Seal(ctx, refA, []byte("v"), nil); return err }},
		{"Open", func() error {
			_, err := e.Open(ctx, refA, make(domain.Sealed, MinSealedLen), nil)
			return err
		}},
	} {
		err := op.run()
		wantKind(t, op.name, err, domain.ErrNotFound)
		if !strings.Contains(err.Error(), refA) {
			t.Errorf("%s: error %q does not name the ref", op.name, err)
		}
	}
	if n := len(e.keys); n != 0 {
		t.Errorf("unknown refs left %d cache entries", n)
	}
}

func TestInvalidArguments(t *testing.T) {
	store := newMemStore()
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := New(make([]byte, n), store); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("New with a %d-byte master key: %v, want ErrInvalidArgument", n, err)
		}
	}
	if _, err := New(make([]byte, 32), nil); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("New without a store: %v, want ErrInvalidArgument", err)
	}
	e := MustEnvelope(t, MustMasterKey(t), store, 0, 0)
	for _, ref := range []string{"", strings.Repeat("r", maxRefLen+1)} {
		wantKind(t, "CreateDataKey", e.CreateDataKey(ctx, ref), domain.ErrInvalidArgument)
		wantKind(t, "DestroyDataKey", e.DestroyDataKey(ctx, ref), domain.ErrInvalidArgument)
		_, err := e.Seal(ctx, ref, nil, nil)
		wantKind(t, "Seal", err, domain.ErrInvalidArgument)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.Seal(canceled, refA, nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Seal with a canceled context: %v", err)
	}
}

func TestStoreFailures(t *testing.T) {
	master := MustMasterKey(t)
	store := newMemStore()
	e := MustEnvelope(t, master, store, 3, 1) // every seal needs a write

	store.setFailPut(errStoreDown)
	err := e.CreateDataKey(ctx, refA)
	wantKind(t, "CreateDataKey with the store down", err, domain.ErrUnavailable)
	if !errors.Is(err, errStoreDown) {
		t.Errorf("CreateDataKey error %v does not wrap the store's", err)
	}
	if e.cached(refA) != nil {
		t.Fatalf("a key that was never stored is cached")
	}

	store.setFailPut(nil)
	MustCreate(t, e, refA)
	MustSeal(t, e, refA, nil, nil)
	store.setFailPut(errStoreDown)
	_, err = e.Seal(ctx, refA, nil, nil)
	wantKind(t, "Seal needing a reservation with the store down", err, domain.ErrUnavailable)
	store.setFailPut(nil)
	s := MustSeal(t, e, refA, []byte("after"), nil)
	if _, used := usage(t, e, refA); used != 2 {
		t.Errorf("use count %d after one failed and two good seals, want 2", used)
	}
	MustOpenEqual(t, MustEnvelope(t, master, store, 3, 1), refA, s, nil, []byte("after"))

	store.failDel = fmt.Errorf("%w: disk on fire", domain.ErrUnavailable)
	err = e.DestroyDataKey(ctx, refA)
	wantKind(t, "DestroyDataKey with the store down", err, domain.ErrUnavailable)
	if strings.Count(err.Error(), "unavailable") != 1 {
		t.Errorf("error %q marks unavailability twice", err)
	}
}

// TestErrorsCarryNoSecrets checks the failure paths' messages for the
// plaintext, the sealed bytes and the master key, in every usual encoding.
func TestErrorsCarryNoSecrets(t *testing.T) {
	master := MustMasterKey(t)
	store := newMemStore()
	e := MustEnvelope(t, master, store, 0, 0)
	MustCreate(t, e, refA)
	pt := []byte("SUPERSECRETPLAINTEXT")
	s := MustSeal(t, e, refA, pt, nil)
	forms := func(b []byte) []string {
		return []string{string(b), hex.EncodeToString(b), base64.StdEncoding.EncodeToString(b),
			base64.RawURLEncoding.EncodeToString(b), fmt.Sprint(b), fmt.Sprintf("%x", b), fmt.Sprintf("%q", b)}
	}
	var secrets []string
	for _, b := range [][]byte{pt, s, s[headerLen:], master} {
		secrets = append(secrets, forms(b)...)
	}
	flipped := bytes.Clone(s)
	flipped[len(flipped)-1] ^= 1
	var errs []error
	_, err := e.Open(ctx, refA, flipped, nil)
	errs = append(errs, err)
	_, err = e.Open(ctx, refA, s, []byte("other"))
	errs = append(errs, err)
	_, err = e.Open(ctx, refA, s[:len(s)-20], nil)
	errs = append(errs, err)
	_, err = MustEnvelope(t, MustMasterKey(t), store, 0, 0).Open(ctx, refA, s, nil)
	errs = append(errs, err)
	store.dropCheck() // a store written before checks: the record is tried
	_, err = MustEnvelope(t, MustMasterKey(t), store, 0, 0).Open(ctx, refA, s, nil)
	errs = append(errs, err)
	_, err = New(master[:31], store)
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Fatalf("case %d: no error", i)
		}
		for j, sec := range secrets {
			if strings.Contains(err.Error(), sec) {
				t.Errorf("case %d: error message contains secret form %d", i, j)
			}
		}
	}
}

// TestConcurrentUse: workers seal and open under three refs at once,
// through two envelopes on one store (two nodes, racing to reserve seals
// and to rotate), while a fourth ref is created and destroyed over and
// over: every value opens afterwards, and no DEK version seals more than
// RotateAfter values.
func TestConcurrentUse(t *testing.T) {
	master := MustMasterKey(t)
	store := newMemStore()
	e := MustEnvelope(t, master, store, 50, 7)
	nodes := []*Envelope{e, MustEnvelope(t, master, store, 50, 7)}
	refs := []string{refA, refB, "kms_third"}
	for _, r := range refs {
		MustCreate(t, e, r)
	}
	const workers, perWorker = 8, 200
	type sealedValue struct {
		ref    string
		sealed domain.Sealed
		pt     []byte
	}
	results := make([][]sealedValue, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				ref := refs[(w+i)%len(refs)]
				pt := []byte(fmt.Sprintf("w%d-i%d", w, i))
				s, err := nodes[w%2].Seal(ctx, ref, pt, []byte(ref))
				if err != nil {
					t.Errorf("Seal: %v", err)
					return
				}
				got, err := nodes[(w+i)%2].Open(ctx, ref, s, []byte(ref))
				if err != nil || !bytes.Equal(got, pt) {
					t.Errorf("Open right after Seal: %v (equal %v)", err, bytes.Equal(got, pt))
					return
				}
				results[w] = append(results[w], sealedValue{ref, s, pt})
			}
		})
	}
	// Meanwhile, create and destroy another ref over and over.
	wg.Go(func() {
		for range 100 {
			if err := e.CreateDataKey(ctx, "kms_churn"); err != nil {
				t.Errorf("CreateDataKey: %v", err)
			}
			if _, err := e.Seal(ctx, "kms_churn", []byte("c"), nil); err != nil && !errors.Is(err, domain.ErrNotFound) {
				t.Errorf("Seal during churn: %v", err)
			}
			if err := e.DestroyDataKey(ctx, "kms_churn"); err != nil {
				t.Errorf("DestroyDataKey: %v", err)
			}
		}
	})
	wg.Wait()

	perVersion := map[string]map[uint32]int{}
	fresh := MustEnvelope(t, master, store, 50, 7)
	for _, rs := range results {
		for _, r := range rs {
			if perVersion[r.ref] == nil {
				perVersion[r.ref] = map[uint32]int{}
			}
			perVersion[r.ref][versionOf(r.sealed)]++
			MustOpenEqual(t, fresh, r.ref, r.sealed, []byte(r.ref), r.pt)
		}
	}
	for ref, vs := range perVersion {
		for v, n := range vs {
			if n > 50 {
				t.Errorf("%s version %d sealed %d values, limit 50", ref, v, n)
			}
		}
	}
	if _, ok := store.raw("kms_churn"); ok {
		t.Errorf("the churned ref's record survived its last destruction")
	}
}

// BenchmarkSealOpen measures Seal and Open of a 32-byte value (key
// material) against raw AES-256-GCM with random nonces on the same bytes,
// for an envelope that is its store's only user and for one on a lease
// (a node sharing its store: each use checks the lease's clock).
func BenchmarkSealOpen(b *testing.B) {
	pt := bytes.Repeat([]byte{1}, 32)
	aad := domain.AssociatedData("acct_x", "kms-x", domain.EventID{1})
	b.Run("RawAESGCM", func(b *testing.B) {
		aead, err := newAEAD(bytes.Repeat([]byte{2}, dekLen))
		if err != nil {
			b.Fatal(err)
		}
		header := []byte{sealFormat, 0, 0, 0, 1}
		s := aead.Seal(nil, nil, pt, additionalData(header, aad))
		b.Run("Seal", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					out := make([]byte, headerLen, headerLen+nonceLen+len(pt)+tagLen)
					copy(out, header)
					_ = aead.Seal(out, nil, pt, additionalData(header, aad))
				}
			})
		})
		b.Run("Open", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := aead.Open(nil, nil, s, additionalData(header, aad)); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	})
	for _, lease := range []time.Duration{0, time.Hour} {
		name := "OneUser"
		if lease > 0 {
			name = "Lease"
		}
		b.Run(name, func(b *testing.B) {
			store := newMemStore()
			e := MustEnvelope(b, MustMasterKey(b), store, 0, 0)
			e.Lease = lease
			MustCreate(b, e, refA)
			s := MustSeal(b, e, refA, pt, aad)
			for _, op := range []struct {
				name string
				run  func() error
			}{
				{"Seal", func() error { _, err := e.Seal(ctx, refA, pt, aad); return err }},
				{"Open", func() error { _, err := e.Open(ctx, refA, s, aad); return err }},
			} {
				b.Run(op.name, func(b *testing.B) {
					gets := store.getCount()
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := op.run(); err != nil {
								b.Fatal(err)
							}
						}
					})
					b.ReportMetric(float64(store.getCount()-gets)/float64(b.N), "store-reads/op")
				})
			}
		})
	}
}
