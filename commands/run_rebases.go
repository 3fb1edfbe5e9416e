package commands

import (
	"context"
	"sync"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// rebaseRetries is what this process remembers of failing rebases: when
// each may be tried again. A failing rebase is no failure of the backup
// instance's scheduled work (its checkpoints go on, and restores read from
// the older base meanwhile), so it is kept apart from the retries of
// checkpoints, which it never delays.
type rebaseRetries struct {
	mu   sync.Mutex
	next map[domain.BackupID]retry
}

// RunRebases writes, one after another, the bases due (RebaseBackup) of
// every backup instance that schedules work, except those whose last
// attempt failed less than a retry delay ago (RetryDelay, on the Clock).
// One instance's failure never stops the others: it is remembered, retried
// later, and reported in the joined error with the others' (at most a
// few). It returns how many bases it stored. Call it off the path of
// checkpoints (the server's scheduler runs it in a goroutine of its own;
// the manual scheduler after each advance). Errors: the schedule's, ctx's,
// and the failures. Safe for concurrent use.
func (s *Schedule) RunRebases(ctx context.Context) (int, error) {
	all, err := backupstate.Scheduled(s.State)
	if err != nil {
		return 0, err
	}
	var r round
	policy := s.Checkpoints.rebasePolicy()
	for _, b := range all {
		if err := ctx.Err(); err != nil {
			return r.done, err
		}
		if !b.RebaseDue(policy) || !s.rebases.ready(b.ID, s.Clock.Now()) {
			continue
		}
		did, err := s.Checkpoints.RebaseBackup(ctx, b.ID)
		if cerr := ctx.Err(); cerr != nil {
			return r.done, cerr
		}
		if err != nil {
			s.rebases.failed(b.ID, s.Clock.Now(), s.jitter())
			r.add(err)
			continue
		}
		s.rebases.succeeded(b.ID)
		if did {
			r.done++
		}
	}
	return r.done, r.err()
}

func (r *rebaseRetries) ready(id domain.BackupID, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	x, ok := r.next[id]
	return !ok || !now.Before(x.next)
}

func (r *rebaseRetries) failed(id domain.BackupID, now time.Time, jitter float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next == nil {
		r.next = map[domain.BackupID]retry{}
	}
	x := r.next[id]
	x.attempts++
	x.next = now.Add(RetryDelay(x.attempts, jitter))
	r.next[id] = x
}

func (r *rebaseRetries) succeeded(id domain.BackupID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.next, id)
}
