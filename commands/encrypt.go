package commands

import (
	"context"

	"github.com/kmsbackup/kmsbackup/domain"
)

// MaxPlaintext is the largest plaintext Encrypt accepts.
const MaxPlaintext = 64 << 10

// Encrypt encrypts plaintext under the primary version of a key. The
// ciphertext names the key and the version.
func (s *KMS) Encrypt(ctx context.Context, c Caller, id domain.KeyID, region string, plaintext domain.Plaintext) (domain.Ciphertext, error) {
	const op = "encrypt"
	if len(plaintext) == 0 || len(plaintext) > MaxPlaintext {
		return domain.Ciphertext{}, domain.Invalid(op, "plaintext must be 1 to %d bytes, got %d", MaxPlaintext, len(plaintext))
	}
	k, err := s.findKey(c, op, id, region)
	if err != nil {
		return domain.Ciphertext{}, err
	}
	return s.encryptUnder(ctx, k, plaintext, "")
}
