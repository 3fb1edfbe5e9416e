package commands

import (
	"context"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Decrypt decrypts a ciphertext made by Encrypt. The key and version are
// read from the ciphertext itself; region chooses when a key with that ID
// lives in several regions (after a cross-region restore).
func (s *KMS) Decrypt(ctx context.Context, c Caller, ciphertext, region string) (domain.Plaintext, domain.Ciphertext, error) {
	const op = "decrypt"
	ct, err := domain.ParseCiphertext(ciphertext)
	if err != nil {
		return nil, domain.Ciphertext{}, err
	}
	k, err := s.findKey(c, op, ct.Key, region)
	if err != nil {
		return nil, domain.Ciphertext{}, err
	}
	pt, err := s.decryptWith(ctx, k, ct, "")
	return pt, ct, err
}
