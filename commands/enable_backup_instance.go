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
// account and region (at most one backup instance per KMS instance: the
// claim of the KMS instance's binding stream is appended with the
// BackupEnabled, see bindings.go), then takes the first full backup at
// once. Without a time zone it takes its region's. Enabling again an
// enabled backup instance (a retried request) is refused as such
// (domain.ErrFailedPrecondition) and writes nothing.
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
	if err := s.enable(ctx, op, c, id, in); err != nil {
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

// enable decides the binding and appends it, under the backup instance's
// lock (released before the first full backup, which takes it).
func (s *BackupInstances) enable(ctx context.Context, op string, c Caller, id domain.BackupID, in EnableInput) error {
	defer s.lock(id)()
	return s.decide(ctx, op, func() error {
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
		// Bound in the read model (bindings from before binding streams,
		// and an end whose release went first on a log without atomic
		// multi-stream appends), or in the binding stream.
		bound, ok, err := backupstate.BoundTo(s.State, in.KMSInstance)
		if err != nil {
			return err
		}
		hold, err := s.readBinding(ctx, in.KMSInstance)
		if err != nil {
			return err
		}
		if !ok || bound == b.ID {
			bound = hold.holder()
		}
		if bound == b.ID {
			bound = ""
		}
		d, err := b.Enable(in.KMSInstance, kms, in.Alias, in.TimeZone, bound)
		if err != nil {
			return err
		}
		if _, err := s.zone(d.TimeZone); err != nil { // the region's
			return err
		}
		e := s.newEvent(b, s.Clock.Now(), d)
		claim, err := s.bindingClaim(b, hold, e)
		if err != nil {
			return err
		}
		if err := s.Storage.DataKeys.CreateDataKey(ctx, b.DataRef()); err != nil {
			return fmt.Errorf("%s: create data key: %w", op, err)
		}
		return s.commitBound(ctx, b, []StreamAppend{claim}, e)
	})
}
