package commands

import (
	"context"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
)

// DeleteUpload deletes an upload: its data is crypto-shredded and deleted,
// and it no longer exists for anyone. Only uploads can be deleted this way.
func (s *DayFiles) DeleteUpload(ctx context.Context, c Caller, id domain.BackupID) error {
	const op = "delete upload"
	defer s.lock(id)()
	var b *domain.Backup
	err := s.decide(ctx, op, func() error {
		var err error
		if b, err = s.backup(c, op, id); err != nil {
			return err
		}
		d, err := b.DeleteUpload()
		if err != nil {
			return err
		}
		return s.commit(ctx, b, false, s.newEvent(b, s.Clock.Now(), d))
	})
	if err != nil {
		return err
	}
	if _, err := destroyEnded(ctx, s.BackupStreams, s.Storage, id); err != nil {
		return fmt.Errorf("%s %s: %w", op, id, err)
	}
	return s.audit(ctx, c, b, "delete-upload")
}
