package commands

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// ShowKey returns a live key of the caller's account.
func (s *KMS) ShowKey(c Caller, id domain.KeyID, region string) (*domain.Key, error) {
	return s.findKey(c, "show key", id, region)
}

// ListKeys lists the live keys of one of the caller's instances, a page at
// a time: token is the Next of the previous page ("" for the first).
func (s *KMS) ListKeys(c Caller, instance domain.InstanceID, token string, size int) (kmsstate.Page[*domain.Key], error) {
	if _, err := s.instance(c, "list keys", instance); err != nil {
		return kmsstate.Page[*domain.Key]{}, err
	}
	n, err := pageSize(size)
	if err != nil {
		return kmsstate.Page[*domain.Key]{}, err
	}
	return pageOf(domain.PageScope("keys", string(c.Account), string(instance)), token, func(cursor string) (kmsstate.Page[*domain.Key], error) {
		return kmsstate.ListKeys(s.State, instance, cursor, n)
	})
}
