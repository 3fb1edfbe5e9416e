package commands

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// DayCheckpoint is one backup within a day's data: the instant it covers up
// to, and whether it is a full backup. A restore "at" that instant restores
// the state it holds. Zone is the backup's time zone (IANA), which its
// days are counted in.
type DayCheckpoint struct {
	Seq  uint64
	At   time.Time
	Full bool
	Zone string
}

// ListDayCheckpoints lists the checkpoints of a viewable day, oldest first:
// the points in time a restore of that day can choose (RestoreRequest.At).
// A day has at most one full backup and an incremental every 5 minutes.
//
// Errors: domain.ErrNotFound for an instance the caller cannot see;
// domain.ErrFailedPrecondition for an expired instance or a day outside the
// viewable window. Safe for concurrent use; reads only.
func (s *DayData) ListDayCheckpoints(c Caller, id domain.BackupID, day string) ([]DayCheckpoint, error) {
	const op = "list checkpoints"
	b, d, err := s.viewableDay(c, op, id, day)
	if err != nil {
		return nil, err
	}
	ref := b.DataRef()
	lo, hi, ok, err := backupdata.DayRange(s.State, ref, d)
	if err != nil || !ok {
		return nil, err
	}
	out := make([]DayCheckpoint, 0, hi-lo+1)
	for q := lo; q <= hi; q++ {
		sum, err := backupdata.Checkpoint(s.State, ref, q)
		if err != nil {
			return nil, err
		}
		out = append(out, DayCheckpoint{Seq: sum.Seq, At: sum.At, Full: sum.Full, Zone: b.Zone()})
	}
	return out, nil
}
