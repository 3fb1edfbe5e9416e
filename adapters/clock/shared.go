package clock

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Shared is a manual clock kept in the event log (domain.DevClockStream),
// so that every engine node of a --dev deployment on a shared log reads and
// moves the same time: a node that advances it does the work that falls
// due, and any node that takes over later starts from where it stopped. It
// only ever moves forward. Safe for concurrent use.
type Shared struct {
	log interface {
		commands.EventAppender
		commands.StreamReader
	}
	ids    commands.IDSource
	report func(error)

	mu   sync.Mutex
	now  time.Time
	rev  uint64
	seen bool // the stream has an event (rev is its revision)
}

var _ commands.Clock = (*Shared)(nil)

// NewShared returns the shared clock of log, starting it at start when the
// log holds no time yet (a later start is ignored: the clock never goes
// back). report receives failures of the log, which Now and Set cannot
// return.
func NewShared(ctx context.Context, log interface {
	commands.EventAppender
	commands.StreamReader
}, ids commands.IDSource, start time.Time, report func(error)) (*Shared, error) {
	s := &Shared{log: log, ids: ids, report: report, now: start.UTC()}
	if err := s.refresh(ctx); err != nil {
		return nil, err
	}
	if err := s.set(ctx, start); err != nil {
		return nil, err
	}
	return s, nil
}

// refresh reads the latest time from the log.
func (s *Shared) refresh(ctx context.Context) error {
	evs, err := s.log.ReadStream(ctx, domain.DevClockStream, math.MaxUint64, true, 1)
	if err != nil || len(evs) == 0 {
		return err
	}
	d, err := evs[0].Decode()
	if err != nil {
		return err
	}
	set, ok := d.(*domain.DevClockSet)
	if !ok {
		return domain.Corruption("%s holds a %s event", domain.DevClockStream, evs[0].Type)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.seen || evs[0].Revision >= s.rev {
		s.now, s.rev, s.seen = set.At.UTC(), evs[0].Revision, true
	}
	return nil
}

// Now reads the shared time (the last one read, if the log fails).
func (s *Shared) Now() time.Time {
	if err := s.refresh(context.Background()); err != nil && s.report != nil {
		s.report(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

// Set moves the shared clock to t; a t not after the shared time is
// ignored.
func (s *Shared) Set(t time.Time) {
	if err := s.set(context.Background(), t); err != nil && s.report != nil {
		s.report(err)
	}
}

func (s *Shared) set(ctx context.Context, t time.Time) error {
	for range 100 {
		s.mu.Lock()
		now, rev, seen := s.now, s.rev, s.seen
		s.mu.Unlock()
		if seen && !t.After(now) {
			return nil
		}
		expected := domain.ExpectNoStream
		if seen {
			expected = domain.ExpectRevision(rev)
		}
		e := domain.Event{ID: s.ids.NewULID(), Stream: domain.DevClockStream, Type: domain.TypeDevClockSet,
			Schema: domain.SchemaVersion, OccurredAt: t.UTC(), Data: domain.EncodeData(&domain.DevClockSet{At: t.UTC()})}
		_, err := s.log.Append(ctx, domain.DevClockStream, expected, []domain.Event{e})
		if err == nil {
			return s.refresh(ctx)
		}
		if !errors.Is(err, domain.ErrWrongExpectedRevision) {
			return err
		}
		if err := s.refresh(ctx); err != nil { // another node moved it: look again
			return err
		}
	}
	return errors.New("shared clock: too many concurrent moves")
}
