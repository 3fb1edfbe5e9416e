package commands

import (
	"context"
	"errors"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// RotateSecret puts a new value in a secret (a new version), encrypted under
// the secret's key, which must still be live.
func (s *KMS) RotateSecret(ctx context.Context, c Caller, name, region string, value domain.Plaintext) (*domain.Secret, error) {
	const op = "rotate secret"
	if err := checkValue(op, value); err != nil {
		return nil, err
	}
	var inst domain.InstanceID
	err := s.decide(ctx, op, func() error {
		in, sec, unlock, err := s.lockSecret(ctx, c, op, name, region)
		if err != nil {
			return err
		}
		defer unlock()
		inst = sec.Instance
		key, err := kmsstate.GetKey(s.State, in.ID, sec.Key)
		if errors.Is(err, domain.ErrNotFound) {
			key, err = nil, nil
		}
		if err != nil {
			return err
		}
		var ct []byte
		if key != nil {
			c, err := s.encryptUnder(ctx, key, value, secretContext(name, uint32(len(sec.Versions))+1))
			if err != nil {
				return err
			}
			ct = []byte(c.String())
		}
		d, err := in.RotateSecret(sec, key, ct)
		if err != nil {
			return err
		}
		e := s.newEvent(s.IDs.NewULID(), in, d)
		return s.commit(ctx, e.Stream, domain.ExpectRevision(in.Revision), e)
	})
	if err != nil {
		return nil, err
	}
	return kmsstate.GetSecret(s.State, inst, name)
}
