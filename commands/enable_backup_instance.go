package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// EnableInput binds a backup instance to a KMS instance.
type EnableInput struct {
	KMSInstance domain.InstanceID
	Alias       string
	TimeZone    string // IANA name; empty: the region's (domain.RegionTimeZone)
}

// EnableBackupInstance binds a backup instance to a KMS instance of the same
// account and region (at most one backup instance per KMS instance), then
// takes the first full backup at once. Without a time zone it takes its
// region's.
func (s *BackupInstances) EnableBackupInstance(ctx context.Context, c Caller, id domain.BackupID, in EnableInput) (*domain.Backup, error) {
	const op = "enable backup instance"
	if _, err := domain.ParseInstanceID(string(in.KMSInstance)); err != nil {
		return nil, err
	}
	if in.TimeZone != "" {
		if err := domain.ValidateTimeZone(in.TimeZone); err != nil {
			return nil, err
		}
		if _, err := s.zone(in.TimeZone); err != nil {
			return nil, err
		}
	}
	// Bindings span backup instances: decide them one at a time.
	s.bind.Lock()
	defer s.bind.Unlock()
	err := s.decide(ctx, op, func() error {
		b, err := s.backup(c, op, id)
		if err != nil {
			return err
		}
		kms, err := kmsstate.GetInstance(s.State, in.KMSInstance)
		if errors.Is(err, domain.ErrNotFound) {
			kms, err = nil, nil
		}
		if err != nil {
			return err
		}
		bound, ok, err := backupstate.BoundTo(s.State, in.KMSInstance)
		if err != nil {
			return err
		}
		if !ok || bound == b.ID {
			bound = ""
		}
		d, err := b.Enable(in.KMSInstance, kms, in.Alias, in.TimeZone, bound)
		if err != nil {
			return err
		}
		if _, err := s.zone(d.TimeZone); err != nil { // the region's
			return err
		}
		if err := s.Storage.DataKeys.CreateDataKey(ctx, b.DataRef()); err != nil {
			return fmt.Errorf("%s: create data key: %w", op, err)
		}
		return s.commit(ctx, b, false, s.newEvent(b, s.Clock.Now(), d))
	})
	if err != nil {
		return nil, err
	}
	if b, err := backupstate.Get(s.State, id); err == nil {
		if err := s.audit(ctx, c, b, "enable-backup-instance"); err != nil {
			return nil, err
		}
	}
	// The first full backup, at once.
	if _, err := s.Checkpoints.TakeCheckpoint(ctx, id, domain.Due{At: s.Clock.Now(), Full: true}); err != nil && !isRace(err) {
		return nil, fmt.Errorf("%s: first full backup: %w", op, err)
	}
	return backupstate.Get(s.State, id)
}
