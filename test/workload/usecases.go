package workload

import (
	"context"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// UseCases is the Front of one instance through the KMS use cases, in
// process.
type UseCases struct {
	KMS      *commands.KMS
	Caller   commands.Caller
	Instance domain.InstanceID
}

var _ Front = UseCases{}

func keyVersion(k *domain.Key) Version {
	v := k.Primary()
	return Version{Item: string(k.ID), Number: v.Version, Mark: v.SealedBy.String()}
}

func secretVersion(s *domain.Secret) Version {
	v := s.Current()
	return Version{Item: s.Name, Number: v.Version, Mark: v.CreatedAt.String()}
}

// CreateKey creates a key in the instance; its mark is the event that
// sealed its material.
func (f UseCases) CreateKey(ctx context.Context) (Version, error) {
	k, err := f.KMS.CreateKey(ctx, f.Caller, f.Instance, "")
	if err != nil {
		return Version{}, err
	}
	return keyVersion(k), nil
}

// RotateKey rotates a key.
func (f UseCases) RotateKey(ctx context.Context, id string) (Version, error) {
	k, err := f.KMS.RotateKey(ctx, f.Caller, domain.KeyID(id), "")
	if err != nil {
		return Version{}, err
	}
	return keyVersion(k), nil
}

// CreateSecret creates a secret in the instance.
func (f UseCases) CreateSecret(ctx context.Context, name, key string, value []byte) (Version, error) {
	s, err := f.KMS.CreateSecret(ctx, f.Caller, commands.CreateSecretInput{Name: name, Instance: f.Instance, Key: domain.KeyID(key), Value: value})
	if err != nil {
		return Version{}, err
	}
	return secretVersion(s), nil
}

// RotateSecret puts a new value in a secret.
func (f UseCases) RotateSecret(ctx context.Context, name string, value []byte) (Version, error) {
	s, err := f.KMS.RotateSecret(ctx, f.Caller, name, "", value)
	if err != nil {
		return Version{}, err
	}
	return secretVersion(s), nil
}

// KeyVersions reads a key's versions from the read model.
func (f UseCases) KeyVersions(_ context.Context, id string) ([]Version, error) {
	k, err := f.KMS.ShowKey(f.Caller, domain.KeyID(id), "")
	if err != nil {
		return nil, err
	}
	out := make([]Version, len(k.Versions))
	for i, v := range k.Versions {
		out[i] = Version{Item: id, Number: v.Version, Mark: v.SealedBy.String()}
	}
	return out, nil
}

// SecretValue decrypts one version of a secret.
func (f UseCases) SecretValue(ctx context.Context, name string, version uint32) ([]byte, error) {
	v, err := f.KMS.GetSecretValue(ctx, f.Caller, name, "", version)
	if err != nil {
		return nil, err
	}
	defer v.Value.Wipe()
	return append([]byte(nil), v.Value...), nil
}
