package commands

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// WorkKind is the kind of a piece of scheduled work.
type WorkKind string

// Kinds of scheduled work.
const (
	WorkFull           WorkKind = "full"
	WorkIncremental    WorkKind = "incremental"
	WorkExpire         WorkKind = "expire"
	WorkRelease        WorkKind = "release"
	WorkSourceReleased WorkKind = "source-released" // record that the bound KMS instance is released
	// WorkSchedule is the work of a backup instance whose schedule cannot
	// be read (its time zone, its KMS instance's record): it fails with
	// why, so that it is retried and shown like any other failure.
	WorkSchedule WorkKind = "schedule"
)

// Work is one piece of scheduled work of a backup instance.
type Work struct {
	Backup domain.BackupID
	At     time.Time
	Kind   WorkKind

	err error // WorkSchedule: why the schedule cannot be read
}

// checkpointKind is the kind of work of a checkpoint due.
func checkpointKind(d domain.Due) WorkKind {
	if d.Full {
		return WorkFull
	}
	return WorkIncremental
}

// plannedWork is the earliest work of one backup instance as its state
// asks: recording that its KMS instance is released comes before anything
// else; then its next checkpoint, expiry or release.
func (s *Schedule) plannedWork(b *domain.Backup) (Work, bool, error) {
	if (b.State == domain.StateEnabled || b.State == domain.StateExpired) && b.KMSInstance != "" && !b.SourceReleased.Recorded() {
		in, err := kmsstate.GetInstance(s.State, b.KMSInstance)
		if err != nil && !errors.Is(err, domain.ErrNotFound) {
			return Work{}, false, fmt.Errorf("read KMS instance %s: %w", b.KMSInstance, err)
		}
		if _, due := b.MarkSourceReleased(in); due {
			return Work{Backup: b.ID, At: in.ReleasedAt, Kind: WorkSourceReleased}, true, nil
		}
	}
	var w Work
	found := false
	consider := func(at time.Time, kind WorkKind) {
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
			consider(due.At, checkpointKind(due))
		}
	}
	if b.Kind == domain.BackupProvisioned && !b.ExpiresAt.IsZero() {
		switch b.State {
		case domain.StateEnabled, domain.StateNotEnabled:
			consider(b.ExpiresAt, WorkExpire)
		case domain.StateExpired:
			consider(b.ReleaseDue(), WorkRelease)
		}
	}
	return w, found, nil
}

// nextWork is the earliest work of one backup instance, with what this
// process remembers of its failures: while its work fails, it waits for
// the retry instant, and a checkpoint retried is the catch-up checkpoint
// at that instant (the missed full of the day, or one incremental covering
// everything since the last checkpoint), never a back-fill. An instance
// whose schedule cannot be read gets WorkSchedule at now.
func (s *Schedule) nextWork(b *domain.Backup, now time.Time) (Work, bool) {
	w, ok, err := s.plannedWork(b)
	if err != nil {
		w, ok = Work{Backup: b.ID, At: now, Kind: WorkSchedule, err: err}, true
	}
	r, failing := s.retries.get(b)
	if !ok || !failing || !w.At.Before(r.next) {
		return w, ok
	}
	w.At = r.next
	if w.Kind == WorkFull || w.Kind == WorkIncremental {
		if b.ExpiredBy(r.next) {
			// The term ends before the retry: it expires instead.
			return Work{Backup: b.ID, At: b.ExpiresAt, Kind: WorkExpire}, true
		}
		if loc, err := s.location(b); err == nil {
			w.Kind = checkpointKind(b.CatchUp(r.next, loc))
		}
	}
	return w, true
}

// NextWork is the earliest scheduled work of every backup instance
// (retries of failing work included).
func (s *Schedule) NextWork() (Work, bool, error) {
	all, err := backupstate.Scheduled(s.State)
	if err != nil {
		return Work{}, false, err
	}
	now := s.Clock.Now()
	var best Work
	found := false
	for _, b := range all {
		w, ok := s.nextWork(b, now)
		if ok && (!found || w.At.Before(best.At) || (w.At.Equal(best.At) && w.Backup < best.Backup)) {
			best, found = w, true
		}
	}
	return best, found, nil
}

// Do performs one piece of work at its time.
func (s *Schedule) Do(ctx context.Context, w Work) error {
	var err error
	switch w.Kind {
	case WorkFull, WorkIncremental:
		_, err = s.Checkpoints.TakeCheckpoint(ctx, w.Backup, domain.Due{At: w.At, Full: w.Kind == WorkFull})
	case WorkExpire:
		err = s.Instances.ExpireBackupInstance(ctx, w.Backup, w.At)
	case WorkRelease:
		err = s.Instances.ReleaseBackupInstance(ctx, w.Backup, w.At)
	case WorkSourceReleased:
		err = s.Instances.markSourceReleased(ctx, w.Backup)
	case WorkSchedule:
		err = fmt.Errorf("read the schedule of %s: %w", w.Backup, w.err)
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

// maxRoundErrors bounds the errors a round of work reports.
const maxRoundErrors = 8

// round is one round of scheduled work: how many pieces succeeded, and
// what could not even be recorded.
type round struct {
	done    int
	errs    []error
	dropped int
}

// run does w (see attempt), counting it when it succeeds and keeping what
// could not be recorded; it returns ctx's error once ctx ends.
func (r *round) run(ctx context.Context, s *Schedule, w Work) error {
	did, err := s.attempt(ctx, w)
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if err != nil {
		r.add(err)
	}
	if did {
		r.done++
	}
	return nil
}

func (r *round) add(err error) {
	if len(r.errs) < maxRoundErrors {
		r.errs = append(r.errs, err)
	} else {
		r.dropped++
	}
}

func (r *round) err() error {
	if r.dropped > 0 {
		r.errs = append(r.errs, fmt.Errorf("and %d more", r.dropped))
	}
	return errors.Join(r.errs...)
}

// attempt does one piece of work. A failure is that backup instance's
// alone: it is recorded (see recordFailure) and retried later, and attempt
// reports only what keeps the failure from being recorded (the log itself
// failing) or the end of ctx. did tells whether the work succeeded.
func (s *Schedule) attempt(ctx context.Context, w Work) (did bool, err error) {
	werr := s.Do(ctx, w)
	if werr == nil {
		s.retries.succeeded(w.Backup)
		return true, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return false, s.recordFailure(ctx, w, werr)
}

// RunDue does, in order, the work due at or before until: one instant at a
// time, every backup instance due at that instant (setClock, when not nil,
// is moved to the instant first, as a manual clock's driver does). Each
// instant is planned with one read of the scheduled instances, not one per
// piece of work, and each engine works through an instant's pieces from a
// random place, so that engines sharing a log mostly take different ones
// (the append still decides when two meet). A piece that fails never stops
// the others: it is recorded as that backup instance's failure and retried
// with backoff (see recordFailure), and RunDue goes on. It returns how many
// pieces succeeded (including those another engine took first), and an
// error only when the schedule cannot be read, a failure cannot be
// recorded, or ctx ends. First, when destroying the data of an ended
// generation failed in this process since the last round, it tries that
// again (DestroyEnded).
func (s *Schedule) RunDue(ctx context.Context, until time.Time, setClock func(time.Time)) (int, error) {
	var r round
	if s.endedLeft.Swap(false) {
		// Destroying the data of an ended generation failed in this
		// process since the last round: again (it sets the mark again if
		// it fails again).
		n, err := s.DestroyEnded(ctx)
		r.done += n
		if err != nil {
			r.add(err)
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return r.done, err
		}
		due, err := s.dueFirst(until)
		if err != nil {
			r.add(err)
			return r.done, r.err()
		}
		if len(due) == 0 {
			return r.done, r.err()
		}
		if setClock != nil {
			setClock(due[0].At)
		}
		off := rand.IntN(len(due))
		for i := range due {
			if err := r.run(ctx, s, due[(off+i)%len(due)]); err != nil {
				return r.done, err
			}
		}
	}
}

// dueFirst returns the work due at the earliest instant at or before until,
// every piece of it, with one read of the scheduled instances.
func (s *Schedule) dueFirst(until time.Time) ([]Work, error) {
	all, err := backupstate.Scheduled(s.State)
	if err != nil {
		return nil, err
	}
	now := s.Clock.Now()
	if now.After(until) {
		now = until
	}
	var out []Work
	for _, b := range all {
		w, ok := s.nextWork(b, now)
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
// of today, or one incremental covering the gap), unless its term ended
// by now (no checkpoint is ever taken at or after an expiry: it expires);
// releases of KMS instances not yet recorded are recorded; expiries and
// releases that fell due are recorded. Before all that, it finishes the
// destruction of the data of ended generations (DestroyEnded). As in
// RunDue, one instance's failure is recorded and retried later and never
// stops the others.
func (s *Schedule) CatchUp(ctx context.Context, now time.Time) (int, error) {
	var r round
	// What a crash left half done first: the data of generations ended
	// (reset, released, upload deleted) but not destroyed.
	n, err := s.DestroyEnded(ctx)
	r.done += n
	if err != nil {
		r.add(err)
	}
	all, err := backupstate.Scheduled(s.State)
	if err != nil {
		return r.done, errors.Join(r.err(), err)
	}
	for _, b := range all {
		w, ok := s.nextWork(b, now)
		if !ok || !w.At.Before(now) {
			continue
		}
		switch w.Kind {
		case WorkFull, WorkIncremental:
			if b.ExpiredBy(now) {
				// Its term ended during the downtime: it expires, at its
				// own instant, with no checkpoint after that.
				w = Work{Backup: b.ID, At: b.ExpiresAt, Kind: WorkExpire}
				break
			}
			loc, err := s.location(b)
			if err != nil {
				w = Work{Backup: b.ID, At: now, Kind: WorkSchedule, err: err}
				break
			}
			w = Work{Backup: b.ID, At: now, Kind: checkpointKind(b.CatchUp(now, loc))}
		case WorkExpire, WorkRelease:
			continue // at their own times, below
		}
		if err := r.run(ctx, s, w); err != nil {
			return r.done, err
		}
	}
	// Expiries and releases at their own times.
	if err := s.runLifecycle(ctx, now, &r); err != nil {
		r.add(err)
	}
	return r.done, r.err()
}

// runLifecycle records the expiries and releases due at or before now, in
// rounds until none is left that can be done.
func (s *Schedule) runLifecycle(ctx context.Context, now time.Time, r *round) error {
	for {
		all, err := backupstate.Scheduled(s.State)
		if err != nil {
			return err
		}
		before := r.done
		for _, b := range all {
			w, ok := s.nextWork(b, now)
			if !ok || (w.Kind != WorkExpire && w.Kind != WorkRelease) || w.At.After(now) {
				continue
			}
			if err := r.run(ctx, s, w); err != nil {
				return err
			}
		}
		if r.done == before {
			return nil
		}
	}
}
