package commands

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// ShowInstance returns one of the caller's KMS instances.
func (s *KMS) ShowInstance(c Caller, id domain.InstanceID) (*domain.Instance, error) {
	return s.instance(c, "show instance", id)
}

// ListInstances lists the caller's KMS instances, released ones included,
// a page at a time: token is the Next of the previous page ("" for the
// first).
func (s *KMS) ListInstances(c Caller, token string, size int) (kmsstate.Page[*domain.Instance], error) {
	if err := requireAccount(c, "list instances"); err != nil {
		return kmsstate.Page[*domain.Instance]{}, err
	}
	n, err := pageSize(size)
	if err != nil {
		return kmsstate.Page[*domain.Instance]{}, err
	}
	return pageOf(domain.PageScope("instances", string(c.Account)), token, func(cursor string) (kmsstate.Page[*domain.Instance], error) {
		return kmsstate.ListInstances(s.State, c.Account, cursor, n)
	})
}
