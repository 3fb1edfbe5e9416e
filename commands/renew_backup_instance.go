package commands

import (
	"context"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// RenewBackupInstance extends a provisioned instance's term; an expired,
// unreleased instance returns to the state it had and resumes backing up.
func (s *BackupInstances) RenewBackupInstance(ctx context.Context, c Caller, id domain.BackupID, term string) (*domain.Backup, error) {
	const op = "renew backup instance"
	t, err := domain.ParseTerm(term)
	if err != nil {
		return nil, err
	}
	err = s.decide(ctx, op, func() error {
		b, err := s.backup(c, op, id)
		if err != nil {
			return err
		}
		now := s.Clock.Now()
		d, err := b.Renew(t, now)
		if err != nil {
			return err
		}
		return s.commit(ctx, b, false, s.newEvent(b, now, d))
	})
	if err != nil {
		return nil, err
	}
	b, err := backupstate.Get(s.State, id)
	if err != nil {
		return nil, err
	}
	return b, s.audit(ctx, c, b, "renew-backup-instance")
}
