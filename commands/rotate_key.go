package commands

import (
	"context"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// RotateKey adds a new version to a key and makes it primary. Older versions
// stay, so older ciphertexts still decrypt. region chooses among keys with
// the same ID in several regions (empty when there is one).
func (s *KMS) RotateKey(ctx context.Context, c Caller, id domain.KeyID, region string) (*domain.Key, error) {
	const op = "rotate key"
	var inst domain.InstanceID
	err := s.decide(ctx, op, func() error {
		in, k, unlock, err := s.lockKey(ctx, c, op, id, region)
		if err != nil {
			return err
		}
		defer unlock()
		inst = k.Instance
		eid := s.IDs.NewULID()
		sealed, err := s.sealMaterial(ctx, in, eid)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		d, err := in.RotateKey(k, sealed)
		if err != nil {
			return err
		}
		e := s.newEvent(eid, in, d)
		return s.commit(ctx, e.Stream, domain.ExpectRevision(in.Revision), e)
	})
	if err != nil {
		return nil, err
	}
	return kmsstate.GetKey(s.State, inst, id)
}
