package commands

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ShowBackupInstance returns one of the caller's backup instances, whatever
// its state.
func (s *BackupInstances) ShowBackupInstance(c Caller, id domain.BackupID) (*domain.Backup, error) {
	b, err := s.backup(c, "show backup instance", id)
	if err != nil {
		return nil, err
	}
	s.retries.overlay(b)
	return b, nil
}

// ListBackupInstances lists the caller's backup instances and uploads, a
// page at a time: token is the Next of the previous page ("" for the
// first). Released instances are left out unless all is set (their rows
// stay, with state released and no binding).
func (s *BackupInstances) ListBackupInstances(c Caller, all bool, token string, size int) (projections.Page[*domain.Backup], error) {
	if err := requireAccount(c, "list backup instances"); err != nil {
		return projections.Page[*domain.Backup]{}, err
	}
	if all {
		return s.listBackups(c, "backups all", token, size, func(*domain.Backup) bool { return true })
	}
	return s.listBackups(c, "backups", token, size, func(b *domain.Backup) bool { return b.State != domain.StateReleased })
}

// ScheduledBackups lists the backup instances of every account that have
// scheduled work (enabled, expired, and provisioned ones that will
// expire), with their failing state as this process knows it: for
// /metrics, which serves no account in particular.
func (s *BackupInstances) ScheduledBackups() ([]*domain.Backup, error) {
	all, err := backupstate.Scheduled(s.State)
	for _, b := range all {
		s.retries.overlay(b)
	}
	return all, err
}

// FailingBackups lists the backup instances of every account whose
// scheduled work fails, in ID order: for /readyz?verbose, where each is
// named (a failing backup instance is its own problem, never the
// server's).
func (s *BackupInstances) FailingBackups() ([]*domain.Backup, error) {
	all, err := s.ScheduledBackups()
	if err != nil {
		return nil, err
	}
	var out []*domain.Backup
	for _, b := range all {
		if b.Failing.Active() {
			out = append(out, b)
		}
	}
	return out, nil
}

// FailureTotals counts, per backup instance, the failures of its scheduled
// work since this process started (for kmsbackup_backup_failures_total).
// Safe for concurrent use.
func (s *BackupInstances) FailureTotals() map[domain.BackupID]uint64 { return s.retries.totals() }
