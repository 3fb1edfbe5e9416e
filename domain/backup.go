package domain

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

// BackupKind tells a free default backup instance from a provisioned one.
type BackupKind string

// BackupState is where a backup instance is in its lifecycle.
type BackupState string

// Backup kinds and states.
const (
	BackupDefault     BackupKind = "default"
	BackupProvisioned BackupKind = "provisioned"

	StateNotEnabled BackupState = "not-enabled"
	StateEnabled    BackupState = "enabled"
	StateExpired    BackupState = "expired"
	StateReleased   BackupState = "released"
)

// Backup rules.
const (
	DefaultViewableDays = 7
	MinViewableDays     = 7
	MaxViewableDays     = 600
	MaxTermMonths       = 60
	// ReleaseAfterExpiry is how long an expired instance keeps its data
	// before it is released.
	ReleaseAfterExpiry = 15 * 24 * time.Hour
	// IncrementalEvery is the spacing of incremental backups after a full.
	IncrementalEvery = 5 * time.Minute
	MaxAliasLength   = 64
)

// BackupStreamPrefix starts every backup instance's stream.
const BackupStreamPrefix = "backup-"

// BackupStream is the stream of one backup instance's lifecycle and
// checkpoint events.
func BackupStream(id BackupID) string { return BackupStreamPrefix + string(id) }

// Term is a subscription term in months.
type Term struct{ Months int }

var termRe = regexp.MustCompile(`^([1-9][0-9]{0,2})(mo|y)$`)

// ParseTerm reads a term such as "1mo", "12mo" or "1y".
func ParseTerm(s string) (Term, error) {
	m := termRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Term{}, Invalid("parse term", "term %s must be a number of months or years, such as 1mo, 12mo or 1y", Quote(s))
	}
	n, _ := strconv.Atoi(m[1])
	if m[2] == "y" {
		n *= 12
	}
	if n > MaxTermMonths {
		return Term{}, Invalid("parse term", "term %s is longer than %d months", Quote(s), MaxTermMonths)
	}
	return Term{Months: n}, nil
}

// After is the end of a term that starts at start: the same day and time
// t.Months calendar months later, or the last day of that month when it is
// shorter (bought on January 31 for one month: the end of February, never
// March 3).
func (t Term) After(start time.Time) time.Time {
	y, m, d := start.Date()
	first := time.Date(y, m+time.Month(t.Months), 1, start.Hour(), start.Minute(), start.Second(), start.Nanosecond(), start.Location())
	if last := first.AddDate(0, 1, -1).Day(); d > last {
		d = last
	}
	return first.AddDate(0, 0, d-1)
}

func (t Term) String() string {
	if t.Months%12 == 0 {
		return strconv.Itoa(t.Months/12) + "y"
	}
	return strconv.Itoa(t.Months) + "mo"
}

// Backup is the state of one backup instance as its events left it.
type Backup struct {
	ID           BackupID
	Account      AccountID
	Region       string
	Kind         BackupKind
	State        BackupState
	BeforeExpiry BackupState // the state to return to on renew
	ViewableDays int
	ExpiresAt    time.Time // zero: never
	CreatedAt    time.Time
	ExpiredAt    time.Time
	ReleasedAt   time.Time
	Revision     uint64

	// Binding, while enabled (or expired after being enabled).
	KMSInstance InstanceID
	Alias       string
	TimeZone    string
	EnabledAt   time.Time
	EnabledDay  Day
	// Generation counts resets: each generation's data is separate, and a
	// reset or release destroys it.
	Generation uint32
	// DestroyedBelow is how many generations' data is recorded destroyed
	// (BackupDataDestroyed): those below Generation and not below it
	// ended (a reset, a release, an upload deleted) and still have
	// their data key and blobs to destroy (see DestroyEnded).
	DestroyedBelow uint32

	// Uploads (Kind BackupUpload): the one day the file held, where it came
	// from, and the file's ID. Alias holds the upload's name.
	UploadDay      Day
	Source         BackupID
	SourceInstance InstanceID
	FileID         string

	// The chain of checkpoints of the current generation.
	Checkpoints     uint64    // sequence number of the last checkpoint (0: none)
	NextRevision    uint64    // first KMS stream revision not backed up yet
	LastDigest      [32]byte  // digest of the last checkpoint
	LastFullAt      time.Time // instant covered by the last full backup
	LastFullDay     Day
	LastFullSeq     uint64    // the last full backup's checkpoint
	LastFullNext    uint64    // the KMS revisions it covers up to
	LastIncremental time.Time // instant covered by the last incremental

	// The newest base of the generation (see BackupBaseStored); Bases is
	// 0 when it has none (a generation of the first version).
	Bases          uint64
	BaseSeq        uint64 // the checkpoint whose state it holds
	BaseNext       uint64 // the KMS revisions it covers up to
	BaseRecords    uint64 // its items and versions
	LastBaseDigest [32]byte

	// ResumedAt is when a renewal reactivated the instance after it had
	// expired (zero if it never did since it was enabled): checkpoints that
	// fell due before it are covered by one catch-up checkpoint at it, never
	// back-filled.
	ResumedAt time.Time
	// SourceReleased is recorded once the bound KMS instance was released:
	// from then on the instance copies nothing more of it (see
	// MarkSourceReleased).
	SourceReleased SourceRelease
	// Failing is set while the instance's scheduled work fails (see Fail);
	// the next scheduled work that succeeds clears it.
	Failing Failure
}

// DataRef names the data key and data of a backup generation.
func (b *Backup) DataRef() string { return DataRef(b.ID, b.Generation) }

// DataRef names the data key and data of generation gen of a backup.
func DataRef(id BackupID, gen uint32) string {
	return string(id) + "/" + strconv.FormatUint(uint64(gen), 10)
}

// Zone is the IANA name of the time zone the instance counts its days in
// and shows its times in: its own, or UTC while it has none (not enabled).
func (b *Backup) Zone() string {
	if b.TimeZone == "" {
		return "UTC"
	}
	return b.TimeZone
}

// Location returns the instance's time zone; loader is time.LoadLocation or
// an equivalent the caller provides.
func (b *Backup) Location(loader func(string) (*time.Location, error)) (*time.Location, error) {
	if b.TimeZone == "" {
		return time.UTC, nil
	}
	return loader(b.TimeZone)
}

// Backup lifecycle and checkpoint events.
const (
	TypeBackupCreated      = "BackupInstanceCreated"
	TypeBackupEnabled      = "BackupInstanceEnabled"
	TypeBackupExtended     = "BackupViewableDaysExtended"
	TypeBackupRenewed      = "BackupInstanceRenewed"
	TypeBackupExpired      = "BackupInstanceExpired"
	TypeBackupReleased     = "BackupInstanceReleased"
	TypeBackupReset        = "BackupInstanceReset"
	TypeBackupCheckpointed = "BackupCheckpointed"
	TypeSourceReleased     = "BackupSourceReleased"
	TypeBackupFailing      = "BackupFailing"
	TypeBackupBaseStored   = "BackupBaseStored"
	TypeDataDestroyed      = "BackupDataDestroyed"
)

// BackupCreated records a new backup instance.
type BackupCreated struct {
	Backup       BackupID
	Kind         BackupKind
	Region       string
	ViewableDays uint32
	ExpiresAt    time.Time
}

// BackupEnabled records the binding to a KMS instance.
type BackupEnabled struct {
	KMSInstance InstanceID
	Alias       string
	TimeZone    string
}

// BackupExtended records more viewable days.
type BackupExtended struct{ ViewableDays uint32 }

// BackupRenewed records a new expiry.
type BackupRenewed struct{ ExpiresAt time.Time }

// BackupExpired records the expiry.
type BackupExpired struct{}

// BackupReleased records the release; the data is destroyed.
type BackupReleased struct{}

// BackupReset records a reset: the data of the generation is
// destroyed and the binding removed.
type BackupReset struct{}

// BackupCheckpointed records one checkpoint: the slice of the KMS
// instance's stream between the previous checkpoint and this one (KMS
// revisions [From, Next)), stored as the blob Slice (or, when it took
// several, as Parts), and, when Full, that this checkpoint is the day's
// full backup.
//
// The first checkpoint of a generation written by this version holds no
// slice: the history from before enabling is written as base 0 (InBase),
// recorded by the BackupBaseStored of the same Seq appended with it.
// Checkpoints without Parts or InBase encode exactly as the first
// generation's did (so their digests stay valid); the others add both
// after the fields of that generation.
type BackupCheckpointed struct {
	Generation  uint32
	Seq         uint64
	Full        bool
	At          time.Time // the instant the checkpoint covers up to
	Day         Day       // At's day in the instance's time zone
	From, Next  uint64    // KMS stream revisions covered: [From, Next)
	Slice       string    // the blob holding the slice (empty when From == Next, or held in Parts or a base)
	SliceDigest [32]byte  // SHA-256 of the blob
	PrevDigest  [32]byte  // the previous checkpoint's Digest
	Digest      [32]byte  // see CheckpointDigest
	// Parts lists the parts of the slice, in revision order (Slice is
	// then empty: it named the one blob of a slice of the first
	// generation).
	Parts []SlicePart
	// InBase says that revisions [From, Next) are in no slice: the base of
	// this checkpoint holds their state (the first checkpoint of a
	// generation, whose history from before enabling is not viewable).
	InBase bool
}

// SliceParts returns the parts of the checkpoint's slice, in revision
// order: Parts, or the one blob Slice of the first generation, or none.
// The count of events of that one blob is not recorded (Events 0): it is
// Next - From, except for the first checkpoint of an upload made before
// bases (an upload's is now held by base 0), which holds only the events
// that build its state.
func (c *BackupCheckpointed) SliceParts() []SlicePart {
	if len(c.Parts) > 0 {
		return c.Parts
	}
	if c.Slice == "" {
		return nil
	}
	return []SlicePart{{Name: c.Slice, Digest: c.SliceDigest, From: c.From, Next: c.Next}}
}

func (BackupCreated) EventType() string      { return TypeBackupCreated }
func (BackupEnabled) EventType() string      { return TypeBackupEnabled }
func (BackupExtended) EventType() string     { return TypeBackupExtended }
func (BackupRenewed) EventType() string      { return TypeBackupRenewed }
func (BackupExpired) EventType() string      { return TypeBackupExpired }
func (BackupReleased) EventType() string     { return TypeBackupReleased }
func (BackupReset) EventType() string        { return TypeBackupReset }
func (BackupCheckpointed) EventType() string { return TypeBackupCheckpointed }
func (BackupBaseStored) EventType() string   { return TypeBackupBaseStored }

// backupOp refuses operations an instance's state does not allow: an
// expired instance allows only show and renew; a released one nothing.
func (b *Backup) usable(op string) error {
	switch b.State {
	case StateExpired:
		return Errorf(ErrFailedPrecondition, op, string(b.ID), "renew it first", "backup instance expired on %s", b.ExpiresAt.Format(time.RFC3339))
	case StateReleased:
		return Errorf(ErrFailedPrecondition, op, string(b.ID), "", "backup instance is released")
	}
	return nil
}

// Usable refuses an operation on an expired or released instance.
func (b *Backup) Usable(op string) error { return b.usable(op) }

// CheckDay refuses a day whose data cannot be seen, restored or downloaded
// on day today (in the instance's time zone): for an upload, any day but
// the one it holds ("" stands for it); otherwise a day before the instance
// was enabled, in the future, or viewableDays or more ago. It does not
// check the instance's state (Usable does). Errors: ErrInvalidArgument
// when an instance's day is missing; ErrFailedPrecondition, with the
// viewable days as a hint.
func (b *Backup) CheckDay(op string, d, today Day) error {
	if b.Kind == BackupUpload {
		if d == "" || d == b.UploadDay {
			return nil
		}
		return Errorf(ErrFailedPrecondition, op, string(d), "leave out the day, or use "+string(b.UploadDay),
			"upload %s holds only the day %s", b.ID, b.UploadDay)
	}
	if d == "" {
		return Invalid(op, "day is required: a viewable day of %s as YYYY-MM-DD", b.ID)
	}
	if b.EnabledDay == "" || !Viewable(b.EnabledDay, d, today, b.ViewableDays) {
		hint := "nothing of " + string(b.ID) + " is viewable yet"
		if first, last, ok := ViewableWindow(b.EnabledDay, today, b.ViewableDays); ok {
			hint = "viewable days of " + string(b.ID) + ": from " + string(first) + " to " + string(last)
		}
		return Errorf(ErrFailedPrecondition, op, string(d), hint, "day is not viewable")
	}
	return nil
}

// NewDefaultBackup decides the default backup instance of a region.
func NewDefaultBackup(id BackupID, region string) (*BackupCreated, error) {
	if err := ValidateRegion(region); err != nil {
		return nil, err
	}
	return &BackupCreated{Backup: id, Kind: BackupDefault, Region: region, ViewableDays: DefaultViewableDays}, nil
}

// NewProvisionedBackup decides a provisioned backup instance.
func NewProvisionedBackup(id BackupID, region string, viewableDays int, term Term, now time.Time) (*BackupCreated, error) {
	const op = "create backup instance"
	if err := ValidateRegion(region); err != nil {
		return nil, err
	}
	if viewableDays < MinViewableDays || viewableDays > MaxViewableDays {
		return nil, Invalid(op, "viewable days %d must be between %d and %d", viewableDays, MinViewableDays, MaxViewableDays)
	}
	if term.Months < 1 || term.Months > MaxTermMonths {
		return nil, Invalid(op, "term must be 1 to %d months, such as 1mo, 12mo or 1y", MaxTermMonths)
	}
	return &BackupCreated{Backup: id, Kind: BackupProvisioned, Region: region, ViewableDays: uint32(viewableDays),
		ExpiresAt: term.After(now).UTC()}, nil
}

// Enable decides binding the instance to KMS instance want, which is in
// (nil when there is none), of the same account and region. boundTo is
// the backup instance that already backs in up, if any. The alias is kept
// trimmed (see CleanAlias). timeZone is an IANA name whose form is checked
// here (the caller checks that it loads); empty, it is the region's (see
// RegionTimeZone), since the daily full backup is at local midnight.
// Every error is about the backup instance (its Item) and names the KMS
// instance in its message, so that neither reads as the other.
func (b *Backup) Enable(want InstanceID, in *Instance, alias, timeZone string, boundTo BackupID) (*BackupEnabled, error) {
	const op = "enable backup instance"
	if err := b.notUpload(op); err != nil {
		return nil, err
	}
	if err := b.usable(op); err != nil {
		return nil, err
	}
	if b.State == StateEnabled {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "reset it first to bind another KMS instance", "backup instance is already enabled for KMS instance %s", b.KMSInstance)
	}
	if in == nil || in.Account != b.Account {
		return nil, Errorf(ErrNotFound, op, string(b.ID), "", "KMS instance %s not found", want)
	}
	if in.Region != b.Region {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "use a backup instance of region "+in.Region,
			"KMS instance %s is in region %s, the backup instance in %s", in.ID, in.Region, b.Region)
	}
	if in.Released {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "", "KMS instance %s is released", in.ID)
	}
	if boundTo != "" {
		return nil, Errorf(ErrAlreadyExists, op, string(b.ID), "reset "+string(boundTo)+" first",
			"KMS instance %s is already backed up by backup instance %s", in.ID, boundTo)
	}
	alias, err := CleanAlias("alias", alias)
	if err != nil {
		return nil, err
	}
	if timeZone == "" {
		timeZone = RegionTimeZone(b.Region)
	}
	if err := ValidateTimeZone(timeZone); err != nil {
		return nil, err
	}
	return &BackupEnabled{KMSInstance: in.ID, Alias: alias, TimeZone: timeZone}, nil
}

// Extend decides more viewable days: upwards only, at most 600, never for
// the default instance.
func (b *Backup) Extend(days int) (*BackupExtended, error) {
	const op = "extend viewable days"
	if err := b.notUpload(op); err != nil {
		return nil, err
	}
	if err := b.usable(op); err != nil {
		return nil, err
	}
	if b.Kind == BackupDefault {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "create a provisioned backup instance for more days",
			"the default backup instance always keeps %d viewable days", DefaultViewableDays)
	}
	if days <= b.ViewableDays {
		return nil, Invalid(op, "viewable days can only grow: %d is not more than the current %d", days, b.ViewableDays)
	}
	if days > MaxViewableDays {
		return nil, Invalid(op, "viewable days %d is more than the maximum %d", days, MaxViewableDays)
	}
	return &BackupExtended{ViewableDays: uint32(days)}, nil
}

// Renew decides a longer term. An expired (not released) instance is
// reactivated; its new term starts now, otherwise at the current expiry.
func (b *Backup) Renew(term Term, now time.Time) (*BackupRenewed, error) {
	const op = "renew backup instance"
	if err := b.notUpload(op); err != nil {
		return nil, err
	}
	if b.Kind == BackupDefault {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "", "the default backup instance never expires")
	}
	if b.State == StateReleased {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "create a new backup instance", "backup instance is released and can no longer be renewed")
	}
	if term.Months < 1 || term.Months > MaxTermMonths {
		return nil, Invalid(op, "term must be 1 to %d months", MaxTermMonths)
	}
	start := b.ExpiresAt
	if b.State == StateExpired || start.Before(now) {
		start = now
	}
	return &BackupRenewed{ExpiresAt: term.After(start).UTC()}, nil
}

// ExpiredBy reports whether a provisioned instance's term has ended at
// instant at (its expiry is at or before it), recorded or not: no
// checkpoint may cover at.
func (b *Backup) ExpiredBy(at time.Time) bool {
	return b.Kind == BackupProvisioned && !b.ExpiresAt.IsZero() && !at.Before(b.ExpiresAt)
}

// Expire decides the expiry at now, if due.
func (b *Backup) Expire(now time.Time) (*BackupExpired, bool) {
	if b.Kind != BackupProvisioned || b.ExpiresAt.IsZero() || now.Before(b.ExpiresAt) ||
		b.State == StateExpired || b.State == StateReleased {
		return nil, false
	}
	return &BackupExpired{}, true
}

// ReleaseDue is when an expired instance is released.
func (b *Backup) ReleaseDue() time.Time { return b.ExpiresAt.Add(ReleaseAfterExpiry) }

// Release decides the release at now, if due.
func (b *Backup) Release(now time.Time) (*BackupReleased, bool) {
	if b.State != StateExpired || now.Before(b.ReleaseDue()) {
		return nil, false
	}
	return &BackupReleased{}, true
}

// Reset decides destroying the data and unbinding.
func (b *Backup) Reset() (*BackupReset, error) {
	const op = "reset backup instance"
	if err := b.notUpload(op); err != nil {
		return nil, err
	}
	if err := b.usable(op); err != nil {
		return nil, err
	}
	if b.State != StateEnabled {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "", "backup instance is not enabled: there is nothing to reset")
	}
	return &BackupReset{}, nil
}

// Apply evolves the backup instance by one of its events.
func (b *Backup) Apply(e Event, d EventData) {
	b.Revision = e.Revision
	switch d := d.(type) {
	case *BackupCreated:
		*b = Backup{ID: d.Backup, Account: e.Account, Region: d.Region, Kind: d.Kind, State: StateNotEnabled,
			ViewableDays: int(d.ViewableDays), ExpiresAt: d.ExpiresAt, CreatedAt: e.OccurredAt, Revision: e.Revision}
	case *BackupUploaded:
		*b = Backup{ID: d.Backup, Account: e.Account, Region: d.Region, Kind: BackupUpload, State: StateUploaded,
			ViewableDays: 1, CreatedAt: e.OccurredAt, Revision: e.Revision, Alias: d.Name, TimeZone: d.TimeZone,
			EnabledAt: e.OccurredAt, UploadDay: d.Day, Source: d.Source, SourceInstance: d.KMSInstance, FileID: d.FileID}
	case *BackupUploadDeleted:
		b.State, b.ReleasedAt = StateReleased, e.OccurredAt
		b.clearData()
	case *BackupEnabled:
		b.State, b.KMSInstance, b.Alias, b.TimeZone, b.EnabledAt = StateEnabled, d.KMSInstance, d.Alias, d.TimeZone, e.OccurredAt
		b.ResumedAt, b.SourceReleased = time.Time{}, SourceRelease{}
	case *BackupExtended:
		b.ViewableDays = int(d.ViewableDays)
	case *BackupRenewed:
		b.ExpiresAt = d.ExpiresAt
		if b.State == StateExpired {
			b.State, b.ExpiredAt, b.ResumedAt = b.BeforeExpiry, time.Time{}, e.OccurredAt
		}
	case *BackupExpired:
		b.BeforeExpiry, b.State, b.ExpiredAt = b.State, StateExpired, e.OccurredAt
		b.Failing = Failure{} // an expired instance has no scheduled work but its release
	case *BackupReleased:
		// A released instance keeps its row (listed on request) but
		// nothing of its binding: its KMS instance may be backed up anew.
		b.State, b.ReleasedAt, b.KMSInstance = StateReleased, e.OccurredAt, ""
		b.SourceReleased = SourceRelease{}
		b.clearData()
	case *BackupReset:
		b.State, b.KMSInstance, b.Alias, b.TimeZone, b.EnabledAt = StateNotEnabled, "", "", "", time.Time{}
		b.ResumedAt, b.SourceReleased = time.Time{}, SourceRelease{}
		b.clearData()
	case *BackupDataDestroyed:
		if d.Generation > b.DestroyedBelow && d.Generation <= b.Generation {
			b.DestroyedBelow = d.Generation
		}
	case *BackupSourceReleased:
		b.SourceReleased = SourceRelease{At: e.OccurredAt, Next: d.Next, End: d.End}
		b.Failing = Failure{}
	case *BackupFailing:
		b.Failing = Failure{Work: d.Work, Reason: d.Reason, Since: d.Since, Attempts: d.Attempts}
	case *BackupBaseStored:
		if d.Generation != b.Generation || d.Seq <= b.BaseSeq {
			return // of a destroyed generation, or older than the newest
		}
		b.Bases++
		b.BaseSeq, b.BaseNext, b.BaseRecords, b.LastBaseDigest = d.Seq, d.Next, d.Items+d.Versions, d.Digest
	case *BackupCheckpointed:
		if d.Generation != b.Generation {
			return // a checkpoint of a destroyed generation changes nothing
		}
		b.Checkpoints, b.NextRevision, b.LastDigest = d.Seq, d.Next, d.Digest
		b.Failing = Failure{}
		if d.Seq == 1 {
			b.EnabledDay = d.Day
		}
		if d.Full {
			b.LastFullAt, b.LastFullDay, b.LastFullSeq, b.LastFullNext = d.At, d.Day, d.Seq, d.Next
		} else {
			b.LastIncremental = d.At
		}
	}
}

func (b *Backup) clearData() {
	b.Failing = Failure{}
	b.Generation++
	b.Checkpoints, b.NextRevision, b.LastDigest = 0, 0, [32]byte{}
	b.LastFullAt, b.LastFullDay, b.LastIncremental, b.EnabledDay = time.Time{}, "", time.Time{}, ""
	b.LastFullSeq, b.LastFullNext = 0, 0
	b.Bases, b.BaseSeq, b.BaseNext, b.BaseRecords, b.LastBaseDigest = 0, 0, 0, 0, [32]byte{}
}
