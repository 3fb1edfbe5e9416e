package commands

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ClockLag is a clock found behind the newest checkpoint of the backup
// instances: the system clock was set back, or the data comes from a
// server whose clock ran ahead. No checkpoint is taken until the clock
// passes Checkpoint (a checkpoint never goes back), so backups wait.
type ClockLag struct {
	Now        time.Time       // the clock
	Checkpoint time.Time       // the newest checkpoint, after Now
	Backup     domain.BackupID // the instance that took it
}

// Behind is how far the clock is behind the newest checkpoint.
func (l ClockLag) Behind() time.Duration { return l.Checkpoint.Sub(l.Now) }

// ClockBehind reports whether the clock is behind the newest checkpoint of
// every account's backup instances with scheduled work (enabled and
// expired ones), and by how much. Errors: the read model's. Safe for
// concurrent use; reads only.
func (s *Checkpoints) ClockBehind() (ClockLag, bool, error) {
	all, err := backupstate.Scheduled(s.State)
	if err != nil {
		return ClockLag{}, false, err
	}
	lag := ClockLag{Now: s.Clock.Now()}
	for _, b := range all {
		for _, at := range []time.Time{b.LastFullAt, b.LastIncremental} {
			if at.After(lag.Checkpoint) {
				lag.Checkpoint, lag.Backup = at, b.ID
			}
		}
	}
	return lag, lag.Checkpoint.After(lag.Now), nil
}
