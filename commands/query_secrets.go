package commands

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// ShowSecret returns a live secret's metadata (never its value).
func (s *KMS) ShowSecret(c Caller, name, region string) (*domain.Secret, error) {
	return s.findSecret(c, "show secret", name, region)
}

// ListSecrets lists the live secrets of one of the caller's instances, a
// page at a time: token is the Next of the previous page ("" for the
// first).
func (s *KMS) ListSecrets(c Caller, instance domain.InstanceID, token string, size int) (kmsstate.Page[*domain.Secret], error) {
	if _, err := s.instance(c, "list secrets", instance); err != nil {
		return kmsstate.Page[*domain.Secret]{}, err
	}
	n, err := pageSize(size)
	if err != nil {
		return kmsstate.Page[*domain.Secret]{}, err
	}
	return pageOf(domain.PageScope("secrets", string(c.Account), string(instance)), token, func(cursor string) (kmsstate.Page[*domain.Secret], error) {
		return kmsstate.ListSecrets(s.State, instance, cursor, n)
	})
}
