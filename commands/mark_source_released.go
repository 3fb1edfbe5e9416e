package commands

import (
	"context"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// FinalCheckpoint backs up everything a KMS instance recorded up to now, if
// an enabled backup instance is bound to it. The KMS runs it before it
// destroys a released instance's data key, so that nothing is lost.
func (s *Backups) FinalCheckpoint(ctx context.Context, in *domain.Instance) error {
	id, ok, err := backupstate.BoundTo(s.State, in.ID)
	if err != nil || !ok {
		return err
	}
	b, err := backupstate.Get(s.State, id)
	if err != nil || b.State != domain.StateEnabled {
		return err
	}
	return s.decide(ctx, func() error {
		_, err := s.takeCheckpoint(ctx, id, domain.Due{At: s.Clock.Now()}, false)
		return err
	})
}
