package commands

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ShowBackupInstance returns one of the caller's backup instances, whatever
// its state.
func (s *Backups) ShowBackupInstance(c Caller, id domain.BackupID) (*domain.Backup, error) {
	return s.backup(c, "show backup instance", id)
}

// ListBackupInstances lists the caller's backup instances.
func (s *Backups) ListBackupInstances(c Caller, cursor string, size int) (projections.Page[*domain.Backup], error) {
	if err := requireAccount(c, "list backup instances"); err != nil {
		return projections.Page[*domain.Backup]{}, err
	}
	n, err := pageSize(size)
	if err != nil {
		return projections.Page[*domain.Backup]{}, err
	}
	return backupstate.List(s.State, c.Account, cursor, n)
}
