package commands

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ListUploads lists the caller's uploads (the backup instances of kind
// upload), size at a time: token is the Next of the previous page ("" for
// the first).
func (s *Backups) ListUploads(c Caller, token string, size int) (projections.Page[*domain.Backup], error) {
	const op = "list uploads"
	if err := requireAccount(c, op); err != nil {
		return projections.Page[*domain.Backup]{}, err
	}
	return s.listBackups(c, "uploads", token, size, func(b *domain.Backup) bool { return b.Kind == domain.BackupUpload })
}

// listBackups lists the caller's backup instances that keep accepts, size
// at a time, in ID order, under page tokens of the listing named kind.
func (s *Backups) listBackups(c Caller, kind, token string, size int, keep func(*domain.Backup) bool) (projections.Page[*domain.Backup], error) {
	n, err := pageSize(size)
	if err != nil {
		return projections.Page[*domain.Backup]{}, err
	}
	return pageOf(domain.PageScope(kind, string(c.Account)), token, func(cursor string) (projections.Page[*domain.Backup], error) {
		// One item more than the page tells whether a next page exists.
		var items []*domain.Backup
		for {
			p, err := backupstate.List(s.State, c.Account, cursor, n+1)
			if err != nil {
				return projections.Page[*domain.Backup]{}, err
			}
			for _, b := range p.Items {
				cursor = string(b.ID)
				if keep(b) {
					items = append(items, b)
				}
				if len(items) > n {
					break
				}
			}
			if len(items) > n || p.Next == "" {
				break
			}
		}
		out := projections.Page[*domain.Backup]{Items: items}
		if len(items) > n {
			out.Items, out.Next = items[:n], string(items[n-1].ID)
		}
		for _, b := range out.Items {
			s.retries.overlay(b)
		}
		return out, nil
	})
}
