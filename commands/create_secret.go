package commands

import (
	"context"
	"errors"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// MaxSecretValue is the largest secret value accepted.
const MaxSecretValue = 64 << 10

// CreateSecretInput is a new secret: its name (unique in the instance's
// region), its instance, the key of that instance that encrypts it, and its
// first value.
type CreateSecretInput struct {
	Name     string
	Instance domain.InstanceID
	Key      domain.KeyID
	Value    domain.Plaintext
}

func checkValue(op string, v domain.Plaintext) error {
	if len(v) == 0 || len(v) > MaxSecretValue {
		return domain.Invalid(op, "secret value must be 1 to %d bytes, got %d", MaxSecretValue, len(v))
	}
	return nil
}

// CreateSecret creates a secret whose value is encrypted under a live key of
// the same instance.
func (s *KMS) CreateSecret(ctx context.Context, c Caller, in CreateSecretInput) (*domain.Secret, error) {
	const op = "create secret"
	if err := domain.ValidateSecretName(in.Name); err != nil {
		return nil, err
	}
	if _, err := domain.ParseKeyID(string(in.Key)); err != nil {
		return nil, err
	}
	if err := checkValue(op, in.Value); err != nil {
		return nil, err
	}
	err := s.decide(ctx, op, func() error {
		inst, err := s.instance(c, op, in.Instance)
		if err != nil {
			return err
		}
		inst, unlock, err := s.lockStream(ctx, inst.ID, regionItem(inst, "secret", in.Name))
		if err != nil {
			return err
		}
		defer unlock()
		key, err := kmsstate.GetKey(s.State, inst.ID, in.Key)
		if errors.Is(err, domain.ErrNotFound) {
			key, err = s.otherInstanceKey(c, in.Key, inst.Region)
		}
		if err != nil {
			return err
		}
		taken, err := kmsstate.RegionHasSecret(s.State, inst.Account, inst.Region, in.Name)
		if err != nil {
			return err
		}
		hold, err := s.readHold(ctx, inst, domain.NameKindSecret, in.Name)
		if err != nil {
			return err
		}
		taken = taken || hold.taken()
		var value []byte
		if key != nil && key.Instance == inst.ID && !taken {
			ct, err := s.encryptUnder(ctx, key, in.Value, secretContext(in.Name, 1))
			if err != nil {
				return err
			}
			value = []byte(ct.String())
		}
		d, err := inst.CreateSecret(in.Name, key, value, taken)
		if err != nil {
			return err
		}
		e := s.newEvent(s.IDs.NewULID(), inst, d)
		claim, err := s.claim(inst, hold, e.ID, inst.Revision+1)
		if err != nil {
			return err
		}
		return s.commitNamed(ctx, inst, []StreamAppend{claim}, e)
	})
	if err != nil {
		return nil, err
	}
	return kmsstate.GetSecret(s.State, in.Instance, in.Name)
}

// otherInstanceKey finds the key in another instance of the caller's
// account in the same region, so the domain can say it belongs elsewhere;
// nil when it does not exist at all.
func (s *KMS) otherInstanceKey(c Caller, id domain.KeyID, region string) (*domain.Key, error) {
	locs, err := kmsstate.KeyLocations(s.State, c.Account, id)
	if err != nil {
		return nil, err
	}
	for _, l := range locs {
		if l.Region == region {
			return kmsstate.GetKey(s.State, l.Instance, id)
		}
	}
	return nil, nil
}
