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
	return s.decide(ctx, op, func() error {
		in, k, unlock, err := s.lockKey(ctx, c, op, id, region)
		if err != nil {
			return err
		}
		defer unlock()
		using, err := kmsstate.SecretsUsingKey(s.State, in.ID, k.ID)
		if err != nil {
			return err
		}
		d, err := in.DeleteKey(k, using)
		if err != nil {
			return err
		}
		return s.commitDeleted(ctx, in, domain.NameKindKey, string(k.ID), s.newEvent(s.IDs.NewULID(), in, d))
	})
}
