package commands

import (
	"context"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// DeleteKey deletes a key with all its versions. A key that still encrypts
// live secrets is refused: delete those first.
func (s *KMS) DeleteKey(ctx context.Context, c Caller, id domain.KeyID, region string) error {
	const op = "delete key"
	return s.decide(ctx, func() error {
		k, err := s.findKey(c, op, id, region)
		if err != nil {
			return err
		}
		in, err := kmsstate.GetInstance(s.State, k.Instance)
		if err != nil {
			return err
		}
		using, err := kmsstate.SecretsUsingKey(s.State, in.ID, k.ID)
		if err != nil {
			return err
		}
		d, err := in.DeleteKey(k, using)
		if err != nil {
			return err
		}
		e := s.newEvent(s.IDs.NewULID(), in, d)
		return s.commit(ctx, e.Stream, domain.ExpectRevision(in.Revision), e)
	})
}
