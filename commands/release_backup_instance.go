package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ReleaseBackupInstance releases an instance expired 15 days or more before
// now: its data is crypto-shredded and deleted, and the binding of its KMS
// instance released with it (bindings.go). A no-op when not due.
func (s *BackupInstances) ReleaseBackupInstance(ctx context.Context, id domain.BackupID, now time.Time) error {
	defer s.lock(id)()
	released := false
	err := s.decide(ctx, "release backup instance", func() error {
		b, err := backupstate.Get(s.State, id)
		if err != nil {
			return err
		}
		d, due := b.Release(now)
		if !due {
			return nil
		}
		release, err := s.bindingRelease(ctx, b, b.ReleaseDue())
		if err != nil {
			return err
		}
		released = true
		return s.commitBound(ctx, b, release, s.newEvent(b, b.ReleaseDue(), d))
	})
	if err != nil || !released {
		return err
	}
	if _, err := destroyEnded(ctx, s.BackupStreams, s.Storage, id); err != nil {
		return fmt.Errorf("release backup instance %s: %w", id, err)
	}
	b, err := backupstate.Get(s.State, id)
	if err != nil {
		return err
	}
	return s.audit(ctx, Caller{System: true}, b, "release-backup-instance")
}
