package softkms

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
)

// MustMaterial returns fresh key material.
func MustMaterial(tb testing.TB) domain.Plaintext {
	tb.Helper()
	m, err := Cipher{}.NewKeyMaterial()
	if err != nil {
		tb.Fatalf("NewKeyMaterial: %v", err)
	}
	return m
}

// MustEncrypt encrypts under m.
func MustEncrypt(tb testing.TB, m domain.Plaintext, pt, aad []byte) []byte {
	tb.Helper()
	s, err := Cipher{}.Encrypt(m, pt, aad)
	if err != nil {
		tb.Fatalf("Encrypt: %v", err)
	}
	return s
}

func TestNewKeyMaterial(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		m := MustMaterial(t)
		if len(m) != KeySize {
			t.Fatalf("key material is %d bytes, want %d", len(m), KeySize)
		}
		if seen[string(m)] {
			t.Fatalf("NewKeyMaterial repeated itself")
		}
		seen[string(m)] = true
		if s := fmt.Sprintf("%v %s %x", m, m, m); strings.Contains(s, hex.EncodeToString(m)) {
			t.Fatalf("formatted key material is not redacted")
		}
	}
}

func TestRoundTrip(t *testing.T) {
	m := MustMaterial(t)
	aad := domain.CiphertextAAD("key_01J9ZQ3V8K2M4N6P8R0T2V4X6Z", 3, "secret\x00db\x001")
	tests := []struct {
		name    string
		pt, aad []byte
	}{
		{"empty", nil, nil},
		{"empty with aad", nil, aad},
		{"short", []byte("hello"), aad},
		{"max secret", bytes.Repeat([]byte{0x5a}, domain.MaxSecretValue), aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := MustEncrypt(t, m, tt.pt, tt.aad)
			if len(s) != len(tt.pt)+Overhead {
				t.Errorf("sealed is %d bytes, want %d", len(s), len(tt.pt)+Overhead)
			}
			got, err := Cipher{}.Decrypt(m, s, tt.aad)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if !bytes.Equal(got, tt.pt) {
				t.Fatalf("Decrypt gave %d bytes that differ from the %d encrypted", len(got), len(tt.pt))
			}
			if again := MustEncrypt(t, m, tt.pt, tt.aad); bytes.Equal(again, s) {
				t.Errorf("two encryptions are identical: nonces are not fresh")
			}
		})
	}
}

func TestDecryptRejects(t *testing.T) {
	m := MustMaterial(t)
	aad := []byte("aad")
	s := MustEncrypt(t, m, []byte("value"), aad)
	flipped := bytes.Clone(s)
	flipped[len(flipped)/2] ^= 1
	tests := []struct {
		name     string
		material domain.Plaintext
		sealed   []byte
		aad      []byte
	}{
		{"other key", MustMaterial(t), s, aad},
		{"other aad", m, s, []byte("aaD")},
		{"no aad", m, s, nil},
		{"flipped byte", m, flipped, aad},
		{"truncated tag", m, s[:len(s)-1], aad},
		{"extended", m, append(bytes.Clone(s), 0), aad},
		{"nonce only", m, s[:12], aad},
		{"empty", m, nil, aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := Cipher{}.Decrypt(tt.material, tt.sealed, tt.aad)
			if !errors.Is(err, domain.ErrCorrupt) || pt != nil {
				t.Fatalf("Decrypt gave %d bytes and error %v, want ErrCorrupt", len(pt), err)
			}
		})
	}
}

func TestDecryptRejectsEveryByteFlip(t *testing.T) {
	m := MustMaterial(t)
	s := MustEncrypt(t, m, []byte("tamper"), []byte("aad"))
	for i := range s {
		for x := 1; x < 256; x++ {
			bad := bytes.Clone(s)
			bad[i] ^= byte(x)
			if pt, err := (Cipher{}).Decrypt(m, bad, []byte("aad")); !errors.Is(err, domain.ErrCorrupt) || pt != nil {
				t.Fatalf("byte %d xor %#02x: %d bytes, error %v; want ErrCorrupt", i, x, len(pt), err)
			}
		}
	}
	for n := range len(s) {
		if _, err := (Cipher{}).Decrypt(m, s[:n], []byte("aad")); !errors.Is(err, domain.ErrCorrupt) {
			t.Fatalf("first %d of %d bytes: error %v, want ErrCorrupt", n, len(s), err)
		}
	}
}

func TestWrongMaterialLength(t *testing.T) {
	s := MustEncrypt(t, MustMaterial(t), []byte("v"), nil)
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		m := make(domain.Plaintext, n)
		if _, err := (Cipher{}).Encrypt(m, []byte("v"), nil); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("Encrypt with %d-byte material: %v, want ErrInvalidArgument", n, err)
		}
		if _, err := (Cipher{}).Decrypt(m, s, nil); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("Decrypt with %d-byte material: %v, want ErrInvalidArgument", n, err)
		}
	}
}

func TestErrorsCarryNoSecrets(t *testing.T) {
	m := MustMaterial(t)
	pt := []byte("SUPERSECRETPLAINTEXT")
	s := MustEncrypt(t, m, pt, nil)
	var errs []error
	_, err := Cipher{}.Decrypt(m, s, []byte("x"))
	errs = append(errs, err)
	_, err = Cipher{}.Decrypt(MustMaterial(t), s, nil)
	errs = append(errs, err)
	_, err = Cipher{}.Encrypt(m[:31], pt, nil)
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Fatalf("case %d: no error", i)
		}
		for _, b := range [][]byte{pt, s, m, m[:31]} {
			for _, form := range []string{string(b), hex.EncodeToString(b), fmt.Sprint([]byte(b))} {
				if strings.Contains(err.Error(), form) {
					t.Errorf("case %d: error message holds secret bytes", i)
				}
			}
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	var c Cipher
	m := MustMaterial(t)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				pt := []byte(fmt.Sprintf("%d/%d", w, i))
				s, err := c.Encrypt(m, pt, pt)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := c.Decrypt(m, s, pt)
				if err != nil || !bytes.Equal(got, pt) {
					t.Errorf("round trip failed: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}
