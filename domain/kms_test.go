package domain_test

import (
	"errors"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/domain"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func id(n byte) ulid.ULID {
	var u ulid.ULID
	u[0], u[15] = 1, n
	return u
}

// instanceWith builds an instance by applying events, as the read model does.
func instanceWith(t *testing.T, keyQuota, secretQuota uint32, events ...domain.EventData) *domain.Instance {
	t.Helper()
	in := &domain.Instance{}
	all := append([]domain.EventData{&domain.InstanceCreated{Instance: domain.NewInstanceID(id(1)), Region: "cn-hangzhou",
		KeyQuota: keyQuota, SecretQuota: secretQuota}}, events...)
	for i, d := range all {
		in.Apply(domain.Event{Revision: uint64(i), Account: domain.NewAccountID(id(9)), OccurredAt: t0}, d)
	}
	return in
}

func TestInstanceRules(t *testing.T) {
	kid := domain.NewKeyID(id(2))
	own := &domain.Key{ID: kid, Instance: domain.NewInstanceID(id(1)), Versions: []domain.KeyVersion{{Version: 1}}}
	foreign := &domain.Key{ID: kid, Instance: domain.NewInstanceID(id(3)), Versions: []domain.KeyVersion{{Version: 1}}}
	released := instanceWith(t, 2, 2, &domain.InstanceReleased{})
	full := instanceWith(t, 1, 1, &domain.KeyCreated{Key: kid}, &domain.SecretCreated{Name: "db"})
	fresh := instanceWith(t, 2, 2)
	sec := &domain.Secret{Name: "db", Instance: fresh.ID, Key: kid, Versions: []domain.SecretVersion{{Version: 1}}}

	cases := []struct {
		name string
		when func() (domain.EventData, error)
		want error // nil: the decision is accepted
	}{
		{"create key", func() (domain.EventData, error) { return fresh.CreateKey(kid, "d", nil, false) }, nil},
		{"create key over quota", func() (domain.EventData, error) { return full.CreateKey(kid, "", nil, false) }, domain.ErrQuotaExceeded},
		{"create key ID taken in region", func() (domain.EventData, error) { return fresh.CreateKey(kid, "", nil, true) }, domain.ErrAlreadyExists},
		{"create key in released instance", func() (domain.EventData, error) { return released.CreateKey(kid, "", nil, false) }, domain.ErrFailedPrecondition},
		{"create key with invalid description", func() (domain.EventData, error) { return fresh.CreateKey(kid, "\xff", nil, false) }, domain.ErrInvalidArgument},
		{"rotate own key", func() (domain.EventData, error) { return fresh.RotateKey(own, nil) }, nil},
		{"rotate another instance's key", func() (domain.EventData, error) { return fresh.RotateKey(foreign, nil) }, domain.ErrNotFound},
		{"delete key in use", func() (domain.EventData, error) { return fresh.DeleteKey(own, 1) }, domain.ErrFailedPrecondition},
		{"delete key", func() (domain.EventData, error) { return fresh.DeleteKey(own, 0) }, nil},
		{"create secret", func() (domain.EventData, error) { return fresh.CreateSecret("db", own, []byte("ct"), false) }, nil},
		{"create secret with bad name", func() (domain.EventData, error) { return fresh.CreateSecret("a/b", own, nil, false) }, domain.ErrInvalidArgument},
		{"create secret without key", func() (domain.EventData, error) { return fresh.CreateSecret("db", nil, nil, false) }, domain.ErrNotFound},
		{"create secret under another instance's key", func() (domain.EventData, error) { return fresh.CreateSecret("db", foreign, nil, false) }, domain.ErrFailedPrecondition},
		{"create secret name taken in region", func() (domain.EventData, error) { return fresh.CreateSecret("db", own, nil, true) }, domain.ErrAlreadyExists},
		{"create secret over quota", func() (domain.EventData, error) { return full.CreateSecret("db2", own, nil, false) }, domain.ErrQuotaExceeded},
		{"rotate secret", func() (domain.EventData, error) { return fresh.RotateSecret(sec, own, nil) }, nil},
		{"rotate secret whose key is gone", func() (domain.EventData, error) { return fresh.RotateSecret(sec, nil, nil) }, domain.ErrFailedPrecondition},
		{"release", func() (domain.EventData, error) { return fresh.Release() }, nil},
		{"release twice", func() (domain.EventData, error) { return released.Release() }, domain.ErrFailedPrecondition},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := c.when()
			if c.want == nil {
				if err != nil || d == nil {
					t.Fatalf("want accepted, got %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("want %v, got %v", c.want, err)
			}
		})
	}
}

func TestInstanceCountsFollowEvents(t *testing.T) {
	in := instanceWith(t, 5, 5, &domain.KeyCreated{}, &domain.KeyCreated{}, &domain.KeyDeleted{},
		&domain.SecretCreated{}, &domain.KeyRotated{})
	if in.LiveKeys != 1 || in.LiveSecrets != 1 || in.Revision != 5 {
		t.Fatalf("got keys=%d secrets=%d revision=%d, want 1 1 5", in.LiveKeys, in.LiveSecrets, in.Revision)
	}
}

func TestNewInstanceValidates(t *testing.T) {
	for _, c := range []struct {
		region   string
		kq, sq   uint32
		wantFail bool
	}{
		{"cn-hangzhou", 1, 1, false},
		{"CN", 1, 1, true},
		{"", 1, 1, true},
		{"eu-central-1", 0, 1, true},
		{"eu-central-1", 1, domain.MaxQuota + 1, true},
	} {
		_, err := domain.NewInstance(domain.NewInstanceID(id(1)), c.region, c.kq, c.sq)
		if (err != nil) != c.wantFail || (err != nil && !errors.Is(err, domain.ErrInvalidArgument)) {
			t.Errorf("NewInstance(%q, %d, %d) = %v, want failure %v", c.region, c.kq, c.sq, err, c.wantFail)
		}
	}
}
