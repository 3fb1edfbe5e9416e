package commands

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Restores holds the restore use cases: plan (also alone, as a dry run),
// apply and validate, and replay. The source is a restore point of a
// backup instance's data, read through Sources; the target is a KMS
// instance of the software KMS. The rules of a plan are the domain's
// (domain.RestorePlanner); these use cases stream the point's items
// through them, so memory does not grow with the number of items.
type Restores struct {
	// Days finds the backup instance and its day as the caller may see
	// them, and loads the checkpoint a replay digests.
	Days *DayData
	KMS  *KMS
	// Sealer opens key material under the backup's data key.
	Sealer  Sealer
	Audit   *Audit
	Sources RestoreSources
	// BatchItems and BatchBytes bound a batch of an apply: the items
	// written by one atomic append to the target's stream (0: the
	// defaults, DefaultRestoreBatchItems and DefaultRestoreBatchBytes).
	BatchItems int
	BatchBytes int
}

// Defaults of a restore's batches, within every event log's limits: NATS
// JetStream takes 500 events in one atomic batch (natsjs.MaxBatchEvents),
// and a batch of n items is 2n+1 events (each item's event, the claim of
// its name, and the batch's audit record); EventStoreDB takes 1 MiB in one
// append by default (esdb.DefaultMaxAppendSize). About 250 items was the
// fastest of 100, 250 and 500 in BenchmarkRestoreWhole (docs/BENCHMARKS.md).
const (
	DefaultRestoreBatchItems = 249
	DefaultRestoreBatchBytes = 512 << 10
)

// How much of a plan a result lists: the first items, and the first
// findings of each code; counts say how many there are in all.
const (
	MaxListedItems    = 1000
	MaxListedFindings = 100 // of each code
)

// RestoreRequest is what to restore, from where, to where, parsed at the
// edge (API, console, command line) into typed values.
type RestoreRequest struct {
	From domain.BackupID
	// Point is the day (empty for an upload: the day it holds; or taken
	// from At, in the backup's time zone) and, when At is set, the
	// instant of that day whose state is restored.
	Point     RestorePoint
	Selection domain.RestoreSelection
	Target    domain.InstanceID
	Region    string // optional: must be the target's region
}

// RestoreInput is a restore request as the API and the console receive
// it: strings. Parse makes it the typed request the use cases take.
type RestoreInput struct {
	From, Day, At        string // Day may be empty (an upload, or At's day); At too (the whole day)
	Keys, Secrets        []string
	All                  bool
	ToInstance, ToRegion string // ToRegion may be empty
}

// Parse parses a restore request, once, at the edge. Errors:
// domain.ErrInvalidArgument naming the field.
func (in RestoreInput) Parse() (RestoreRequest, error) {
	const op = "restore"
	from, err := domain.ParseBackupID(in.From)
	if err != nil {
		return RestoreRequest{}, err
	}
	to, err := domain.ParseInstanceID(in.ToInstance)
	if err != nil {
		return RestoreRequest{}, err
	}
	var point RestorePoint
	if in.Day != "" {
		if point.Day, err = domain.ParseDay(in.Day); err != nil {
			return RestoreRequest{}, domain.Invalid(op, "day must be a date as YYYY-MM-DD, such as 2026-05-01")
		}
	}
	if in.At != "" {
		if point.At, err = time.Parse(time.RFC3339, in.At); err != nil {
			return RestoreRequest{}, domain.Invalid(op, "at must be an RFC 3339 time such as 2026-05-01T10:05:00Z")
		}
	}
	sel, err := domain.ParseRestoreSelection(in.All, in.Keys, in.Secrets)
	if err != nil {
		return RestoreRequest{}, err
	}
	if in.ToRegion != "" {
		if err := domain.ValidateRegion(in.ToRegion); err != nil {
			return RestoreRequest{}, err
		}
	}
	return RestoreRequest{From: from, Point: point, Selection: sel, Target: to, Region: in.ToRegion}, nil
}

// Restore finding codes: every reason a plan cannot be applied (the
// domain's), and the validation's findings after an apply.
const (
	FindingTargetNotFound   = domain.FindingTargetNotFound
	FindingTargetReleased   = domain.FindingTargetReleased
	FindingRegionMismatch   = domain.FindingRegionMismatch
	FindingKeyQuota         = domain.FindingKeyQuota
	FindingSecretQuota      = domain.FindingSecretQuota
	FindingKeyExists        = domain.FindingKeyExists
	FindingSecretExists     = domain.FindingSecretExists
	FindingSecretKeyMissing = domain.FindingSecretKeyMissing
	FindingBackupExpired    = domain.FindingBackupExpired
	FindingBackupReleased   = domain.FindingBackupReleased
	FindingDayNotViewable   = domain.FindingDayNotViewable
	FindingItemNotInBackup  = domain.FindingItemNotInBackup
	// Validation findings, after an apply.
	FindingVersionMismatch     = "version-mismatch"
	FindingUndecryptableSecret = "secret-does-not-decrypt"
)

// RestoreFinding is one problem a plan or a validation found.
type RestoreFinding = domain.RestoreFinding

// Restore item statuses.
const (
	StatusPlanned  = domain.RestorePlanned
	StatusPresent  = domain.RestorePresent
	StatusRestored = domain.RestoreRestored
)

// RestoreItem is one key or secret of a plan.
type RestoreItem struct {
	Kind        string // "key" or "secret"
	ID          string // key ID or secret name
	Versions    uint32
	KeyID       string // secrets: the key that encrypts the newest version
	Description string // keys
	Status      string
}

// RestorePlan is a restore checked against its target, with every finding.
// It lists the first MaxListedItems items and the first MaxListedFindings
// findings of each code; the counts cover them all.
type RestorePlan struct {
	Backup   domain.BackupID
	Day      domain.Day
	At       time.Time // the instant the state is at (for a whole day: its last checkpoint)
	From, To uint64    // the checkpoints the items come from (0 when the source does not say)
	Target   domain.InstanceID
	Region   string
	Items    []RestoreItem // keys first, then secrets
	Keys     int           // keys in the plan
	Secrets  int           // secrets in the plan
	Present  int           // items already present and identical in the target
	Findings []RestoreFinding
	// Omitted counts, per finding code, the findings not listed.
	Omitted map[string]int
}

// ItemCount is the number of items of the plan, listed or not.
func (p *RestorePlan) ItemCount() int { return p.Keys + p.Secrets }

// NothingToRestore reports whether the plan has items and every one is
// already present in the target, identical to the backup's (a restore
// into the instance a backup was taken from, where nothing changed):
// applying it writes nothing.
func (p *RestorePlan) NothingToRestore() bool { return p.Present > 0 && p.Present == p.ItemCount() }

// FindingCount is the number of findings, listed or not.
func (p *RestorePlan) FindingCount() int {
	n := len(p.Findings)
	for _, m := range p.Omitted {
		n += m
	}
	return n
}

// RestoreResult is an applied restore and its validation.
type RestoreResult struct {
	Plan           *RestorePlan
	Applied        bool
	Restored       int
	AlreadyPresent int
	Batches        int // atomic appends written
	Validation     []RestoreFinding
	// ValidationOmitted counts, per code, the validation findings not
	// listed.
	ValidationOmitted map[string]int
}

// Restore phases, as progress reports them.
const (
	PhasePlan     = "plan"
	PhaseApply    = "apply"
	PhaseValidate = "validate"
)

// RestoreProgress is how far a restore has gone: Done of Total items of a
// phase.
type RestoreProgress struct {
	Phase       string
	Done, Total uint64
}

// ProgressFunc receives a restore's progress: at the start and end of each
// phase, after each batch of an apply, and every progressEvery items of a
// plan or a validation. It runs on the restore's goroutine: a slow one
// slows the restore.
type ProgressFunc func(RestoreProgress)

// progressEvery is how many items a plan or validation reads between two
// reports of progress.
const progressEvery = 1000

// findingList keeps the first MaxListedFindings findings of each code and
// counts the others: memory stays bounded whatever a plan finds.
type findingList struct {
	listed  []RestoreFinding
	perCode map[string]int
	omitted map[string]int
}

func (l *findingList) add(fs ...RestoreFinding) {
	for _, f := range fs {
		if l.perCode == nil {
			l.perCode = map[string]int{}
		}
		if l.perCode[f.Code]++; l.perCode[f.Code] <= MaxListedFindings {
			l.listed = append(l.listed, f)
			continue
		}
		if l.omitted == nil {
			l.omitted = map[string]int{}
		}
		l.omitted[f.Code]++
	}
}

func (l *findingList) empty() bool { return len(l.listed) == 0 }
