package commands

import (
	"context"
	"errors"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// SecretValue is one version of a secret in the clear.
type SecretValue struct {
	Secret  *domain.Secret
	Version domain.SecretVersion
	Value   domain.Plaintext
}

// GetSecretValue decrypts one version of a secret (0: the current one).
func (s *KMS) GetSecretValue(ctx context.Context, c Caller, name, region string, version uint32) (SecretValue, error) {
	const op = "get secret"
	sec, err := s.findSecret(c, op, name, region)
	if err != nil {
		return SecretValue{}, err
	}
	v := sec.Current()
	if version != 0 {
		if int(version) > len(sec.Versions) {
			return SecretValue{}, domain.Errorf(domain.ErrNotFound, op, name, "", "secret has no version %d (it has %d)", version, len(sec.Versions))
		}
		v = sec.Versions[version-1]
	}
	ct, err := domain.ParseCiphertext(string(v.Value))
	if err != nil {
		return SecretValue{}, domain.Corruption("secret %s version %d: stored value is not a ciphertext", name, v.Version)
	}
	key, err := kmsstate.GetKey(s.State, sec.Instance, ct.Key)
	if errors.Is(err, domain.ErrNotFound) {
		return SecretValue{}, domain.Errorf(domain.ErrFailedPrecondition, op, name, "restore the key first", "encryption key %s is no longer live", ct.Key)
	}
	if err != nil {
		return SecretValue{}, err
	}
	pt, err := s.decryptWith(ctx, key, ct, secretContext(name, v.Version))
	if err != nil {
		return SecretValue{}, err
	}
	return SecretValue{Secret: sec, Version: v, Value: pt}, nil
}
