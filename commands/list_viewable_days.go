package commands

import "github.com/kmsbackup/kmsbackup/domain"

// ListViewableDays lists the days of a backup instance whose data can be
// viewed, restored and downloaded today, newest first: the viewable window
// of SPEC.md section 5, or an upload's one day. An instance that has not
// been enabled yet has none.
//
// Errors: domain.ErrNotFound for an instance the caller cannot see;
// domain.ErrFailedPrecondition for an expired or released instance. Safe
// for concurrent use; reads only.
func (s *DayData) ListViewableDays(c Caller, id domain.BackupID) ([]domain.Day, error) {
	const op = "list viewable days"
	b, err := s.backup(c, op, id)
	if err != nil {
		return nil, err
	}
	if err := b.Usable(op); err != nil {
		return nil, err
	}
	if b.Kind == domain.BackupUpload {
		return []domain.Day{b.UploadDay}, nil
	}
	loc, err := s.location(b)
	if err != nil {
		return nil, err
	}
	first, last, ok := domain.ViewableWindow(b.EnabledDay, s.today(loc), b.ViewableDays)
	if !ok {
		return nil, nil
	}
	var days []domain.Day
	for d := last; d >= first; d = d.AddDays(-1) {
		days = append(days, d)
	}
	return days, nil
}
