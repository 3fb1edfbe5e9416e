package commands

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// viewableDay checks that a backup instance can show a day: it is usable
// (not expired or released), has backed something up, and the day is in
// its viewable window.
func (s *Backups) viewableDay(c Caller, op string, id domain.BackupID, day string) (*domain.Backup, domain.Day, error) {
	b, err := s.backup(c, op, id)
	if err != nil {
		return nil, "", err
	}
	if err := b.Usable(op); err != nil {
		return nil, "", err
	}
	if b.Kind == domain.BackupUpload {
		// An upload holds the one day its file held, always viewable.
		if day == "" || day == string(b.UploadDay) {
			return b, b.UploadDay, nil
		}
		return nil, "", domain.Errorf(domain.ErrFailedPrecondition, op, day, "leave out the day, or use "+string(b.UploadDay),
			"upload %s holds only the day %s", b.ID, b.UploadDay)
	}
	if day == "" {
		return nil, "", domain.Invalid(op, "day is required: a viewable day of %s as YYYY-MM-DD", b.ID)
	}
	d, err := domain.ParseDay(day)
	if err != nil {
		return nil, "", err
	}
	loc, err := s.location(b)
	if err != nil {
		return nil, "", err
	}
	today := s.today(loc)
	if b.EnabledDay == "" || !domain.Viewable(b.EnabledDay, d, today, b.ViewableDays) {
		hint := "nothing of " + string(b.ID) + " is viewable yet"
		if first, last, ok := domain.ViewableWindow(b.EnabledDay, today, b.ViewableDays); ok {
			hint = "viewable days of " + string(b.ID) + ": from " + string(first) + " to " + string(last)
		}
		return nil, "", domain.Errorf(domain.ErrFailedPrecondition, op, string(d), hint, "day is not viewable")
	}
	return b, d, nil
}

// ListDayData lists one of the seven tabs of a viewable day's data: IDs or
// names, version counts and change times; never material or values. token
// is the Next of the previous page ("" for the first).
func (s *Backups) ListDayData(c Caller, id domain.BackupID, day, tab, token string, size int) (projections.Page[backupdata.Item], error) {
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
func (s *Backups) DiffDays(c Caller, id domain.BackupID, from, to string) ([]backupdata.Change, error) {
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
