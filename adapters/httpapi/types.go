package httpapi

import (
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/audit"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// The JSON shapes of the API. They carry identifiers, counts and times,
// never key material; secret values and plaintexts travel base64-encoded
// only in the responses that exist to return them.

// ErrorBody is every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names the error class (see errorCodes) and says what to do.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// Account is an account; Token is set only in the response that created it
// or replaced its token.
type Account struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Token     string    `json:"token,omitempty"`
}

// CreateAccountRequest is POST /v1/accounts.
type CreateAccountRequest struct {
	Name string `json:"name"`
}

// WhoAmI is GET /v1/whoami.
type WhoAmI struct {
	Account string `json:"account,omitempty"`
	Admin   bool   `json:"admin"`
}

// Instance is a KMS instance.
type Instance struct {
	ID          string     `json:"id"`
	Account     string     `json:"account"`
	Region      string     `json:"region"`
	KeyQuota    uint32     `json:"key_quota"`
	SecretQuota uint32     `json:"secret_quota"`
	Keys        uint32     `json:"keys"`
	Secrets     uint32     `json:"secrets"`
	State       string     `json:"state"` // active | released
	CreatedAt   time.Time  `json:"created_at"`
	ReleasedAt  *time.Time `json:"released_at,omitempty"`
}

// CreateInstanceRequest is POST /v1/kms/instances. Omitted quotas take the
// defaults (1000 each).
type CreateInstanceRequest struct {
	Region      string `json:"region"`
	KeyQuota    *int64 `json:"key_quota,omitempty"`
	SecretQuota *int64 `json:"secret_quota,omitempty"`
}

// Version is one version of a key or secret.
type Version struct {
	Version   uint32    `json:"version"`
	KeyID     string    `json:"key_id,omitempty"` // for secrets: the key that encrypts it
	CreatedAt time.Time `json:"created_at"`
}

// Key is a live key, without material.
type Key struct {
	ID             string    `json:"id"`
	Instance       string    `json:"instance"`
	Region         string    `json:"region"`
	Description    string    `json:"description"`
	Spec           string    `json:"spec"`
	PrimaryVersion uint32    `json:"primary_version"`
	Versions       []Version `json:"versions"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// CreateKeyRequest is POST /v1/kms/keys.
type CreateKeyRequest struct {
	Instance    string `json:"instance"`
	Description string `json:"description"`
}

// EncryptRequest is POST /v1/kms/encrypt. Plaintext is base64.
type EncryptRequest struct {
	KeyID     string `json:"key_id"`
	Region    string `json:"region,omitempty"`
	Plaintext []byte `json:"plaintext"`
}

// EncryptResponse carries the ciphertext (kms1:...).
type EncryptResponse struct {
	Ciphertext string `json:"ciphertext"`
	KeyID      string `json:"key_id"`
	Version    uint32 `json:"version"`
}

// DecryptRequest is POST /v1/kms/decrypt.
type DecryptRequest struct {
	Ciphertext string `json:"ciphertext"`
	Region     string `json:"region,omitempty"`
}

// DecryptResponse carries the plaintext (base64).
type DecryptResponse struct {
	Plaintext []byte `json:"plaintext"`
	KeyID     string `json:"key_id"`
	Version   uint32 `json:"version"`
}

// Secret is a live secret's metadata, without its value.
type Secret struct {
	ID             string    `json:"id"` // the secret's name
	Name           string    `json:"name"`
	Instance       string    `json:"instance"`
	Region         string    `json:"region"`
	KeyID          string    `json:"key_id"`
	CurrentVersion uint32    `json:"current_version"`
	Versions       []Version `json:"versions"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// CreateSecretRequest is POST /v1/kms/secrets. Value is base64.
type CreateSecretRequest struct {
	Name     string `json:"name"`
	Instance string `json:"instance"`
	KeyID    string `json:"key_id"`
	Value    []byte `json:"value"`
}

// RotateSecretRequest is POST /v1/kms/secrets/{name}/rotate.
type RotateSecretRequest struct {
	Region string `json:"region,omitempty"`
	Value  []byte `json:"value"`
}

// SecretValue is GET /v1/kms/secrets/{name}/value. Value is base64.
type SecretValue struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version uint32 `json:"version"`
	KeyID   string `json:"key_id"`
	Value   []byte `json:"value"`
}

// BackupInstance is a backup instance. Times are omitted when they have not
// happened: expires_at for an instance that never expires (the default
// one), enabled_at and the last backup times before the first enable or
// after a reset. The binding (kms_instance, alias, time_zone) is empty when
// the instance is not enabled; enabled_day is omitted until the first full
// backup.
type BackupInstance struct {
	ID                string    `json:"id"`
	Account           string    `json:"account"`
	Alias             string    `json:"alias"`
	Kind              string    `json:"kind"` // default | provisioned | upload
	Region            string    `json:"region"`
	KMSInstance       string    `json:"kms_instance"`
	ViewableDays      int       `json:"viewable_days"`
	TimeZone          string    `json:"time_zone"`
	State             string    `json:"state"` // not-enabled | enabled | expired | released | uploaded
	ExpiresAt         time.Time `json:"expires_at,omitzero"`
	CreatedAt         time.Time `json:"created_at,omitzero"`
	EnabledAt         time.Time `json:"enabled_at,omitzero"`
	EnabledDay        string    `json:"enabled_day,omitempty"` // YYYY-MM-DD in time_zone
	Generation        uint32    `json:"generation"`
	Checkpoints       uint64    `json:"checkpoints"`
	LastFullAt        time.Time `json:"last_full_at,omitzero"`
	LastIncrementalAt time.Time `json:"last_incremental_at,omitzero"`
	// Uploads only: the day the file held, where it came from, its file ID.
	UploadDay         string `json:"upload_day,omitempty"`
	SourceBackup      string `json:"source_backup,omitempty"`
	SourceKMSInstance string `json:"source_kms_instance,omitempty"`
	FileID            string `json:"file_id,omitempty"`
	// SourceReleased is set once the bound KMS instance was released: the
	// instance keeps what it holds and copies nothing more of it.
	SourceReleased *SourceReleased `json:"source_released,omitempty"`
	// Failing is set while the instance's scheduled work fails.
	Failing *BackupFailing `json:"failing,omitempty"`
	// LastScrub is the last background verification of the instance's
	// current data by the server that answers (GET of one instance only).
	LastScrub *LastScrub `json:"last_scrub,omitempty"`
}

// SourceReleased tells that a backup instance's KMS instance was released:
// revisions [next_revision, end_revision) of its stream were never backed
// up (never_backed_up of them; 0 when nothing was lost, as when the backup
// instance was enabled at the release; an expired one misses what happened
// after its expiry).
type SourceReleased struct {
	KMSInstance   string    `json:"kms_instance"`
	At            time.Time `json:"at"`
	NextRevision  uint64    `json:"next_revision"`
	EndRevision   uint64    `json:"end_revision"`
	NeverBackedUp uint64    `json:"never_backed_up"`
}

// BackupFailing is the failing state of a backup instance's scheduled work:
// which work (full, incremental, expire, release, source-released,
// schedule), why (never key material), since when and after how many
// attempts. It is retried with backoff (5 seconds doubling to 5 minutes);
// other backup instances are not held up.
type BackupFailing struct {
	Work     string    `json:"work"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
	Attempts uint32    `json:"attempts"`
}

// LastScrub is a backup instance's last background verification: when it
// ended and its outcome (clean, findings: run verify to list them, or
// error: its data could not be read, the server log says why).
type LastScrub struct {
	At       time.Time `json:"at"`
	Outcome  string    `json:"outcome"` // clean | findings | error
	Findings int       `json:"findings"`
	Kinds    []string  `json:"kinds,omitempty"` // the kinds of the findings, as verify names them
}

// DownloadRequest is POST /v1/backup-instances/{id}/download: the day to
// download. The response body is the backup data file; its data key is in
// the Kmsbackup-Data-Key response header, once.
type DownloadRequest struct {
	Day string `json:"day"`
}

// CreateBackupInstanceRequest is POST /v1/backup-instances: a provisioned
// backup instance. ViewableDays is 7 to 600; Term is months or years
// ("1mo", "12mo", "1y"), at most 60 months.
type CreateBackupInstanceRequest struct {
	Region       string `json:"region"`
	ViewableDays int    `json:"viewable_days"`
	Term         string `json:"term"`
}

// EnableBackupInstanceRequest is POST /v1/backup-instances/{id}/enable.
// TimeZone is an IANA name; empty means UTC.
type EnableBackupInstanceRequest struct {
	KMSInstance string `json:"kms_instance"`
	Alias       string `json:"alias"`
	TimeZone    string `json:"time_zone,omitempty"`
}

// ExtendViewableDaysRequest is POST /v1/backup-instances/{id}/extend.
type ExtendViewableDaysRequest struct {
	ViewableDays int `json:"viewable_days"`
}

// RenewBackupInstanceRequest is POST /v1/backup-instances/{id}/renew.
type RenewBackupInstanceRequest struct {
	Term string `json:"term"`
}

// ResetBackupInstanceRequest is POST /v1/backup-instances/{id}/reset;
// Confirm must be true.
type ResetBackupInstanceRequest struct {
	Confirm bool `json:"confirm"`
}

// DataItem is a key or secret in a day's data: never material or values.
type DataItem struct {
	ID          string    `json:"id"`   // key ID or secret name
	Kind        string    `json:"kind"` // key | secret
	Versions    uint32    `json:"versions"`
	CreatedAt   time.Time `json:"created_at,omitzero"`
	ChangedAt   time.Time `json:"changed_at,omitzero"`   // the change the tab lists
	Description string    `json:"description,omitempty"` // keys
	KeyID       string    `json:"key_id,omitempty"`      // secrets: the key of the newest version
}

// Checkpoint is one backup of a day: a point in time a restore can choose
// (RestoreRequest.At). At is in UTC, as every time of the API; TimeZone
// is the backup's zone, which its days are counted in (the command line
// and the console show At in it).
type Checkpoint struct {
	Seq      uint64 `json:"seq"`
	At       string `json:"at"`
	Full     bool   `json:"full"`
	TimeZone string `json:"time_zone"`
}

// DiffItem is one difference between the ends of two days.
type DiffItem struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`   // key | secret
	Change   string `json:"change"` // created | rotated | deleted
	Versions uint32 `json:"versions"`
}

// VerifyReport is POST /v1/backup-instances/{id}/verify: what was checked
// and every problem found; OK is true when Findings is empty.
type VerifyReport struct {
	ID          string    `json:"id"`
	Generation  uint32    `json:"generation"`
	Checkpoints int       `json:"checkpoints"`
	Events      int       `json:"events"`
	Sealed      int       `json:"sealed"` // key versions whose material opened
	Findings    []Finding `json:"findings"`
	OK          bool      `json:"ok"`
}

// Finding is one problem verify found, at a checkpoint (Seq; 0 when none
// applies).
type Finding struct {
	Kind   string `json:"kind"`
	Seq    uint64 `json:"seq"`
	Detail string `json:"detail"`
}

// DevClockView is GET /v1/dev/clock.
type DevClockView struct {
	Now    time.Time `json:"now"`
	Manual bool      `json:"manual"`
}

// AdvanceClockRequest is POST /v1/dev/clock/advance. Duration is a whole
// number of seconds, minutes, hours or days, one unit ("90s", "5m", "48h",
// "31d"); see domain.ParseClockAdvance.
type AdvanceClockRequest struct {
	Duration string `json:"duration"`
}

// ScrubRunView is POST /v1/dev/scrub: one background verification of every
// backup instance, of every account: when it ran and how many instances it
// verified (Checked), with findings, could not verify (Errors), or skipped
// (reset or released meanwhile).
type ScrubRunView struct {
	StartedAt       time.Time `json:"started_at"`
	EndedAt         time.Time `json:"ended_at"`
	DurationSeconds float64   `json:"duration_seconds"`
	Checked         int       `json:"checked"`
	WithFindings    int       `json:"with_findings"`
	Errors          int       `json:"errors"`
	Skipped         int       `json:"skipped"`
}

// AdvanceClockResponse is the clock after an advance and how many pieces of
// scheduled work (checkpoints, expiries, releases) it did.
type AdvanceClockResponse struct {
	Now  time.Time `json:"now"`
	Work int       `json:"work"`
}

// RestoreRequest is POST /v1/restores: what to restore (Keys and Secrets,
// or All), from which backup instance and viewable day (At, an RFC 3339
// instant of that day, restores the state at that instant; with At, Day
// may be left out: it is At's day in the backup's time zone), into which
// KMS instance (ToRegion, when set, must be its region). DryRun plans
// without writing anything. With "Accept: application/x-ndjson" the answer
// is a stream of RestoreStreamLine: progress, then the result.
type RestoreRequest struct {
	From       string   `json:"from"`
	Day        string   `json:"day"`
	At         string   `json:"at,omitempty"`
	Keys       []string `json:"keys,omitempty"`
	Secrets    []string `json:"secrets,omitempty"`
	All        bool     `json:"all,omitempty"`
	ToInstance string   `json:"to_instance"`
	ToRegion   string   `json:"to_region,omitempty"`
	DryRun     bool     `json:"dry_run,omitempty"`
}

// RestoreResult is the response of POST /v1/restores. A plan with findings
// is not applied (Applied false, nothing written) and is still a 200: the
// findings say why. Validation lists what the check of the target after an
// apply found (empty when the target matches the backup). AlreadyPresent
// counts the items the target held already, identical to the backup's:
// restored before, or never deleted there. Batches counts the atomic
// appends written.
type RestoreResult struct {
	Applied           bool             `json:"applied"`
	DryRun            bool             `json:"dry_run"`
	Plan              RestorePlan      `json:"plan"`
	Restored          int              `json:"restored"`
	AlreadyPresent    int              `json:"already_present"`
	Batches           int              `json:"batches,omitempty"`
	Validation        []RestoreFinding `json:"validation"`
	ValidationOmitted map[string]int   `json:"validation_omitted,omitempty"`
}

// RestorePlan is a restore checked against its target. The items come from
// checkpoints FromSeq to ToSeq of the day; At is the instant the state is
// at (omitted, and the sequence numbers 0, when the backup instance or
// the day cannot be read: a finding says why). Region is the target's
// (empty when the target is not found). Items lists the first 1,000
// items (Keys and Secrets count them all, Present those already present),
// Findings the first 100 findings of each code (FindingsOmitted counts the
// others by code).
type RestorePlan struct {
	Backup          string           `json:"backup"`
	Day             string           `json:"day"`
	FromSeq         uint64           `json:"from_seq"`
	ToSeq           uint64           `json:"to_seq"`
	At              time.Time        `json:"at,omitzero"`
	Target          string           `json:"target"`
	Region          string           `json:"region"`
	Items           []RestoreItem    `json:"items"`
	Keys            int              `json:"keys,omitempty"`
	Secrets         int              `json:"secrets,omitempty"`
	Present         int              `json:"present,omitempty"`
	Findings        []RestoreFinding `json:"findings"`
	FindingsOmitted map[string]int   `json:"findings_omitted,omitempty"`
}

// RestoreItem is a key or secret of a plan, restored with all its versions.
type RestoreItem struct {
	Kind     string `json:"kind"` // key | secret
	ID       string `json:"id"`   // key ID or secret name
	Versions uint32 `json:"versions"`
	KeyID    string `json:"key_id,omitempty"` // secrets: the key of the newest version
	Status   string `json:"status"`           // planned | already-present | restored
}

// RestoreFinding is one reason a plan cannot be applied, or one problem the
// validation after an apply found. Code is one of the commands.Finding*
// codes; Item names the key, secret or instance concerned.
type RestoreFinding struct {
	Code    string `json:"code"`
	Item    string `json:"item"`
	Message string `json:"message"`
}

// RestoreProgress is how far a restore has gone: Done of Total items of
// Phase (plan, apply, validate).
type RestoreProgress struct {
	Phase string `json:"phase"`
	Done  uint64 `json:"done"`
	Total uint64 `json:"total"`
}

// RestoreStreamLine is one line of POST /v1/restores answered as NDJSON:
// progress lines, then one line with the result or the error.
type RestoreStreamLine struct {
	Progress *RestoreProgress `json:"progress,omitempty"`
	Result   *RestoreResult   `json:"result,omitempty"`
	Error    *ErrorDetail     `json:"error,omitempty"`
}

// ReplayState is GET /v1/backup-instances/{id}/replay: the keys and secrets
// of a backup instance at checkpoint Seq (taken at At), with a digest per
// version and an overall Digest that two points or two systems can compare.
// Never key material or secret values.
type ReplayState struct {
	ID     string       `json:"id"` // the backup instance
	Day    string       `json:"day"`
	Seq    uint64       `json:"seq"`
	At     time.Time    `json:"at"`
	Items  []ReplayItem `json:"items"`
	Digest string       `json:"digest"`
}

// ReplayItem is a key or secret as it stood at the replayed checkpoint.
type ReplayItem struct {
	Kind     string          `json:"kind"` // key | secret
	ID       string          `json:"id"`
	KeyID    string          `json:"key_id,omitempty"` // secrets: the key of the newest version
	Versions []ReplayVersion `json:"versions"`
}

// ReplayVersion is one version of a replayed item: SHA-256 (hex) of the key
// material for keys, of the stored ciphertext for secrets.
type ReplayVersion struct {
	Version uint32 `json:"version"`
	Digest  string `json:"digest"`
}

// AuditRecord is one entry of GET /v1/audit: who did what, when, to which
// target and item, from which backup instance and day.
type AuditRecord struct {
	ID      string    `json:"id"` // the Audited event's ID, as in the public event stream
	At      time.Time `json:"at"`
	Action  string    `json:"action"` // restore (one record per batch of a restore), reset, ...
	Actor   string    `json:"actor"`
	Backup  string    `json:"backup"`
	Day     string    `json:"day"`
	Target  string    `json:"target"`
	Item    string    `json:"item"`
	Keys    []string  `json:"keys,omitempty"`    // restore: the keys the batch wrote
	Secrets []string  `json:"secrets,omitempty"` // restore: the secrets the batch wrote
}

// List is a page of items; NextPageToken is empty on the last page.
type List[T any] struct {
	Items         []T    `json:"items"`
	NextPageToken string `json:"next_page_token,omitempty"`
}

func instanceView(in *domain.Instance) Instance {
	v := Instance{ID: string(in.ID), Account: string(in.Account), Region: in.Region, KeyQuota: in.KeyQuota,
		SecretQuota: in.SecretQuota, Keys: in.LiveKeys, Secrets: in.LiveSecrets, State: "active", CreatedAt: in.CreatedAt}
	if in.Released {
		v.State = "released"
		t := in.ReleasedAt
		v.ReleasedAt = &t
	}
	return v
}

func keyView(k *domain.Key) Key {
	v := Key{ID: string(k.ID), Instance: string(k.Instance), Region: k.Region, Description: k.Description,
		Spec: k.Spec, PrimaryVersion: k.Primary().Version, CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt}
	for _, kv := range k.Versions {
		v.Versions = append(v.Versions, Version{Version: kv.Version, CreatedAt: kv.CreatedAt})
	}
	return v
}

func secretView(s *domain.Secret) Secret {
	v := Secret{ID: s.Name, Name: s.Name, Instance: string(s.Instance), Region: s.Region, KeyID: string(s.Key),
		CurrentVersion: s.Current().Version, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
	for _, sv := range s.Versions {
		v.Versions = append(v.Versions, Version{Version: sv.Version, KeyID: string(sv.Key), CreatedAt: sv.CreatedAt})
	}
	return v
}

func accountView(a *kmsstate.Account) Account {
	return Account{ID: string(a.ID), Name: a.Name, CreatedAt: a.CreatedAt}
}

func listView[T, V any](p kmsstate.Page[T], view func(T) V) List[V] {
	out := List[V]{Items: make([]V, 0, len(p.Items)), NextPageToken: p.Next}
	for _, it := range p.Items {
		out.Items = append(out.Items, view(it))
	}
	return out
}

// DataTabs are the names of the seven lists of a day's data, in the order
// the console shows them: the tab query parameter of
// /v1/backup-instances/{id}/data takes one.
func DataTabs() []string {
	out := make([]string, len(backupdata.Tabs))
	for i, t := range backupdata.Tabs {
		out[i] = string(t)
	}
	return out
}

func backupView(b *domain.Backup) BackupInstance {
	return BackupInstance{ID: string(b.ID), Account: string(b.Account), Alias: b.Alias, Kind: string(b.Kind),
		Region: b.Region, KMSInstance: string(b.KMSInstance), ViewableDays: b.ViewableDays, TimeZone: b.TimeZone,
		State: string(b.State), ExpiresAt: b.ExpiresAt.UTC(), CreatedAt: b.CreatedAt.UTC(), EnabledAt: b.EnabledAt.UTC(),
		EnabledDay: string(b.EnabledDay), Generation: b.Generation, Checkpoints: b.Checkpoints,
		LastFullAt: b.LastFullAt.UTC(), LastIncrementalAt: b.LastIncremental.UTC(),
		UploadDay: string(b.UploadDay), SourceBackup: string(b.Source), SourceKMSInstance: string(b.SourceInstance),
		FileID: b.FileID, SourceReleased: sourceReleasedView(b), Failing: failingView(b.Failing)}
}

func sourceReleasedView(b *domain.Backup) *SourceReleased {
	sr := b.SourceReleased
	if !sr.Recorded() {
		return nil
	}
	return &SourceReleased{KMSInstance: string(b.KMSInstance), At: sr.At.UTC(), NextRevision: sr.Next, EndRevision: sr.End,
		NeverBackedUp: sr.NeverBackedUp()}
}

func failingView(f domain.Failure) *BackupFailing {
	if !f.Active() {
		return nil
	}
	return &BackupFailing{Work: f.Work, Reason: f.Reason, Since: f.Since.UTC(), Attempts: f.Attempts}
}

// lastScrubView is r as shown with instance b, or nil when r verified an
// earlier generation of b (its data has been reset since).
func lastScrubView(b *domain.Backup, r commands.ScrubResult) *LastScrub {
	if r.Generation != b.Generation {
		return nil
	}
	v := &LastScrub{At: r.At.UTC(), Outcome: "clean", Findings: r.Findings(), Kinds: r.Kinds()}
	switch {
	case r.Err != nil:
		v.Outcome = "error"
	case v.Findings > 0:
		v.Outcome = "findings"
	}
	return v
}

func dataItemView(it backupdata.Item) DataItem {
	v := DataItem{ID: it.ID, Kind: it.Kind, Versions: it.Versions, CreatedAt: it.CreatedAt.UTC(), ChangedAt: it.ChangedAt.UTC()}
	if it.Kind == backupdata.KindKey {
		v.Description = it.Description
	} else {
		v.KeyID = it.KeyID
	}
	return v
}

func checkpointsView(cs []commands.DayCheckpoint) List[Checkpoint] {
	out := List[Checkpoint]{Items: make([]Checkpoint, 0, len(cs))}
	for _, c := range cs {
		out.Items = append(out.Items, Checkpoint{Seq: c.Seq, At: c.At.UTC().Format(time.RFC3339), Full: c.Full, TimeZone: c.Zone})
	}
	return out
}

func diffView(cs []backupdata.Change) List[DiffItem] {
	out := List[DiffItem]{Items: make([]DiffItem, 0, len(cs))}
	for _, c := range cs {
		out.Items = append(out.Items, DiffItem{ID: c.Item.ID, Kind: c.Item.Kind, Change: c.What, Versions: c.Item.Versions})
	}
	return out
}

func verifyView(r *commands.VerifyReport) VerifyReport {
	v := VerifyReport{ID: string(r.Backup), Generation: r.Generation, Checkpoints: r.Checkpoints, Events: r.Events,
		Sealed: r.Sealed, Findings: make([]Finding, 0, len(r.Findings)), OK: len(r.Findings) == 0}
	for _, f := range r.Findings {
		v.Findings = append(v.Findings, Finding{Kind: f.Kind, Seq: f.Seq, Detail: f.Detail})
	}
	return v
}

func restoreView(r *commands.RestoreResult, dryRun bool) RestoreResult {
	p := r.Plan
	v := RestoreResult{Applied: r.Applied, DryRun: dryRun, Restored: r.Restored, AlreadyPresent: r.AlreadyPresent, Batches: r.Batches,
		Validation: findingsView(r.Validation), ValidationOmitted: r.ValidationOmitted,
		Plan: RestorePlan{Backup: string(p.Backup), Day: string(p.Day), FromSeq: p.From, ToSeq: p.To, At: p.At.UTC(),
			Target: string(p.Target), Region: p.Region, Items: make([]RestoreItem, 0, len(p.Items)), Keys: p.Keys, Secrets: p.Secrets,
			Present: p.Present, Findings: findingsView(p.Findings), FindingsOmitted: p.Omitted}}
	for _, it := range p.Items {
		v.Plan.Items = append(v.Plan.Items, RestoreItem{Kind: it.Kind, ID: it.ID, Versions: it.Versions, KeyID: it.KeyID, Status: it.Status})
	}
	return v
}

func findingsView(fs []commands.RestoreFinding) []RestoreFinding {
	out := make([]RestoreFinding, 0, len(fs))
	for _, f := range fs {
		out = append(out, RestoreFinding{Code: f.Code, Item: f.Item, Message: f.Message})
	}
	return out
}

func replayView(st *commands.ReplayState) ReplayState {
	v := ReplayState{ID: string(st.Backup), Day: string(st.Day), Seq: st.Seq, At: st.At.UTC(),
		Items: make([]ReplayItem, 0, len(st.Items)), Digest: st.Digest}
	for _, it := range st.Items {
		ri := ReplayItem{Kind: it.Kind, ID: it.ID, KeyID: it.KeyID, Versions: make([]ReplayVersion, 0, len(it.Versions))}
		for _, rv := range it.Versions {
			ri.Versions = append(ri.Versions, ReplayVersion{Version: rv.Version, Digest: rv.Digest})
		}
		v.Items = append(v.Items, ri)
	}
	return v
}

func auditView(r audit.Record) AuditRecord {
	return AuditRecord{ID: r.Event.String(), At: r.At.UTC(), Action: r.Action, Actor: r.Actor, Backup: string(r.Backup),
		Day: string(r.Day), Target: r.Target, Item: r.Item, Keys: r.Keys, Secrets: r.Secrets}
}
