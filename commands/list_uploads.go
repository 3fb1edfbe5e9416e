package commands

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// ListUploads lists the caller's uploads (the backup instances of kind
// upload), size at a time: token is the Next of the previous page ("" for
// the first).
func (s *DayFiles) ListUploads(c Caller, token string, size int) (projections.Page[*domain.Backup], error) {
	const op = "list uploads"
	if err := requireAccount(c, op); err != nil {
		return projections.Page[*domain.Backup]{}, err
	}
	return s.listBackups(c, "uploads", token, size, func(b *domain.Backup) bool { return b.Kind == domain.BackupUpload })
}
