package envelope

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
)

// A fixed fixture, so that the committed corpus (testdata/fuzz/FuzzOpen)
// holds values that really open: the record of ref "kms_fuzz" with two DEK
// versions, wrapped under the public test master key 00 01 02 ... 1f, and a
// value sealed under each version. None of this protects anything.
const (
	fuzzRef    = "kms_fuzz"
	fuzzRecord = "0180804002013cf04ddef6f1bb75f05505318d9b15aa28112a654fad44c1fd925d664023a0277b694ceaabca4d2756cf957d80484137375ae44258501bb7b5980d7f44023cb11fb6daf77290cb1adffe11f66ab82b0a6e8df354d4d705be83377c83b4938d3ec605902c8f5d0b440bf58e4eff4c253ca019913d2f55fa3bf1d692"
	// "fuzz plaintext" with aad "fuzz aad", under version 1.
	fuzzSealed1 = "01000000010bdf13af91b3210cc1eba91f270151526444bbdd48dc14c31cce886742807023fd18d6c2f2eea8fc0f96"
	// The empty plaintext with no aad, under version 2.
	fuzzSealed2 = "0100000002a3e6622384dfbbc2f7976c551b0ab6e033cc92eed86e97d0d4191a17"
)

type fuzzValid struct{ sealed, aad, pt []byte }

// MustFuzzFixture returns an Envelope over the fixture and its valid values.
func MustFuzzFixture(tb testing.TB) (*Envelope, []fuzzValid) {
	tb.Helper()
	master := make([]byte, MasterKeySize)
	for i := range master {
		master[i] = byte(i)
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	store := newMemStore()
	store.set(fuzzRef, unhex(fuzzRecord))
	e := MustEnvelope(tb, master, store, 0, 0)
	valid := []fuzzValid{
		{unhex(fuzzSealed1), []byte("fuzz aad"), []byte("fuzz plaintext")},
		{unhex(fuzzSealed2), nil, nil},
	}
	for _, v := range valid {
		MustOpenEqual(tb, e, fuzzRef, v.sealed, v.aad, v.pt)
	}
	return e, valid
}

// FuzzOpen checks that Open never panics, that whatever does not open is
// ErrCorrupt (never garbage), and that nothing but the genuine values opens.
func FuzzOpen(f *testing.F) {
	e, valid := MustFuzzFixture(f)
	for _, v := range valid {
		f.Add(v.sealed, v.aad)
	}
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		pt, err := e.Open(ctx, fuzzRef, domain.Sealed(sealed), aad)
		if err != nil {
			if !errors.Is(err, domain.ErrCorrupt) {
				t.Fatalf("error %v, want ErrCorrupt", err)
			}
			if pt != nil {
				t.Fatalf("Open returned %d bytes along with an error", len(pt))
			}
			if strings.Contains(err.Error(), "fuzz plaintext") {
				t.Fatalf("error message contains the plaintext")
			}
			return
		}
		for _, v := range valid {
			if bytes.Equal(sealed, v.sealed) && bytes.Equal(aad, v.aad) {
				if !bytes.Equal(pt, v.pt) {
					t.Fatalf("a genuine value opened to %d other bytes", len(pt))
				}
				return
			}
		}
		t.Fatalf("a %d-byte input that was never sealed opened (with %d bytes of aad)", len(sealed), len(aad))
	})
}
