package publicevent_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// TestNoPlaintextOnTheStream builds events from random plaintext key
// material and secret values, sealed with AES-256-GCM under a random data key
// as the Sealer would, and checks that the published JSON carries the sealed
// bytes as base64 and nothing else of them: no plaintext and no token hash in
// any encoding, and every byte field decodes to exactly the sealed bytes.
func TestNoPlaintextOnTheStream(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	seal := func(dataKey, plaintext []byte) []byte {
		block, err := aes.NewCipher(dataKey)
		if err != nil {
			t.Fatal(err)
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			t.Fatal(err)
		}
		nonce := random(gcm.NonceSize())
		return gcm.Seal(nonce, nonce, plaintext, []byte("aad"))
	}
	encodings := func(b []byte) map[string]string {
		return map[string]string{
			"raw":        string(b),
			"hex":        hex.EncodeToString(b),
			"base64":     base64.StdEncoding.EncodeToString(b),
			"base64-raw": base64.RawStdEncoding.EncodeToString(b),
			"base64-url": base64.RawURLEncoding.EncodeToString(b),
		}
	}

	s := newSample(t)
	for round := range 50 {
		dataKey := random(32)
		// Secret values of at least 16 bytes: shorter ones could show up in the
		// JSON by chance (one byte in hex is two digits).
		plain := [][]byte{random(32), random(32), random(16 + rng.IntN(200)), random(16 + rng.IntN(200))}
		sealed := make([][]byte, len(plain))
		for i, p := range plain {
			sealed[i] = seal(dataKey, p)
		}
		var hash [32]byte
		copy(hash[:], random(32))

		for _, e := range s.events(t, sealed[0], sealed[1], sealed[2], sealed[3], hash) {
			pub, err := publicevent.FromEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			out := mustMarshal(t, pub)
			secrets := append(append([][]byte{}, plain...), dataKey, hash[:])
			for _, secret := range secrets {
				for name, enc := range encodings(secret) {
					if bytes.Contains(out, []byte(enc)) {
						t.Fatalf("round %d, %s: the JSON contains a secret (%s encoding):\n%s", round, e.Type, name, out)
					}
				}
			}

			// Every byte field of data (top level, or in a restored item's
			// versions) is base64 of exactly one sealed value, and each event
			// carries the ones it should, in order.
			var m struct {
				Data map[string]any `json:"data"`
			}
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatal(err)
			}
			want := map[string][][]byte{
				"KeyCreated": {sealed[0]}, "KeyRotated": {sealed[1]},
				"SecretCreated": {sealed[2]}, "SecretRotated": {sealed[3]},
				"KeyRestored": {sealed[0], sealed[1]}, "SecretRestored": {sealed[2], sealed[3]},
			}[e.Type]
			fields := []map[string]any{m.Data}
			if vs, ok := m.Data["versions"].([]any); ok {
				for _, v := range vs {
					fields = append(fields, v.(map[string]any))
				}
			}
			var found [][]byte
			for _, obj := range fields {
				for field, v := range obj {
					if field != "material_sealed" && field != "value_ciphertext" {
						continue
					}
					got, err := base64.StdEncoding.DecodeString(v.(string))
					if err != nil {
						t.Fatalf("%s.%s is not base64: %v", e.Type, field, err)
					}
					found = append(found, got)
				}
			}
			if len(found) != len(want) {
				t.Fatalf("%s has %d byte fields, want %d: %s", e.Type, len(found), len(want), out)
			}
			for i := range want {
				if !bytes.Equal(found[i], want[i]) {
					t.Fatalf("%s: byte field %d decodes to other bytes than the sealed value", e.Type, i)
				}
			}
		}
	}
}
