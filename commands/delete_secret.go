package commands

import (
	"context"

	"github.com/kmsbackup/kmsbackup/domain"
)

// DeleteSecret deletes a secret with all its versions.
func (s *KMS) DeleteSecret(ctx context.Context, c Caller, name, region string) error {
	const op = "delete secret"
	return s.decide(ctx, op, func() error {
		in, sec, unlock, err := s.lockSecret(ctx, c, op, name, region)
		if err != nil {
			return err
		}
		defer unlock()
		d, err := in.DeleteSecret(sec)
		if err != nil {
			return err
		}
		return s.commitDeleted(ctx, in, domain.NameKindSecret, sec.Name, s.newEvent(s.IDs.NewULID(), in, d))
	})
}
