package commands

import (
	"context"
	"errors"
	"fmt"

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
