package commands

import (
	"context"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// CreateBackupInput is a provisioned backup instance: its region, how many
// days of data stay viewable (7 to 600), and its term ("1mo", "1y").
type CreateBackupInput struct {
	Region       string
	ViewableDays int
	Term         string
}

// CreateBackupInstance creates a provisioned backup instance, not enabled.
func (s *BackupInstances) CreateBackupInstance(ctx context.Context, c Caller, in CreateBackupInput) (*domain.Backup, error) {
	const op = "create backup instance"
	if err := requireAccount(c, op); err != nil {
		return nil, err
	}
	term, err := domain.ParseTerm(in.Term)
	if err != nil {
		return nil, err
	}
	id := domain.NewBackupID(s.IDs.NewULID())
	now := s.Clock.Now()
	d, err := domain.NewProvisionedBackup(id, in.Region, in.ViewableDays, term, now)
	if err != nil {
		return nil, err
	}
	b := &domain.Backup{ID: id, Account: c.Account, Region: in.Region}
	if err := s.commit(ctx, b, true, s.newEvent(b, now, d)); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := s.audit(ctx, c, b, "create-backup-instance"); err != nil {
		return nil, err
	}
	return backupstate.Get(s.State, id)
}

// EnsureDefault creates the default backup instance of an account's region
// unless it exists. Idempotent and safe to race.
func (s *BackupInstances) EnsureDefault(ctx context.Context, a domain.AccountID, region string) error {
	id := DefaultBackupID(a, region)
	if _, ok, err := backupstate.DefaultFor(s.State, a, region); err != nil || ok {
		return err
	}
	d, err := domain.NewDefaultBackup(id, region)
	if err != nil {
		return err
	}
	b := &domain.Backup{ID: id, Account: a, Region: region}
	err = s.commit(ctx, b, true, s.newEvent(b, s.Clock.Now(), d))
	if isRace(err) {
		return nil // created concurrently
	}
	return err
}
