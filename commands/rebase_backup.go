package commands

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// RebaseBackup writes a new base of a backup instance when its policy says
// one is due (domain.Backup.RebaseDue): the state at its last daily full,
// loaded from the newest base before it and the slices since (a scratch
// store: memory stays bounded), written as base parts and stored, then
// claimed by appending BackupBaseStored at the revision seen. Checkpoints
// appended meanwhile do not invalidate it (the base is the state at its
// checkpoint, whatever came after): the claim is decided again on them.
// If another engine stored a base of that checkpoint (or a later one)
// first, or the generation was destroyed, this one deletes its parts and
// returns nil. A failure before the append, or an append the log refused,
// deletes them too, but not an append whose outcome is unknown (see
// appendRefused). It never holds the instance's lock while it loads and
// writes, so checkpoints go on meanwhile. did tells whether it stored one.
//
// Errors: the stores' and the log's (then nothing is recorded, or, when
// the append's reply was lost, maybe the base: the next attempt starts
// over, or finds the base stored). Safe for concurrent use.
func (s *Checkpoints) RebaseBackup(ctx context.Context, id domain.BackupID) (did bool, err error) {
	const op = "rebase backup"
	b, err := backupstate.Get(s.State, id)
	if err != nil {
		return false, err
	}
	if !b.RebaseDue(s.rebasePolicy()) {
		return false, nil
	}
	seq, ref := b.LastFullSeq, b.DataRef()
	sum, err := backupdata.Checkpoint(s.State, ref, seq)
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", op, id, err)
	}
	// The state of checkpoint seq exactly: the point at its instant, no
	// checkpoint after it read.
	l, err := s.Days.newLoad(b, RestorePoint{Day: sum.Day, At: sum.At}, nil, seq)
	if err != nil {
		return false, err
	}
	sc, err := s.Storage.Scratch.OpenScratch(ctx)
	if err != nil {
		return false, err
	}
	defer sc.Close()
	if got, _, err := l.fill(ctx, sc); err != nil || got != seq {
		if err == nil {
			err = domain.Errorf(domain.ErrUnavailable, op, string(id), "", "the read model does not show checkpoint %d yet", seq)
		}
		return false, fmt.Errorf("%s %s: load checkpoint %d: %w", op, id, seq, err)
	}
	parts, digest, err := s.Storage.writeBase(ctx, ref, seq, sc, s.Storage.basePartLimit())
	if err != nil {
		return false, fmt.Errorf("%s %s: write the base of checkpoint %d: %w", op, id, seq, err)
	}
	cp := &domain.BackupCheckpointed{Generation: b.Generation, Seq: seq, Full: sum.Full, At: sum.At, Day: sum.Day,
		From: sum.From, Next: sum.Next, Digest: sum.Digest}
	recorded := false // the base may be recorded: its parts stay (see appendRefused)
	err = s.decide(ctx, op, func() error {
		defer s.lock(id)()
		now, err := backupstate.Get(s.State, id)
		if err != nil {
			return err
		}
		if now.Generation != b.Generation {
			return errLostRebase
		}
		base, err := now.StoreBase(cp, parts, digest)
		if errors.Is(err, domain.ErrAlreadyExists) {
			return errLostRebase
		}
		if err != nil {
			return err
		}
		pos, err := s.appendEvents(ctx, now, false, s.newEvent(now, s.Clock.Now(), base))
		if recorded = err == nil || !appendRefused(err); err != nil {
			return err
		}
		return s.waitApplied(ctx, pos)
	})
	if err != nil {
		if !recorded {
			s.Storage.deleteParts(ctx, ref, parts)
		}
		if errors.Is(err, errLostRebase) {
			return false, nil
		}
		return false, fmt.Errorf("%s %s: %w", op, id, err)
	}
	return true, nil
}

// errLostRebase: another engine stored a base first, or the generation is
// gone.
var errLostRebase = errors.New("commands: the base is not needed any more")

// rebasePolicy is the engine's rebase policy.
func (s *Checkpoints) rebasePolicy() domain.RebasePolicy {
	if s.Rebase != nil {
		return *s.Rebase
	}
	return domain.DefaultRebasePolicy
}

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
func (s *Backups) RunRebases(ctx context.Context) (int, error) {
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
