package kmsstate

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// recordVersion is the first byte of every record, so the layout can evolve.
const recordVersion = 1

func header(w *wire.Writer) { w.Uvarint(recordVersion) }

func checkHeader(r *wire.Reader, what string) error {
	if v := r.Uvarint(); r.Err() == nil && v != recordVersion {
		return domain.Corruption("%s record: unknown version %d", what, v)
	}
	return nil
}

func done(r *wire.Reader, what string) error {
	if err := r.Done(); err != nil {
		return domain.Corruption("%s record: %v", what, err)
	}
	return nil
}

func encodeInstance(in *domain.Instance) []byte {
	w := wire.Writer{B: make([]byte, 0, 96)}
	header(&w)
	w.String(string(in.ID))
	w.String(string(in.Account))
	w.String(in.Region)
	w.Uvarint(uint64(in.KeyQuota))
	w.Uvarint(uint64(in.SecretQuota))
	w.Uvarint(uint64(in.LiveKeys))
	w.Uvarint(uint64(in.LiveSecrets))
	w.Bool(in.Released)
	w.Time(in.CreatedAt)
	w.Time(in.ReleasedAt)
	w.Uvarint(in.Revision)
	return w.B
}

func decodeInstance(b []byte) (*domain.Instance, error) {
	r := wire.Reader{B: b}
	if err := checkHeader(&r, "instance"); err != nil {
		return nil, err
	}
	in := &domain.Instance{
		ID: domain.InstanceID(r.String()), Account: domain.AccountID(r.String()), Region: r.String(),
		KeyQuota: r.Uint32(), SecretQuota: r.Uint32(), LiveKeys: r.Uint32(), LiveSecrets: r.Uint32(),
		Released: r.Bool(), CreatedAt: r.Time(), ReleasedAt: r.Time(), Revision: r.Uvarint(),
	}
	return in, done(&r, "instance")
}

func encodeKey(k *domain.Key) []byte {
	w := wire.Writer{B: make([]byte, 0, 128+len(k.Versions)*96)}
	header(&w)
	w.String(string(k.ID))
	w.String(string(k.Instance))
	w.String(string(k.Account))
	w.String(k.Region)
	w.String(k.Description)
	w.String(k.Spec)
	w.Time(k.CreatedAt)
	w.Time(k.UpdatedAt)
	w.Uvarint(uint64(len(k.Versions)))
	for _, v := range k.Versions {
		w.Uvarint(uint64(v.Version))
		w.Bytes(v.Material)
		w.Fixed(v.SealedBy[:])
		w.String(v.Stream)
		w.Time(v.CreatedAt)
	}
	return w.B
}

func decodeKey(b []byte) (*domain.Key, error) {
	r := wire.Reader{B: b}
	if err := checkHeader(&r, "key"); err != nil {
		return nil, err
	}
	k := &domain.Key{
		ID: domain.KeyID(r.String()), Instance: domain.InstanceID(r.String()), Account: domain.AccountID(r.String()),
		Region: r.String(), Description: r.String(), Spec: r.String(), CreatedAt: r.Time(), UpdatedAt: r.Time(),
	}
	n := r.Uvarint()
	if n > uint64(len(r.B)) {
		return nil, domain.Corruption("key record: bad version count")
	}
	k.Versions = make([]domain.KeyVersion, n)
	for i := range k.Versions {
		v := &k.Versions[i]
		v.Version = r.Uint32()
		v.Material = r.Bytes()
		r.Fixed(v.SealedBy[:])
		v.Stream = r.String()
		v.CreatedAt = r.Time()
	}
	return k, done(&r, "key")
}

func encodeSecret(s *domain.Secret) []byte {
	w := wire.Writer{B: make([]byte, 0, 128+len(s.Versions)*96)}
	header(&w)
	w.String(s.Name)
	w.String(string(s.Instance))
	w.String(string(s.Account))
	w.String(s.Region)
	w.String(string(s.Key))
	w.Time(s.CreatedAt)
	w.Time(s.UpdatedAt)
	w.Uvarint(uint64(len(s.Versions)))
	for _, v := range s.Versions {
		w.Uvarint(uint64(v.Version))
		w.String(string(v.Key))
		w.Bytes(v.Value)
		w.Time(v.CreatedAt)
	}
	return w.B
}

func decodeSecret(b []byte) (*domain.Secret, error) {
	r := wire.Reader{B: b}
	if err := checkHeader(&r, "secret"); err != nil {
		return nil, err
	}
	s := &domain.Secret{
		Name: r.String(), Instance: domain.InstanceID(r.String()), Account: domain.AccountID(r.String()),
		Region: r.String(), Key: domain.KeyID(r.String()), CreatedAt: r.Time(), UpdatedAt: r.Time(),
	}
	n := r.Uvarint()
	if n > uint64(len(r.B)) {
		return nil, domain.Corruption("secret record: bad version count")
	}
	s.Versions = make([]domain.SecretVersion, n)
	for i := range s.Versions {
		v := &s.Versions[i]
		v.Version = r.Uint32()
		v.Key = domain.KeyID(r.String())
		v.Value = r.Bytes()
		v.CreatedAt = r.Time()
	}
	return s, done(&r, "secret")
}

// Account is an account as the read model keeps it.
type Account struct {
	ID        domain.AccountID
	Name      string
	CreatedAt time.Time
}

func encodeAccount(a *Account) []byte {
	w := wire.Writer{}
	header(&w)
	w.String(string(a.ID))
	w.String(a.Name)
	w.Time(a.CreatedAt)
	return w.B
}

func decodeAccount(b []byte) (*Account, error) {
	r := wire.Reader{B: b}
	if err := checkHeader(&r, "account"); err != nil {
		return nil, err
	}
	a := &Account{ID: domain.AccountID(r.String()), Name: r.String(), CreatedAt: r.Time()}
	return a, done(&r, "account")
}
