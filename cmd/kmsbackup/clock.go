package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/clock"
	"github.com/kmsbackup/kmsbackup/adapters/ids"
	"github.com/kmsbackup/kmsbackup/adapters/scheduler"
	"github.com/kmsbackup/kmsbackup/commands"
)

// checkClockStart decides where a manual clock starts (m.clockStart): the
// log's clock wins, so that a restart continues where the clock stopped
// and it never goes back (clock.StartAt): --clock-start moves it forward
// only, an earlier one is refused (exit 2) before anything is written.
func (m *Main) checkClockStart(ctx context.Context, log interface {
	commands.StreamReader
	commands.LogReader
}) error {
	if m.Config.Clock != "manual" {
		return nil
	}
	var start time.Time
	given := m.Config.ClockStart != ""
	if given {
		t, err := time.Parse(time.RFC3339, m.Config.ClockStart)
		if err != nil {
			return err
		}
		start = t
	}
	logged, ok, err := clock.LogTime(ctx, log)
	if err != nil {
		return fmt.Errorf("read the clock the event log holds: %w", err)
	}
	m.clockStart, err = clock.StartAt(logged, ok, start, given, time.Now())
	if err != nil {
		return &startFailure{code: exitUsage, err: err}
	}
	m.clockDecided = true
	return nil
}

// clock builds the configured clock: the system clock, or for --dev
// --clock manual a manual one (returned twice: as the Clock port and as
// settable, for the scheduler's driver), starting at m.clockStart. The
// manual clock is kept in the event log: on a shared log every node reads
// and moves the same time; on the embedded one its time is recorded after
// every advance.
func (m *Main) clock(ctx context.Context) (commands.Clock, scheduler.SettableClock, error) {
	if m.Config.Clock != "manual" {
		return clock.System{}, nil, nil
	}
	report := func(err error) { m.Logger.Warn("dev clock", "error", err) }
	idsrc := ids.Random{Clock: clock.System{}}
	if m.Config.LogKind() != "pebble" {
		c, err := clock.NewShared(ctx, m.log, idsrc, m.clockStart, report)
		if err != nil {
			return nil, nil, fmt.Errorf("shared dev clock: %w", err)
		}
		return c, c, nil
	}
	c, err := clock.NewLogged(ctx, m.log, idsrc, m.clockStart, report)
	if err != nil {
		return nil, nil, fmt.Errorf("dev clock: %w", err)
	}
	return c, c, nil
}

// waitProjections waits until the read models have caught up with the log,
// so that the scheduler plans from the whole history.
func (m *Main) waitProjections(ctx context.Context, ps ...*commands.Projector) error {
	head, err := m.log.Head(ctx)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if err := p.WaitFor(ctx, head); err != nil {
			return err
		}
	}
	return nil
}

// devClock is the --dev clock API: the manual clock and its driver, or the
// real clock, which cannot be advanced.
type devClock struct {
	manual scheduler.SettableClock
	driver *scheduler.Manual
	real   commands.Clock
}

func (d *devClock) Now() time.Time {
	if d.manual != nil {
		return d.manual.Now()
	}
	return d.real.Now()
}

func (d *devClock) Manual() bool { return d.manual != nil }

func (d *devClock) Advance(ctx context.Context, by time.Duration) (time.Time, int, error) {
	if d.driver == nil {
		return time.Time{}, 0, errors.New("the clock is not manual")
	}
	return d.driver.Advance(ctx, by)
}
