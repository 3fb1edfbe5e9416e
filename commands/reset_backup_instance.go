package commands

import (
	"context"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ResetBackupInstance destroys everything a backup instance has backed up
// and unbinds it, releasing its KMS instance's binding stream with the
// reset (bindings.go); it can then be enabled again, and its KMS instance
// backed up by another. confirm must be true.
func (s *BackupInstances) ResetBackupInstance(ctx context.Context, c Caller, id domain.BackupID, confirm bool) (*domain.Backup, error) {
	const op = "reset backup instance"
	if !confirm {
		return nil, domain.Errorf(domain.ErrInvalidArgument, op, string(id), "pass --yes to confirm",
			"reset destroys every backup of this instance and cannot be undone")
	}
	defer s.lock(id)()
	err := s.decide(ctx, op, func() error {
		b, err := s.backup(c, op, id)
		if err != nil {
			return err
		}
		d, err := b.Reset()
		if err != nil {
			return err
		}
		now := s.Clock.Now()
		release, err := s.bindingRelease(ctx, b, now)
		if err != nil {
			return err
		}
		return s.commitBound(ctx, b, release, s.newEvent(b, now, d))
	})
	if err != nil {
		return nil, err
	}
	if _, err := destroyEnded(ctx, s.BackupStreams, s.Storage, id); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	b, err := backupstate.Get(s.State, id)
	if err != nil {
		return nil, err
	}
	return b, s.audit(ctx, c, b, "reset-backup-instance")
}
