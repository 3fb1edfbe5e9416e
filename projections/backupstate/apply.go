package backupstate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Name is the projection's name in the projection store.
const Name = "backup-state"

// Apply applies one event of the log to the read model. Events of types
// this projection does not know (the KMS's, accounts') are ignored, so it
// can follow the whole log. An event whose stream revision is not after the
// one the instance last applied is ignored too, which makes Apply
// idempotent; events must therefore carry their log revision. Apply the
// events of the log in order, one at a time: it is not safe for concurrent
// use on one store. The queries are safe for concurrent use when the
// Reader is.
//
// Errors: domain.ErrCorrupt for an undecodable event or a backup event
// outside a backup stream; domain.ErrNotFound (wrapped) for an event of an
// instance that was never created; the Txn's errors.
func Apply(txn projections.Txn, e domain.Event) error {
	if !known(e.Type) {
		return nil
	}
	d, err := e.Decode()
	if err != nil {
		return err
	}
	rest, ok := strings.CutPrefix(e.Stream, domain.BackupStreamPrefix)
	if !ok || rest == "" {
		return domain.Corruption("event %s at position %d: %s outside a backup stream (%q)", e.ID, e.Position, e.Type, e.Stream)
	}
	id := domain.BackupID(rest)
	var isCreate bool
	var createdID domain.BackupID
	switch d := d.(type) {
	case *domain.BackupCreated:
		isCreate, createdID = true, d.Backup
	case *domain.BackupUploaded:
		isCreate, createdID = true, d.Backup
	}
	if isCreate && createdID != id {
		return domain.Corruption("event %s at position %d: creates %s in the stream of %s", e.ID, e.Position, createdID, id)
	}

	b, err := Get(txn, id)
	switch {
	case err == nil:
		if isCreate || e.Revision <= b.Revision {
			return nil // applied already
		}
	case errors.Is(err, domain.ErrNotFound) && isCreate:
		b = &domain.Backup{}
	default:
		return fmt.Errorf("apply %s at position %d: %w", e.Type, e.Position, err)
	}
	bound, wasScheduled := b.KMSInstance, !isCreate && hasScheduledWork(b)
	b.Apply(e, d)
	if err := txn.Set(backupKey(id), encodeBackup(b)); err != nil {
		return err
	}

	switch d.(type) {
	case *domain.BackupUploaded:
		if err := txn.Set(accountBackupKey(b.Account, id), nil); err != nil {
			return err
		}
	case *domain.BackupUploadDeleted:
		// The record stays (as released) so that the log replays the same;
		// the account's list no longer shows it.
		if err := txn.Delete(accountBackupKey(b.Account, id)); err != nil {
			return err
		}
	case *domain.BackupCreated:
		if err := txn.Set(accountBackupKey(b.Account, id), nil); err != nil {
			return err
		}
		if b.Kind == domain.BackupDefault {
			if err := txn.Set(defaultKey(b.Account, b.Region), []byte(id)); err != nil {
				return err
			}
		}
	case *domain.BackupEnabled:
		if err := txn.Set(bindingKey(b.KMSInstance), []byte(id)); err != nil {
			return err
		}
	case *domain.BackupReset, *domain.BackupReleased:
		if err := unbind(txn, bound, id); err != nil {
			return err
		}
	}

	// Index keys are written only when they change: a key rewritten on every
	// checkpoint would leave thousands of versions for scans to step over.
	switch now := hasScheduledWork(b); {
	case now && !wasScheduled:
		return txn.Set(scheduledKey(id), nil)
	case !now && wasScheduled:
		return txn.Delete(scheduledKey(id))
	}
	return nil
}

// hasScheduledWork says whether the scheduler has anything to decide for
// an instance: checkpoints (enabled), a release (expired), or an expiry (a
// provisioned instance that is not enabled still expires).
func hasScheduledWork(b *domain.Backup) bool {
	switch b.State {
	case domain.StateEnabled, domain.StateExpired:
		return true
	case domain.StateNotEnabled:
		return b.Kind == domain.BackupProvisioned && !b.ExpiresAt.IsZero()
	}
	return false
}

// unbind removes the binding of KMS instance in, if it is still id's.
func unbind(txn projections.Txn, in domain.InstanceID, id domain.BackupID) error {
	if in == "" {
		return nil
	}
	v, ok, err := txn.Get(bindingKey(in))
	if err != nil || !ok || domain.BackupID(v) != id {
		return err
	}
	return txn.Delete(bindingKey(in))
}

func known(typ string) bool {
	switch typ {
	case domain.TypeBackupCreated, domain.TypeBackupEnabled, domain.TypeBackupExtended, domain.TypeBackupRenewed,
		domain.TypeBackupExpired, domain.TypeBackupReleased, domain.TypeBackupReset, domain.TypeBackupCheckpointed,
		domain.TypeBackupUploaded, domain.TypeBackupUploadDeleted, domain.TypeSourceReleased, domain.TypeBackupFailing,
		domain.TypeBackupBaseStored, domain.TypeDataDestroyed:
		return true
	}
	return false
}
