package commands

import (
	"context"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// CreateKey creates an AES-256 key (version 1) in a KMS instance. Its
// material is generated here and sealed under the instance's data key before
// it enters the event.
func (s *KMS) CreateKey(ctx context.Context, c Caller, instance domain.InstanceID, description string) (*domain.Key, error) {
	const op = "create key"
	description, err := domain.CleanDescription(description)
	if err != nil {
		return nil, err
	}
	keyID := domain.NewKeyID(s.IDs.NewULID())
	err = s.decide(ctx, op, func() error {
		in, err := s.instance(c, op, instance)
		if err != nil {
			return err
		}
		in, unlock, err := s.lockStream(ctx, in.ID, regionItem(in, "key", string(keyID)))
		if err != nil {
			return err
		}
		defer unlock()
		taken, err := kmsstate.RegionHasKey(s.State, in.Account, in.Region, keyID)
		if err != nil {
			return err
		}
		hold, err := s.readHold(ctx, in, domain.NameKindKey, string(keyID))
		if err != nil {
			return err
		}
		taken = taken || hold.taken()
		eid := s.IDs.NewULID()
		sealed, err := s.sealMaterial(ctx, in, eid)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		d, err := in.CreateKey(keyID, description, sealed, taken)
		if err != nil {
			return err
		}
		e := s.newEvent(eid, in, d)
		claim, err := s.claim(in, hold, e.ID, in.Revision+1)
		if err != nil {
			return err
		}
		return s.commitNamed(ctx, in, []StreamAppend{claim}, e)
	})
	if err != nil {
		return nil, err
	}
	return kmsstate.GetKey(s.State, instance, keyID)
}
