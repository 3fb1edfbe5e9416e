package softkms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// KeySize is the length of key material in bytes (AES-256).
const KeySize = 32

// Overhead is how many bytes Encrypt adds to a plaintext: a 12-byte nonce
// and a 16-byte tag.
const Overhead = 12 + 16

// Cipher is the software KMS's data plane: AES-256-GCM under one version of
// a key's material. The zero value is ready to use; it holds no state, so it
// is safe for concurrent use.
//
// Nonces are random, so one key version should encrypt fewer than about 2^32
// messages; callers rotate keys well before that.
type Cipher struct{}

var _ commands.DataCipher = (*Cipher)(nil)

// NewKeyMaterial returns 32 fresh bytes from crypto/rand. The caller wipes
// them once sealed.
func (Cipher) NewKeyMaterial() (domain.Plaintext, error) {
	m := make(domain.Plaintext, KeySize)
	if _, err := rand.Read(m); err != nil {
		return nil, fmt.Errorf("softkms: new key material: %w", err)
	}
	return m, nil
}

// Encrypt seals plaintext under material, bound to aad, and returns
// nonce(12) || ciphertext || tag(16). Errors: domain.ErrInvalidArgument for
// material that is not 32 bytes.
func (Cipher) Encrypt(material domain.Plaintext, plaintext, aad []byte) ([]byte, error) {
	aead, err := newAEAD("softkms: encrypt", material)
	if err != nil {
		return nil, err
	}
	return aead.Seal(make([]byte, 0, len(plaintext)+Overhead), nil, plaintext, aad), nil
}

// Decrypt reverses Encrypt. Errors: domain.ErrCorrupt when sealed does not
// authenticate under material and aad (tampered, truncated, another key or
// other aad); domain.ErrInvalidArgument for material that is not 32 bytes.
func (Cipher) Decrypt(material domain.Plaintext, sealed, aad []byte) ([]byte, error) {
	const op = "softkms: decrypt"
	aead, err := newAEAD(op, material)
	if err != nil {
		return nil, err
	}
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%s: %w", op,
			domain.Corruption("ciphertext is truncated (%d bytes, at least %d expected)", len(sealed), Overhead))
	}
	pt, err := aead.Open(nil, nil, sealed, aad)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op,
			domain.Corruption("ciphertext does not authenticate (tampered, truncated, another key, or other associated data)"))
	}
	return pt, nil
}

// newAEAD returns AES-256-GCM under material with random 96-bit nonces: Seal
// draws the nonce (from the generator behind crypto/rand) and prepends it,
// Open reads it back, so no caller can reuse one.
func newAEAD(op string, material domain.Plaintext) (cipher.AEAD, error) {
	if len(material) != KeySize {
		return nil, domain.Invalid(op, "key material is %d bytes, want %d", len(material), KeySize)
	}
	block, err := aes.NewCipher(material)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return aead, nil
}
