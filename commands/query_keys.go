package commands

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// ShowKey returns a live key of the caller's account.
func (s *KMS) ShowKey(c Caller, id domain.KeyID, region string) (*domain.Key, error) {
	return s.findKey(c, "show key", id, region)
}

// ListKeys lists the live keys of one of the caller's instances.
func (s *KMS) ListKeys(c Caller, instance domain.InstanceID, cursor string, size int) (kmsstate.Page[*domain.Key], error) {
	if _, err := s.instance(c, "list keys", instance); err != nil {
		return kmsstate.Page[*domain.Key]{}, err
	}
	n, err := pageSize(size)
	if err != nil {
		return kmsstate.Page[*domain.Key]{}, err
	}
	return kmsstate.ListKeys(s.State, instance, cursor, n)
}
