package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// MarkSourceReleased records, in the backup instance bound to the released
// KMS instance in (if one is), that its source is released
// (domain.BackupSourceReleased): from then on it keeps what it holds and
// copies nothing more. An enabled backup instance first takes a final
// checkpoint of everything the KMS instance recorded, so that nothing is
// lost; an expired one (or one whose term ended, its expiry not yet
// recorded) stopped backing up at its expiry and is marked at once. The KMS runs it after appending InstanceReleased and before it
// destroys the instance's data key; the scheduler runs it too for any
// bound backup instance whose KMS instance the read model shows released
// but which has no record of it (a crash in between, or a data directory
// from before this record existed). Idempotent; safe for concurrent use.
func (s *BackupInstances) MarkSourceReleased(ctx context.Context, in *domain.Instance) error {
	id, ok, err := backupstate.BoundTo(s.State, in.ID)
	if err != nil || !ok {
		return err
	}
	return s.markSourceReleased(ctx, id)
}

// markSourceReleased records the release of the KMS instance backup id is
// bound to, if it is released and not recorded yet, after the final
// checkpoint of an enabled backup instance: both under the backup's lock,
// and decided again after a lost race, so that two engines, or the release
// and the scheduler, take that checkpoint once.
func (s *BackupInstances) markSourceReleased(ctx context.Context, id domain.BackupID) error {
	const op = "record the release of the backed-up KMS instance"
	defer s.lock(id)()
	return s.decide(ctx, op, func() error {
		b, err := backupstate.Get(s.State, id)
		if err != nil || b.KMSInstance == "" {
			return err
		}
		in, err := kmsstate.GetInstance(s.State, b.KMSInstance)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if _, due := b.MarkSourceReleased(in); !due {
			return nil
		}
		now := s.Clock.Now()
		if b.State == domain.StateEnabled && b.NextRevision <= in.Revision && !b.ExpiredBy(now) {
			// The final checkpoint: everything up to the release.
			_, err := s.Checkpoints.checkpoint(ctx, b, domain.Due{At: now, Full: b.Checkpoints == 0})
			switch {
			case errors.As(err, new(sourceKeyGone)):
				// The data key was destroyed before the release was recorded
				// (an older version did not record it, or a release was
				// interrupted, then retried): the rest is unreadable, and the
				// record says what is missing.
			case err != nil:
				return fmt.Errorf("%s: final checkpoint: %w", op, err)
			default:
				if b, err = backupstate.Get(s.State, id); err != nil {
					return err
				}
			}
		}
		d, due := b.MarkSourceReleased(in)
		if !due {
			return nil
		}
		return s.commit(ctx, b, false, s.newEvent(b, s.Clock.Now(), d))
	})
}
