package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
)

// Worker is what the scheduler drives: the scheduler's work of the backup
// use cases, which takes the checkpoints, fulls and bases that are due
// (commands.Schedule).
type Worker interface {
	CatchUp(ctx context.Context, now time.Time) (int, error)
	RunDue(ctx context.Context, until time.Time, setClock func(time.Time)) (int, error)
	NextWork() (commands.Work, bool, error)
	// RunRebases writes the bases due, off the path of checkpoints.
	RunRebases(ctx context.Context) (int, error)
}

// Runner runs scheduled work on the real clock.
type Runner struct {
	Work   Worker
	Clock  commands.Clock
	Logger *slog.Logger
	// MaxSleep bounds a sleep, so that work planned by another engine or a
	// new enable is picked up (default 30s).
	MaxSleep time.Duration

	mu  sync.Mutex
	err error
}

// Healthy reports the last failure of a round of work, if the last round
// failed: the schedule could not be read, or a failure could not be
// recorded. One backup instance's failing work is not a failure of the
// round: it is recorded as that instance's, and the round goes on (see
// commands.Schedule.RunDue).
func (r *Runner) Healthy() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *Runner) setErr(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
	if err != nil {
		r.Logger.Error("scheduled backup work failed; retrying", "error", err)
	}
}

// Run catches up once, then does the work that falls due until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	if r.MaxSleep <= 0 {
		r.MaxSleep = 30 * time.Second
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if n, err := r.Work.CatchUp(ctx, r.Clock.Now()); err != nil {
		r.setErr(fmt.Errorf("catch up: %w", err))
	} else if n > 0 {
		r.Logger.Info("caught up after downtime", "work", n)
	}
	// Bases are written in the background, never in the way of a
	// checkpoint: a rebase that fails is the backup's own, logged and
	// retried later (restores read from its older base meanwhile).
	rebases := make(chan struct{})
	go func() {
		defer close(rebases)
		r.runRebases(ctx)
	}()
	defer func() { <-rebases }()
	for {
		_, err := r.Work.RunDue(ctx, r.Clock.Now(), nil)
		if ctx.Err() != nil {
			return nil
		}
		r.setErr(err)
		sleep := r.MaxSleep
		if err != nil {
			sleep = 5 * time.Second
		} else if w, ok, err := r.Work.NextWork(); err == nil && ok {
			if d := w.At.Sub(r.Clock.Now()); d < sleep {
				sleep = max(d, 10*time.Millisecond)
			}
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// runRebases runs the rebases due every MaxSleep until ctx ends.
func (r *Runner) runRebases(ctx context.Context) {
	for {
		n, err := r.Work.RunRebases(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.Logger.Warn("writing a base of a backup failed; retrying later (restores read from its older base meanwhile)", "error", err)
		}
		if n > 0 {
			r.Logger.Info("wrote bases of backups", "bases", n)
		}
		t := time.NewTimer(r.MaxSleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// SettableClock is a clock that can be moved forward.
type SettableClock interface {
	commands.Clock
	Set(t time.Time)
}

// Recorder is a clock that keeps its time where a restart reads it back
// (the event log): the driver records it after the start's catch-up and
// after every advance. Record is idempotent.
type Recorder interface {
	Record(ctx context.Context) error
}

// Manual moves a manual clock and does the work that falls due on the way.
// A clock that is also a Recorder is recorded after each move. Safe for
// concurrent use: advances happen one at a time.
type Manual struct {
	Work  Worker
	Clock SettableClock
	// Logger, if set, receives the failures of rebases, which are not
	// failures of an advance: the planner retries them later.
	Logger *slog.Logger

	mu sync.Mutex
}

// Start catches up at the clock's current time, as an engine starting
// after downtime does.
func (m *Manual) Start(ctx context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.Work.CatchUp(ctx, m.Clock.Now())
	if err != nil {
		return n, err
	}
	return n, m.record(ctx)
}

// record records the clock's time, when the clock keeps it.
func (m *Manual) record(ctx context.Context) error {
	if r, ok := m.Clock.(Recorder); ok {
		if err := r.Record(ctx); err != nil {
			return fmt.Errorf("record the clock: %w", err)
		}
	}
	return nil
}

// Advance moves the clock forward by d, stopping at the time of each piece
// of work due on the way to do it, in order, then writes the bases due
// (RunRebases), as the real scheduler does in the background (a rebase
// that fails is logged and retried at a later advance, not an error of
// this one). It returns the new time and how much work it did (bases
// included). d must be positive.
func (m *Manual) Advance(ctx context.Context, d time.Duration) (time.Time, int, error) {
	return m.AdvanceReporting(ctx, d, nil)
}

// AdvanceReporting is Advance, calling progress (when not nil) with the
// advance's start, the instant reached and its end each time the clock
// stops at an instant of work, before that work.
func (m *Manual) AdvanceReporting(ctx context.Context, d time.Duration, progress func(from, now, to time.Time)) (time.Time, int, error) {
	if d <= 0 {
		return time.Time{}, 0, fmt.Errorf("advance by %s: the duration must be positive", d)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	from := m.Clock.Now()
	target := from.Add(d)
	set := m.Clock.Set
	if progress != nil {
		set = func(t time.Time) {
			m.Clock.Set(t)
			progress(from, t, target)
		}
	}
	n, err := m.Work.RunDue(ctx, target, set)
	if err != nil {
		return m.Clock.Now(), n, errors.Join(err, m.record(ctx))
	}
	m.Clock.Set(target)
	r, err := m.Work.RunRebases(ctx)
	if err != nil && ctx.Err() == nil && m.Logger != nil {
		m.Logger.Warn("writing a base of a backup failed; retrying later", "error", err)
	}
	if err := ctx.Err(); err != nil {
		return target, n + r, err
	}
	return target, n + r, m.record(ctx)
}
