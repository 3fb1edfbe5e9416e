package commands

import (
	"context"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// ReleaseInstance releases a KMS instance: its keys and secrets leave the
// region (their IDs and names become free) and its data key is destroyed, so
// nothing it sealed can be read again from the live KMS. Backups keep their
// own copies under their own keys.
func (s *KMS) ReleaseInstance(ctx context.Context, c Caller, id domain.InstanceID) (*domain.Instance, error) {
	const op = "release instance"
	err := s.decide(ctx, op, func() error {
		if _, err := s.instance(c, op, id); err != nil {
			return err
		}
		in, unlock, err := s.lockStream(ctx, id, "")
		if err != nil {
			return err
		}
		defer unlock()
		d, err := in.Release()
		if err != nil {
			if in.Released {
				// A retry after a crash between the event and the shredding
				// finishes what came after the event, in the same order.
				if derr := s.shred(ctx, in); derr != nil {
					return fmt.Errorf("%s: %w", op, derr)
				}
			}
			return err
		}
		e := s.newEvent(s.IDs.NewULID(), in, d)
		return s.commit(ctx, e.Stream, domain.ExpectRevision(in.Revision), e)
	})
	if err != nil {
		return nil, err
	}
	released, err := kmsstate.GetInstance(s.State, id)
	if err != nil {
		return nil, err
	}
	if err := s.shred(ctx, released); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return released, nil
}

// shred runs BeforeShred (the bound backup's last checkpoint and the record
// of the release), then destroys the released instance's data key.
func (s *KMS) shred(ctx context.Context, in *domain.Instance) error {
	if s.BeforeShred != nil {
		if err := s.BeforeShred(ctx, in); err != nil {
			return fmt.Errorf("last backup before destroying the data key: %w", err)
		}
	}
	if err := s.DataKeys.DestroyDataKey(ctx, string(in.ID)); err != nil {
		return fmt.Errorf("destroy data key: %w", err)
	}
	return nil
}
