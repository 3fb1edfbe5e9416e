package commands

import (
	"context"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// CreateInstanceInput is what a new KMS instance needs. Zero quotas take the
// defaults.
type CreateInstanceInput struct {
	Region      string
	KeyQuota    uint32
	SecretQuota uint32
}

// CreateInstance creates a KMS instance in a region of the caller's account,
// with its own data key.
func (s *KMS) CreateInstance(ctx context.Context, c Caller, in CreateInstanceInput) (*domain.Instance, error) {
	const op = "create instance"
	if err := requireAccount(c, op); err != nil {
		return nil, err
	}
	if in.KeyQuota == 0 {
		in.KeyQuota = domain.DefaultKeyQuota
	}
	if in.SecretQuota == 0 {
		in.SecretQuota = domain.DefaultSecretQuota
	}
	id := domain.NewInstanceID(s.IDs.NewULID())
	d, err := domain.NewInstance(id, in.Region, in.KeyQuota, in.SecretQuota)
	if err != nil {
		return nil, err
	}
	if err := s.DataKeys.CreateDataKey(ctx, string(id)); err != nil {
		return nil, fmt.Errorf("%s: create data key: %w", op, err)
	}
	inst := &domain.Instance{ID: id, Account: c.Account, Region: in.Region}
	e := s.newEvent(s.IDs.NewULID(), inst, d)
	if err := s.commit(ctx, e.Stream, domain.ExpectNoStream, e); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	created, err := kmsstate.GetInstance(s.State, id)
	if err != nil {
		return nil, err
	}
	if s.AfterCreate != nil {
		if err := s.AfterCreate(ctx, created); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	return created, nil
}
