package commands

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ListUploads lists the caller's uploads (the backup instances of kind
// upload), size at a time.
func (s *Backups) ListUploads(c Caller, cursor string, size int) (projections.Page[*domain.Backup], error) {
	const op = "list uploads"
	if err := requireAccount(c, op); err != nil {
		return projections.Page[*domain.Backup]{}, err
	}
	n, err := pageSize(size)
	if err != nil {
		return projections.Page[*domain.Backup]{}, err
	}
	out := projections.Page[*domain.Backup]{}
	for {
		p, err := backupstate.List(s.State, c.Account, cursor, n)
		if err != nil {
			return projections.Page[*domain.Backup]{}, err
		}
		for _, b := range p.Items {
			if b.Kind == domain.BackupUpload {
				out.Items = append(out.Items, b)
			}
			cursor = string(b.ID)
			if len(out.Items) == n {
				out.Next = cursor
				return out, nil
			}
		}
		if p.Next == "" {
			return out, nil
		}
	}
}
