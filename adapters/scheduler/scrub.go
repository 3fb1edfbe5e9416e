package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Scrubber is what the scrub runner drives: the backup use cases.
type Scrubber interface {
	ScrubBackups(ctx context.Context, o commands.ScrubOptions) (commands.ScrubRun, error)
}

const (
	// scrubFirstAfter is how long after the start of Run the first scrub
	// begins: after the catch-up of missed checkpoints, and soon enough
	// that a server restarted more often than the interval still scrubs.
	scrubFirstAfter = time.Minute
	// scrubRetry is how long Run waits after a run that failed.
	scrubRetry = 5 * time.Minute
)

// Scrub verifies every backup instance in the background: a run every
// Interval on the real clock (Run), or when asked (RunOnce: the --dev API,
// tests), one run at a time. It keeps the last result of every instance
// and of the last complete run, for metrics and for showing an instance;
// it logs one warning per instance with findings and one per instance it
// could not verify (IDs and finding kinds, never data). The work is the
// Scrubber's; this type decides when, and remembers. Safe for concurrent
// use.
type Scrub struct {
	Scrubber Scrubber
	// Throttle paces the reads of a run (NewByteRate); nil: unpaced.
	Throttle commands.Throttle
	// Interval is the time from the start of one run to the start of the
	// next; a run longer than that is followed at once by the next. Zero
	// or less: Run never runs one, only RunOnce does.
	Interval time.Duration
	Logger   *slog.Logger

	run sync.Mutex // held for a whole run

	mu      sync.Mutex
	results map[domain.BackupID]commands.ScrubResult
	last    commands.ScrubRun
	errors  uint64
	err     error     // the failure of the last run, if it failed
	started time.Time // when Run started (real clock), for Healthy
	done    time.Time // when the last complete run ended (real clock)
}

// Run scrubs every Interval until ctx ends, the first time a minute after
// it starts (sooner when Interval is shorter). A run that fails is tried
// again after 5 minutes. It returns nil when ctx ends.
func (s *Scrub) Run(ctx context.Context) error {
	s.mu.Lock()
	s.started = time.Now()
	s.mu.Unlock()
	if s.Interval <= 0 {
		return nil
	}
	wait := min(scrubFirstAfter, s.Interval)
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		start := time.Now()
		_, err := s.RunOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait = max(s.Interval-time.Since(start), 0)
		if err != nil {
			wait = min(scrubRetry, s.Interval)
		}
	}
}

// RunOnce scrubs every backup instance now, after the run in progress if
// there is one, and returns the run. Errors: the Scrubber's (the run is
// then incomplete and the last complete run stays the previous one).
func (s *Scrub) RunOnce(ctx context.Context) (commands.ScrubRun, error) {
	s.run.Lock()
	defer s.run.Unlock()
	logger := s.logger()
	seen := map[domain.BackupID]bool{}
	run, err := s.Scrubber.ScrubBackups(ctx, commands.ScrubOptions{Throttle: s.Throttle, Result: func(r commands.ScrubResult) {
		seen[r.Backup] = true
		s.record(r)
		switch {
		case r.Err != nil:
			logger.Warn("backup instance could not be verified", "backup", r.Backup, "account", r.Account, "error", r.Err)
		case r.Findings() > 0:
			logger.Warn("backup instance verification found problems", "backup", r.Backup, "account", r.Account,
				"findings", r.Findings(), "kinds", strings.Join(r.Kinds(), ","), "hint", "kmsbackup verify "+string(r.Backup))
		}
	}})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.err = err
		if ctx.Err() == nil {
			logger.Error("backup scrub failed", "error", err)
		}
		return run, err
	}
	s.err, s.last, s.done = nil, run, time.Now()
	for id := range s.results {
		if !seen[id] {
			delete(s.results, id) // gone since: released, reset, deleted
		}
	}
	logger.Info("backup scrub done", "checked", run.Checked, "with_findings", run.WithFindings,
		"errors", run.Errors, "skipped", run.Skipped, "duration", run.Duration())
	return run, nil
}

func (s *Scrub) record(r commands.ScrubResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.results == nil {
		s.results = map[domain.BackupID]commands.ScrubResult{}
	}
	s.results[r.Backup] = r
	if r.Err != nil {
		s.errors++
	}
}

func (s *Scrub) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Status is the last complete run, the last result of every instance
// verified (in ID order) and the number of verifications that could not be
// done since the server started.
func (s *Scrub) Status() commands.ScrubStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := commands.ScrubStatus{LastRun: s.last, Errors: s.errors, Results: make([]commands.ScrubResult, 0, len(s.results))}
	for _, r := range s.results {
		st.Results = append(st.Results, r)
	}
	slices.SortFunc(st.Results, func(a, b commands.ScrubResult) int { return strings.Compare(string(a.Backup), string(b.Backup)) })
	return st
}

// Result is the last result of one instance, if a scrub verified it.
func (s *Scrub) Result(id domain.BackupID) (commands.ScrubResult, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.results[id]
	return r, ok
}

// Healthy reports whether the scrub keeps up: the failure of the last run
// if it failed, or that no run has completed for twice the interval (on
// the real clock, counted from Run's start before the first run). Findings
// and instances that could not be verified are not its failures: they are
// the data's, in the metrics and the log. Nil when Run has not started or
// Interval is not positive.
func (s *Scrub) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return fmt.Errorf("backup scrub: %w", s.err)
	}
	if s.started.IsZero() || s.Interval <= 0 {
		return nil
	}
	since := s.started
	if s.done.After(since) {
		since = s.done
	}
	if time.Since(since) > 2*s.Interval {
		return fmt.Errorf("backup scrub: no complete run since %s (interval %s)", since.UTC().Format(time.RFC3339), s.Interval)
	}
	return nil
}

// ByteRate is a Throttle that lets through at most a number of bytes a
// second, on the real clock (golang.org/x/time/rate), in bursts of at most
// a tenth of a second's worth.
type ByteRate struct{ l *rate.Limiter }

var _ commands.Throttle = (*ByteRate)(nil)

// NewByteRate returns a ByteRate of perSecond bytes a second, or nil (no
// pacing) when perSecond is not positive.
func NewByteRate(perSecond int64) *ByteRate {
	if perSecond <= 0 {
		return nil
	}
	return &ByteRate{l: rate.NewLimiter(rate.Limit(perSecond), int(max(perSecond/10, 4096)))}
}

// WaitN waits until n more bytes may be read. A nil ByteRate never waits.
func (r *ByteRate) WaitN(ctx context.Context, n int) error {
	if r == nil {
		return nil
	}
	for n > 0 {
		chunk := min(n, r.l.Burst())
		if err := r.l.WaitN(ctx, chunk); err != nil {
			return fmt.Errorf("pace reads: %w", err)
		}
		n -= chunk
	}
	return nil
}
