package clock

import (
	"context"
	"math"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// logTail is how many of the log's last events LogTime reads: events are
// appended in clock order but for a few (an expiry is recorded at its own,
// earlier, instant after a catch-up), so the latest time is among them.
const logTail = 64

// LogTime is the latest time an event log holds: the manual clock it keeps
// (domain.DevClockStream) or the time of one of its last events, whichever
// is later. ok is false for an empty log. Safe for concurrent use; reads
// only.
func LogTime(ctx context.Context, log interface {
	commands.StreamReader
	commands.LogReader
}) (t time.Time, ok bool, err error) {
	evs, err := log.ReadStream(ctx, domain.DevClockStream, math.MaxUint64, true, 1)
	if err != nil {
		return time.Time{}, false, err
	}
	if len(evs) == 1 {
		d, err := evs[0].Decode()
		if err != nil {
			return time.Time{}, false, err
		}
		if set, isSet := d.(*domain.DevClockSet); isSet {
			t, ok = set.At.UTC(), true
		}
	}
	head, err := log.Head(ctx)
	if err != nil || head == 0 {
		return t, ok, err
	}
	after := uint64(0)
	if head > logTail {
		after = head - logTail
	}
	evs, err = log.ReadAll(ctx, after, logTail)
	if err != nil {
		return time.Time{}, false, err
	}
	for _, e := range evs {
		if !ok || e.OccurredAt.After(t) {
			t, ok = e.OccurredAt.UTC(), true
		}
	}
	return t, ok, nil
}

// StartAt decides where a manual clock starts on a log holding the time
// logged (see LogTime; ok false for none): at start when it was asked for
// (given) and is not before the log's time; at the log's time when no start
// was asked for; at now on an empty log without one. A start before the
// log's time would move the clock back, which it never does: it is
// refused (domain.ErrInvalidArgument).
func StartAt(logged time.Time, ok bool, start time.Time, given bool, now time.Time) (time.Time, error) {
	switch {
	case given && ok && start.Before(logged):
		return time.Time{}, domain.Errorf(domain.ErrInvalidArgument, "start the manual clock", "",
			"leave --clock-start out to continue from the log's clock, or start a new data directory",
			"--clock-start %s is before the clock the event log holds, %s: the clock never goes back",
			start.UTC().Format(time.RFC3339), logged.UTC().Format(time.RFC3339))
	case given:
		return start.UTC(), nil
	case ok:
		return logged.UTC(), nil
	}
	return now.UTC(), nil
}

// Logged is the manual clock of a --dev server on its own event log: it
// moves in memory, as the scheduler's driver steps through the work due
// (Set), and Record writes its time into the log (domain.DevClockStream),
// which the driver does after every advance, so that a restart continues
// where it stopped (see LogTime). Safe for concurrent use.
type Logged struct {
	*Manual
	rec *Shared
}

var _ commands.Clock = (*Logged)(nil)

// NewLogged returns the manual clock of log, at start (recorded in the log
// when it is later than the time the log keeps). report receives failures
// of the log that Now cannot return.
func NewLogged(ctx context.Context, log interface {
	commands.EventAppender
	commands.StreamReader
}, ids commands.IDSource, start time.Time, report func(error)) (*Logged, error) {
	rec, err := NewShared(ctx, log, ids, start, report)
	if err != nil {
		return nil, err
	}
	return &Logged{Manual: NewManual(start), rec: rec}, nil
}

// Record writes the clock's time into the log, when it is later than the
// time the log keeps. Errors: the log's. Idempotent.
func (l *Logged) Record(ctx context.Context) error { return l.rec.set(ctx, l.Now()) }
