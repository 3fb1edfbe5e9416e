package commands

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// viewableDay checks that a backup instance can show a day: it is usable
// (not expired or released), has backed something up, and the day is in
// its viewable window.
func (s *DayData) viewableDay(c Caller, op string, id domain.BackupID, day string) (*domain.Backup, domain.Day, error) {
	b, err := s.backup(c, op, id)
	if err != nil {
		return nil, "", err
	}
	if err := b.Usable(op); err != nil {
		return nil, "", err
	}
	if b.Kind == domain.BackupUpload {
		// An upload holds the one day its file held, always viewable.
		if err := b.CheckDay(op, domain.Day(day), ""); err != nil {
			return nil, "", err
		}
		return b, b.UploadDay, nil
	}
	if day == "" {
		return nil, "", b.CheckDay(op, "", "")
	}
	d, err := domain.ParseDay(day)
	if err != nil {
		return nil, "", err
	}
	loc, err := s.location(b)
	if err != nil {
		return nil, "", err
	}
	if err := b.CheckDay(op, d, s.today(loc)); err != nil {
		return nil, "", err
	}
	return b, d, nil
}

// ListDayData lists one of the seven tabs of a viewable day's data: IDs or
// names, version counts and change times; never material or values. token
// is the Next of the previous page ("" for the first).
func (s *DayData) ListDayData(c Caller, id domain.BackupID, day, tab, token string, size int) (projections.Page[backupdata.Item], error) {
	const op = "list data"
	t, err := backupdata.ParseTab(tab)
	if err != nil {
		return projections.Page[backupdata.Item]{}, err
	}
	n, err := pageSize(size)
	if err != nil {
		return projections.Page[backupdata.Item]{}, err
	}
	b, d, err := s.viewableDay(c, op, id, day)
	if err != nil {
		return projections.Page[backupdata.Item]{}, err
	}
	return pageOf(domain.PageScope("data", string(c.Account), b.DataRef(), string(d), string(t)), token, func(cursor string) (projections.Page[backupdata.Item], error) {
		return backupdata.List(s.State, b.DataRef(), d, t, cursor, n)
	})
}

// DiffDays lists what was created, rotated and deleted between the end of
// day from and the end of day to; both must be viewable.
func (s *DayData) DiffDays(c Caller, id domain.BackupID, from, to string) ([]backupdata.Change, error) {
	const op = "diff days"
	b, f, err := s.viewableDay(c, op, id, from)
	if err != nil {
		return nil, err
	}
	_, t, err := s.viewableDay(c, op, id, to)
	if err != nil {
		return nil, err
	}
	if t < f {
		return nil, domain.Invalid(op, "--to %s is before --from %s", t, f)
	}
	return backupdata.Diff(s.State, b.DataRef(), f, t)
}
