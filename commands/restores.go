package commands

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Restores holds the restore use cases: plan (also alone, as a dry run),
// apply and validate, and replay. The source is a backup instance's data
// (the backupdata read model, itself a projection of the backed-up slices);
// the target is a KMS instance of the software KMS.
type Restores struct {
	Backups *Backups
	KMS     *KMS
	Audit   *Audit
}

// RestoreRequest is what to restore, from where, to where.
type RestoreRequest struct {
	From       domain.BackupID
	Day        string // YYYY-MM-DD, a viewable day of From
	At         string // optional RFC 3339 instant within Day: the state at the last checkpoint at or before it
	Keys       []string
	Secrets    []string
	All        bool
	ToInstance domain.InstanceID
	ToRegion   string // optional: must be the target's region
}

// Restore finding codes: every reason a plan cannot be applied.
const (
	FindingTargetNotFound   = "target-not-found"
	FindingTargetReleased   = "target-released"
	FindingRegionMismatch   = "region-mismatch"
	FindingKeyQuota         = "key-quota-exceeded"
	FindingSecretQuota      = "secret-quota-exceeded"
	FindingKeyExists        = "key-exists"
	FindingSecretExists     = "secret-exists"
	FindingSecretKeyMissing = "secret-key-missing"
	FindingBackupExpired    = "backup-expired"
	FindingDayNotViewable   = "day-not-viewable"
	FindingItemNotInBackup  = "item-not-in-backup"
	// Validation findings, after an apply.
	FindingVersionMismatch     = "version-mismatch"
	FindingUndecryptableSecret = "secret-does-not-decrypt"
)

// RestoreFinding is one problem a plan or a validation found.
type RestoreFinding struct {
	Code    string `json:"code"`
	Item    string `json:"item,omitempty"`
	Message string `json:"message"`
}

// Restore item statuses.
const (
	StatusPlanned         = "planned"
	StatusAlreadyRestored = "already-restored"
	StatusRestored        = "restored"
)

// RestoreItem is one key or secret of a plan.
type RestoreItem struct {
	Kind        string // "key" or "secret"
	ID          string // key ID or secret name
	Versions    uint32
	KeyID       string // secrets: the key that encrypts the newest version
	Description string // keys
	CreateSeq   uint64 // the incarnation in the backup
	Status      string
}

// RestorePlan is a restore checked against its target, with every finding.
type RestorePlan struct {
	Backup   domain.BackupID
	Day      domain.Day
	From, To uint64    // the checkpoints the items come from
	At       time.Time // the instant of checkpoint To
	Target   domain.InstanceID
	Region   string
	Items    []RestoreItem // keys first, then secrets
	Findings []RestoreFinding
}

// RestoreResult is an applied restore and its validation.
type RestoreResult struct {
	Plan            *RestorePlan
	Applied         bool
	Restored        int
	AlreadyRestored int
	Validation      []RestoreFinding
}
