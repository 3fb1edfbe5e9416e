package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// DestroyEnded finishes what a reset, a release or an upload deleted left
// half done: the data (data key, then blobs) of every generation whose end
// is recorded but whose destruction is not (a crash, a lost reply or a
// failed wait between the two) is destroyed, and BackupDataDestroyed
// recorded, so that it is done once. CatchUp runs it at every start, and
// RunDue after a destruction failed in this process. It
// returns how many backup instances it finished. Safe with several nodes
// doing it at once: destroying absent data succeeds, and the record is
// appended at the revision seen (the loser of a race finds it done).
// Errors: the read model's; every instance's own failure, joined (the
// others are still done).
func (s *Schedule) DestroyEnded(ctx context.Context) (int, error) {
	ended, err := backupstate.Ended(s.State)
	if err != nil {
		return 0, fmt.Errorf("destroy the data of ended generations: %w", err)
	}
	n, errs := 0, []error(nil)
	for _, b := range ended {
		unlock := s.lock(b.ID)
		did, err := destroyEnded(ctx, s.BackupStreams, s.Instances.Storage, b.ID)
		unlock()
		if err != nil {
			errs = append(errs, err)
		}
		if did {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// destroyEnded destroys the data of backup id's ended generations that
// are not recorded destroyed, and records it: what a reset, a release and
// an upload deleted do after their event. The caller holds id's lock.
// did is false when nothing was left to destroy.
func destroyEnded(ctx context.Context, s *BackupStreams, st *BackupStorage, id domain.BackupID) (did bool, err error) {
	op := "destroy the data of " + string(id)
	err = s.decide(ctx, op, func() error {
		b, err := backupstate.Get(s.State, id)
		if err != nil {
			return err
		}
		d, ok := b.DestroyEnded()
		if !ok {
			return nil
		}
		for g := b.DestroyedBelow; g < b.Generation; g++ {
			if err := st.destroyData(ctx, domain.DataRef(id, g)); err != nil {
				return fmt.Errorf("%s: generation %d: %w", op, g, err)
			}
		}
		did = true
		return s.commit(ctx, b, false, s.newEvent(b, s.Clock.Now(), d))
	})
	if err != nil {
		s.endedLeft.Store(true)
	}
	return did, err
}
