package commands

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// Work is one piece of scheduled work: a checkpoint, an expiry or a release.
type Work struct {
	Backup domain.BackupID
	At     time.Time
	Kind   string // "full", "incremental", "expire" or "release"
}

// nextWork is the earliest work of one backup instance.
func (s *Backups) nextWork(b *domain.Backup) (Work, bool, error) {
	var w Work
	found := false
	consider := func(at time.Time, kind string) {
		if !found || at.Before(w.At) {
			w, found = Work{Backup: b.ID, At: at, Kind: kind}, true
		}
	}
	if b.State == domain.StateEnabled {
		loc, err := s.location(b)
		if err != nil {
			return Work{}, false, err
		}
		if due, ok := b.NextCheckpoint(loc); ok {
			kind := "incremental"
			if due.Full {
				kind = "full"
			}
			consider(due.At, kind)
		}
	}
	if b.Kind == domain.BackupProvisioned && !b.ExpiresAt.IsZero() {
		switch b.State {
		case domain.StateEnabled, domain.StateNotEnabled:
			consider(b.ExpiresAt, "expire")
		case domain.StateExpired:
			consider(b.ReleaseDue(), "release")
		}
	}
	return w, found, nil
}

// NextWork is the earliest scheduled work of every backup instance.
func (s *Backups) NextWork() (Work, bool, error) {
	all, err := backupstate.Scheduled(s.State)
	if err != nil {
		return Work{}, false, err
	}
	var best Work
	found := false
	for _, b := range all {
		w, ok, err := s.nextWork(b)
		if err != nil {
			return Work{}, false, err
		}
		if ok && (!found || w.At.Before(best.At) || (w.At.Equal(best.At) && w.Backup < best.Backup)) {
			best, found = w, true
		}
	}
	return best, found, nil
}

// Do performs one piece of work at its time.
func (s *Backups) Do(ctx context.Context, w Work) error {
	var err error
	switch w.Kind {
	case "full", "incremental":
		_, err = s.TakeCheckpoint(ctx, w.Backup, domain.Due{At: w.At, Full: w.Kind == "full"})
	case "expire":
		err = s.ExpireBackupInstance(ctx, w.Backup, w.At)
	case "release":
		err = s.ReleaseBackupInstance(ctx, w.Backup, w.At)
	default:
		err = fmt.Errorf("unknown work %q", w.Kind)
	}
	if isRace(err) {
		// Another engine did it: the next plan must see its result, so wait
		// until this engine's read model has caught up with the log.
		head, herr := s.Log.Head(ctx)
		if herr != nil {
			return herr
		}
		return s.StateApplied.WaitFor(ctx, head)
	}
	return err
}

// RunDue does, in order, the work due at or before until: one instant at a
// time, every backup instance due at that instant (setClock, when not nil,
// is moved to the instant first, as a manual clock's driver does). Each
// instant is planned with one read of the scheduled instances, not one per
// piece of work, and each engine works through an instant's pieces from a
// random place, so that engines sharing a log mostly take different ones
// (the append still decides when two meet). It returns how many pieces it
// did (including those another engine took first).
func (s *Backups) RunDue(ctx context.Context, until time.Time, setClock func(time.Time)) (int, error) {
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		due, err := s.dueFirst(until)
		if err != nil || len(due) == 0 {
			return n, err
		}
		if setClock != nil {
			setClock(due[0].At)
		}
		off := rand.IntN(len(due))
		for i := range due {
			w := due[(off+i)%len(due)]
			if err := s.Do(ctx, w); err != nil {
				return n, fmt.Errorf("%s of %s due %s: %w", w.Kind, w.Backup, w.At.Format(time.RFC3339), err)
			}
			n++
		}
	}
}

// dueFirst returns the work due at the earliest instant at or before until,
// every piece of it, with one read of the scheduled instances.
func (s *Backups) dueFirst(until time.Time) ([]Work, error) {
	all, err := backupstate.Scheduled(s.State)
	if err != nil {
		return nil, err
	}
	var out []Work
	for _, b := range all {
		w, ok, err := s.nextWork(b)
		if err != nil {
			return nil, err
		}
		if !ok || w.At.After(until) {
			continue
		}
		switch {
		case len(out) == 0 || w.At.Equal(out[0].At):
			out = append(out, w)
		case w.At.Before(out[0].At):
			out = append(out[:0], w)
		}
	}
	slices.SortFunc(out, func(a, b Work) int { return strings.Compare(string(a.Backup), string(b.Backup)) })
	return out, nil
}

// CatchUp covers a downtime that ended at now: each enabled instance whose
// next checkpoint is overdue takes one checkpoint at now (the missed full
// of today, or one incremental covering the gap); expiries and releases
// that fell due are recorded.
func (s *Backups) CatchUp(ctx context.Context, now time.Time) (int, error) {
	all, err := backupstate.Scheduled(s.State)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range all {
		w, ok, err := s.nextWork(b)
		if err != nil {
			return n, err
		}
		if !ok || !w.At.Before(now) {
			continue
		}
		switch w.Kind {
		case "full", "incremental":
			loc, err := s.location(b)
			if err != nil {
				return n, err
			}
			if _, err := s.TakeCheckpoint(ctx, b.ID, b.CatchUp(now, loc)); err != nil && !isRace(err) {
				return n, fmt.Errorf("catch up %s: %w", b.ID, err)
			}
			n++
		}
	}
	// Expiries and releases at their own times.
	m, err := s.runLifecycle(ctx, now)
	return n + m, err
}

func (s *Backups) runLifecycle(ctx context.Context, now time.Time) (int, error) {
	n := 0
	for {
		all, err := backupstate.Scheduled(s.State)
		if err != nil {
			return n, err
		}
		did := false
		for _, b := range all {
			w, ok, err := s.nextWork(b)
			if err != nil {
				return n, err
			}
			if ok && (w.Kind == "expire" || w.Kind == "release") && !w.At.After(now) {
				if err := s.Do(ctx, w); err != nil {
					return n, err
				}
				n++
				did = true
			}
		}
		if !did {
			return n, nil
		}
	}
}
