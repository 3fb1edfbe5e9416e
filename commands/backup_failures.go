package commands

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// Retry backoff of a backup instance's failing scheduled work: the first
// retry comes RetryFirst after the failure, each next one twice as late,
// at most RetryMax; each delay is drawn between half and all of that
// (equal jitter), so that engines sharing a log do not retry in step. The
// delays are in clock time, so a manual clock behaves as the real one.
const (
	RetryFirst = 5 * time.Second
	RetryMax   = 5 * time.Minute
)

// RetryDelay is the delay before the next try after attempts failed ones
// (1 or more); jitter, in [0, 1), picks it between half and all of the
// exponential delay. Whole seconds, at least one.
func RetryDelay(attempts int, jitter float64) time.Duration {
	d := RetryMax
	if attempts < 16 {
		d = min(RetryFirst<<max(attempts-1, 0), RetryMax)
	}
	half := d / 2
	return max((half + time.Duration(jitter*float64(half))).Truncate(time.Second), time.Second)
}

// retry is what this process remembers of a backup instance whose
// scheduled work fails.
type retry struct {
	attempts int
	next     time.Time // the instant of the next try
	since    time.Time
	reason   string
	work     string
	seen     uint64 // the backup's revision once its failure was recorded
}

// retries is the scheduler's memory of failing backup instances, and of
// how many failures each had since this process started (for /metrics).
// Safe for concurrent use; the zero value is ready.
type retries struct {
	mu      sync.Mutex
	failing map[domain.BackupID]*retry
	total   map[domain.BackupID]uint64
}

// get returns the retry state of b, unless b's read model shows that the
// failure ended meanwhile (another engine's checkpoint, a reset, an
// expiry: a newer revision that is not failing).
func (r *retries) get(b *domain.Backup) (retry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	x, ok := r.failing[b.ID]
	if !ok {
		return retry{}, false
	}
	if b.Revision > x.seen && !b.Failing.Active() {
		delete(r.failing, b.ID)
		return retry{}, false
	}
	return *x, true
}

// failed counts one more failure of id's work at now, plans its retry and
// returns the attempts so far.
func (r *retries) failed(id domain.BackupID, work, reason string, now time.Time, seen uint64, jitter float64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing == nil {
		r.failing, r.total = map[domain.BackupID]*retry{}, map[domain.BackupID]uint64{}
	}
	x, ok := r.failing[id]
	if !ok {
		x = &retry{since: now}
		r.failing[id] = x
	}
	x.attempts++
	x.next = now.Add(RetryDelay(x.attempts, jitter))
	x.work, x.reason, x.seen = work, reason, seen
	r.total[id]++
	return x.attempts
}

// recorded notes the revision that recorded id's failure.
func (r *retries) recorded(id domain.BackupID, rev uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if x, ok := r.failing[id]; ok {
		x.seen = max(x.seen, rev)
	}
}

func (r *retries) succeeded(id domain.BackupID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.failing, id)
}

// overlay completes b's failing state with this process's own count of
// attempts (the log records the failure once per reason, not each retry),
// or with its failure when the log could not record it.
func (r *retries) overlay(b *domain.Backup) {
	r.mu.Lock()
	defer r.mu.Unlock()
	x, ok := r.failing[b.ID]
	if !ok || (b.Revision > x.seen && !b.Failing.Active()) {
		return
	}
	if !b.Failing.Active() {
		b.Failing = domain.Failure{Work: x.work, Reason: x.reason, Since: x.since}
	}
	b.Failing.Attempts = max(b.Failing.Attempts, uint32(min(x.attempts, 1<<31)))
}

func (r *retries) totals() map[domain.BackupID]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.total)
}

// jitter draws the jitter of a retry delay.
func (s *Schedule) jitter() float64 {
	if s.Jitter != nil {
		return s.Jitter()
	}
	return rand.Float64()
}

// recordFailure records that w failed with cause: the retry is planned
// here (RetryDelay after now), and the backup instance's stream records it
// as failing (domain.BackupFailing) when it starts failing or its reason
// changes, never once per retry, so that every node of a shared log shows
// it. Errors: the log's, when the failure cannot be recorded (the retry is
// planned all the same).
func (s *Schedule) recordFailure(ctx context.Context, w Work, cause error) error {
	now := s.Clock.Now()
	reason := domain.CleanReason(cause.Error())
	var seen uint64
	if b, err := backupstate.Get(s.State, w.Backup); err == nil {
		seen = b.Revision
	}
	attempts := s.retries.failed(w.Backup, string(w.Kind), reason, now, seen, s.jitter())
	defer s.lock(w.Backup)()
	err := s.decide(ctx, "record a failing backup", func() error {
		b, err := backupstate.Get(s.State, w.Backup)
		if err != nil {
			return err
		}
		d, ok := b.Fail(string(w.Kind), reason, now, attempts)
		if !ok {
			return nil
		}
		return s.commit(ctx, b, false, s.newEvent(b, now, d))
	})
	if err != nil {
		return fmt.Errorf("record that the %s of %s fails (%s): %w", w.Kind, w.Backup, reason, err)
	}
	if b, err := backupstate.Get(s.State, w.Backup); err == nil {
		s.retries.recorded(w.Backup, b.Revision)
	}
	return nil
}
