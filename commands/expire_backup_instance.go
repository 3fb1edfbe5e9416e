package commands

import (
	"context"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ExpireBackupInstance records the expiry of a provisioned instance whose
// term ended at or before now; a no-op when it is not due.
func (s *BackupInstances) ExpireBackupInstance(ctx context.Context, id domain.BackupID, now time.Time) error {
	defer s.lock(id)()
	return s.decide(ctx, "expire backup instance", func() error {
		b, err := backupstate.Get(s.State, id)
		if err != nil {
			return err
		}
		d, due := b.Expire(now)
		if !due {
			return nil
		}
		if err := s.commit(ctx, b, false, s.newEvent(b, b.ExpiresAt, d)); err != nil {
			return err
		}
		return s.audit(ctx, Caller{System: true}, b, "expire-backup-instance")
	})
}
