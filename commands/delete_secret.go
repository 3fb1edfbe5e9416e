package commands

import (
	"context"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// DeleteSecret deletes a secret with all its versions.
func (s *KMS) DeleteSecret(ctx context.Context, c Caller, name, region string) error {
	const op = "delete secret"
	return s.decide(ctx, func() error {
		sec, err := s.findSecret(c, op, name, region)
		if err != nil {
			return err
		}
		in, err := kmsstate.GetInstance(s.State, sec.Instance)
		if err != nil {
			return err
		}
		d, err := in.DeleteSecret(sec)
		if err != nil {
			return err
		}
		e := s.newEvent(s.IDs.NewULID(), in, d)
		return s.commit(ctx, e.Stream, domain.ExpectRevision(in.Revision), e)
	})
}
