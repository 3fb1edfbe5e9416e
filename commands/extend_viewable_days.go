package commands

import (
	"context"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ExtendViewableDays raises a provisioned backup instance's viewable days
// (upwards only, at most 600).
func (s *BackupInstances) ExtendViewableDays(ctx context.Context, c Caller, id domain.BackupID, days int) (*domain.Backup, error) {
	const op = "extend viewable days"
	err := s.decide(ctx, op, func() error {
		b, err := s.backup(c, op, id)
		if err != nil {
			return err
		}
		d, err := b.Extend(days)
		if err != nil {
			return err
		}
		return s.commit(ctx, b, false, s.newEvent(b, s.Clock.Now(), d))
	})
	if err != nil {
		return nil, err
	}
	b, err := backupstate.Get(s.State, id)
	if err != nil {
		return nil, err
	}
	return b, s.audit(ctx, c, b, "extend-viewable-days")
}
