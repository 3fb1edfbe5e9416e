package publicevent

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"
)

// Data is the type-specific part of an event: a pointer to one of the types
// of this file (*KeyCreated, ..., or *Unknown). Byte fields ([]byte) are
// written as standard base64 with padding.
type Data interface {
	// EventType is the event type the data belongs to.
	EventType() string
}

// AccountCreated: a new account (tenant). Its API token, and even the token's
// hash, are never published.
type AccountCreated struct {
	AccountID string `json:"account_id"`
	Name      string `json:"name"`
}

// InstanceCreated: a new KMS instance with its quotas.
type InstanceCreated struct {
	InstanceID  string `json:"instance_id"`
	Region      string `json:"region"`
	KeyQuota    uint32 `json:"key_quota"`
	SecretQuota uint32 `json:"secret_quota"`
}

// InstanceReleased: a KMS instance was released; its keys and secrets are
// gone and its data key is destroyed.
type InstanceReleased struct {
	InstanceID string `json:"instance_id"`
}

// KeyCreated: a new key, with its first version (Version is always 1).
// MaterialSealed is the key material sealed (AES-256-GCM) under the KMS
// instance's data key: ciphertext, useless without that key.
type KeyCreated struct {
	KeyID          string `json:"key_id"`
	Description    string `json:"description"`
	Spec           string `json:"spec"`
	Version        uint32 `json:"version"`
	MaterialSealed []byte `json:"material_sealed"`
}

// KeyRotated: a new version of a key, which becomes its primary version.
type KeyRotated struct {
	KeyID          string `json:"key_id"`
	Version        uint32 `json:"version"`
	MaterialSealed []byte `json:"material_sealed"`
}

// KeyDeleted: a key and all its versions were deleted.
type KeyDeleted struct {
	KeyID string `json:"key_id"`
}

// SecretCreated: a new secret, with its first version (Version is always 1).
// ValueCiphertext is the secret's value encrypted by the KMS under KeyID.
type SecretCreated struct {
	Name            string `json:"name"`
	KeyID           string `json:"key_id"`
	Version         uint32 `json:"version"`
	ValueCiphertext []byte `json:"value_ciphertext"`
}

// SecretRotated: a new value (version) of a secret.
type SecretRotated struct {
	Name            string `json:"name"`
	KeyID           string `json:"key_id"`
	Version         uint32 `json:"version"`
	ValueCiphertext []byte `json:"value_ciphertext"`
}

// SecretDeleted: a secret and all its versions were deleted.
type SecretDeleted struct {
	Name string `json:"name"`
}

// BackupInstanceCreated: a backup instance was created: the default one of a
// region (never expires, 7 viewable days) or a provisioned one.
type BackupInstanceCreated struct {
	BackupID     string     `json:"backup_id"`
	Kind         string     `json:"kind"`
	Region       string     `json:"region"`
	ViewableDays uint32     `json:"viewable_days"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
}

// BackupInstanceEnabled: a backup instance was bound to a KMS instance (the
// envelope's instance) and starts backing it up.
type BackupInstanceEnabled struct {
	KMSInstance string `json:"kms_instance"`
	Alias       string `json:"alias"`
	TimeZone    string `json:"time_zone"`
}

// BackupViewableDaysExtended: a provisioned instance keeps more viewable days.
type BackupViewableDaysExtended struct {
	ViewableDays uint32 `json:"viewable_days"`
}

// BackupInstanceRenewed: a provisioned instance's term was extended.
type BackupInstanceRenewed struct {
	ExpiresAt time.Time `json:"expires_at"`
}

// BackupInstanceExpired: a provisioned instance reached the end of its term.
type BackupInstanceExpired struct{}

// BackupInstanceReleased: 15 days after expiry; its data is destroyed.
type BackupInstanceReleased struct{}

// BackupInstanceReset: its data was destroyed and it was unbound.
type BackupInstanceReset struct{}

// BackupUploaded: a downloaded backup data file was uploaded again. It is
// listed as a backup instance of kind "upload" holding the one day the file
// held; its data follows as BackupCheckpointed events in the same stream.
type BackupUploaded struct {
	BackupID       string `json:"backup_id"`
	Name           string `json:"name"`
	Region         string `json:"region"`
	Day            string `json:"day"`
	TimeZone       string `json:"time_zone"`
	SourceBackupID string `json:"source_backup_id"`
	KMSInstance    string `json:"kms_instance"`
	FileID         string `json:"file_id"`
	Keys           uint64 `json:"keys"`
	Secrets        uint64 `json:"secrets"`
}

// BackupUploadDeleted: an upload was deleted; its data is destroyed.
type BackupUploadDeleted struct{}

// BackupCheckpointed: a full or incremental backup: the slice of the KMS
// instance's stream revisions [from, next), chained to the previous
// checkpoint by digests (hex SHA-256).
type BackupCheckpointed struct {
	Generation  uint32      `json:"generation"`
	Seq         uint64      `json:"seq"`
	Full        bool        `json:"full"`
	At          time.Time   `json:"at"`
	Day         string      `json:"day"`
	From        uint64      `json:"from_revision"`
	Next        uint64      `json:"next_revision"`
	SliceDigest string      `json:"slice_digest"`
	PrevDigest  string      `json:"prev_digest"`
	Digest      string      `json:"digest"`
	Parts       []SlicePart `json:"parts,omitempty"`
	InBase      bool        `json:"in_base,omitempty"`
}

// SlicePart: one stored part of a checkpoint's slice.
type SlicePart struct {
	Digest string `json:"digest"`
	Events uint64 `json:"events"`
	From   uint64 `json:"from_revision"`
	Next   uint64 `json:"next_revision"`
}

// BackupBaseStored: a base of the backup instance's data was stored: the
// complete state at checkpoint seq, which restores load instead of
// replaying what came before. Bases are chained to each other and to
// their checkpoint by digests (hex SHA-256).
type BackupBaseStored struct {
	Generation       uint32     `json:"generation"`
	Seq              uint64     `json:"seq"`
	At               time.Time  `json:"at"`
	Next             uint64     `json:"next_revision"`
	Items            uint64     `json:"items"`
	Versions         uint64     `json:"versions"`
	Parts            []BasePart `json:"parts"`
	StateDigest      string     `json:"state_digest"`
	CheckpointDigest string     `json:"checkpoint_digest"`
	PrevDigest       string     `json:"prev_digest"`
	Digest           string     `json:"digest"`
}

// BasePart: one stored part of a base.
type BasePart struct {
	Digest   string `json:"digest"`
	Size     uint64 `json:"size"`
	Items    uint64 `json:"items"`
	Versions uint64 `json:"versions"`
}

// BackupSourceReleased: the KMS instance the backup instance is bound to
// was released. The backup keeps everything it holds, viewable and
// restorable as before, and copies nothing more of that instance: its
// stream revisions [next_revision, end_revision) were never backed up
// (none when the two are equal; a backup instance that was expired when
// its KMS instance was released misses what happened since its expiry).
type BackupSourceReleased struct {
	KMSInstance string `json:"kms_instance"`
	Next        uint64 `json:"next_revision"`
	End         uint64 `json:"end_revision"`
}

// BackupFailing: the backup instance's scheduled work (work: full,
// incremental, expire, release, source-released or schedule) fails, since
// since, after attempts tries, for reason. Published when it starts failing
// and when the reason changes, never once per retry; the instance's next
// BackupCheckpointed (or other scheduled event) ends it.
type BackupFailing struct {
	Work     string    `json:"work"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
	Attempts uint32    `json:"attempts"`
}

// RestoredFrom says where a restored item came from: the backup instance,
// the viewable day, the checkpoint (seq) restored from, and who restored it
// (an account ID, or "admin").
type RestoredFrom struct {
	BackupID string `json:"backup_id"`
	Day      string `json:"day"`
	Seq      uint64 `json:"seq"`
	By       string `json:"by"`
}

// RestoredKeyVersion is one version of a restored key. MaterialSealed is its
// key material sealed under the target KMS instance's data key, as for
// KeyCreated.
type RestoredKeyVersion struct {
	Version        uint32    `json:"version"`
	CreatedAt      time.Time `json:"created_at"`
	MaterialSealed []byte    `json:"material_sealed"`
}

// KeyRestored: a key was restored from a backup into the KMS instance of
// the envelope, under its original key ID, with all its versions (oldest
// first; the last is the primary).
type KeyRestored struct {
	KeyID       string               `json:"key_id"`
	Description string               `json:"description"`
	Spec        string               `json:"spec"`
	Versions    []RestoredKeyVersion `json:"versions"`
	From        RestoredFrom         `json:"from"`
}

// RestoredSecretVersion is one version of a restored secret.
// ValueCiphertext is its value as encrypted by the KMS under KeyID.
type RestoredSecretVersion struct {
	Version         uint32    `json:"version"`
	KeyID           string    `json:"key_id"`
	CreatedAt       time.Time `json:"created_at"`
	ValueCiphertext []byte    `json:"value_ciphertext"`
}

// SecretRestored: a secret was restored from a backup into the KMS instance
// of the envelope, with all its versions (oldest first).
type SecretRestored struct {
	Name     string                  `json:"name"`
	KeyID    string                  `json:"key_id"`
	Versions []RestoredSecretVersion `json:"versions"`
	From     RestoredFrom            `json:"from"`
}

// Audited: an audit record of the account (stream audit-<account>): who
// did what, to which object, from which backup and day. When is the
// envelope's occurred_at. A restore records one per batch, listing the
// keys and secrets the batch wrote.
type Audited struct {
	Action   string   `json:"action"`
	Actor    string   `json:"actor"`
	BackupID string   `json:"backup_id"`
	Day      string   `json:"day"`
	Target   string   `json:"target"`
	Item     string   `json:"item"`
	Keys     []string `json:"keys,omitempty"`
	Secrets  []string `json:"secrets,omitempty"`
}

// Unknown is the data of an event type this version of the package does not
// know (a type added to v1 later). Raw is the "data" object as received; it
// is written back unchanged.
type Unknown struct {
	Type string
	Raw  json.RawMessage
}

func (AccountCreated) EventType() string             { return "AccountCreated" }
func (InstanceCreated) EventType() string            { return "InstanceCreated" }
func (InstanceReleased) EventType() string           { return "InstanceReleased" }
func (KeyCreated) EventType() string                 { return "KeyCreated" }
func (KeyRotated) EventType() string                 { return "KeyRotated" }
func (KeyDeleted) EventType() string                 { return "KeyDeleted" }
func (SecretCreated) EventType() string              { return "SecretCreated" }
func (SecretRotated) EventType() string              { return "SecretRotated" }
func (SecretDeleted) EventType() string              { return "SecretDeleted" }
func (BackupInstanceCreated) EventType() string      { return "BackupInstanceCreated" }
func (BackupInstanceEnabled) EventType() string      { return "BackupInstanceEnabled" }
func (BackupViewableDaysExtended) EventType() string { return "BackupViewableDaysExtended" }
func (BackupInstanceRenewed) EventType() string      { return "BackupInstanceRenewed" }
func (BackupInstanceExpired) EventType() string      { return "BackupInstanceExpired" }
func (BackupInstanceReleased) EventType() string     { return "BackupInstanceReleased" }
func (BackupInstanceReset) EventType() string        { return "BackupInstanceReset" }
func (BackupUploaded) EventType() string             { return "BackupUploaded" }
func (BackupUploadDeleted) EventType() string        { return "BackupUploadDeleted" }
func (BackupCheckpointed) EventType() string         { return "BackupCheckpointed" }
func (BackupBaseStored) EventType() string           { return "BackupBaseStored" }
func (BackupSourceReleased) EventType() string       { return "BackupSourceReleased" }
func (BackupFailing) EventType() string              { return "BackupFailing" }
func (KeyRestored) EventType() string                { return "KeyRestored" }
func (SecretRestored) EventType() string             { return "SecretRestored" }
func (Audited) EventType() string                    { return "Audited" }
func (u Unknown) EventType() string                  { return u.Type }

// MarshalJSON writes Raw unchanged.
func (u Unknown) MarshalJSON() ([]byte, error) {
	if len(u.Raw) == 0 {
		return []byte("null"), nil
	}
	return u.Raw, nil
}

// Types lists every event type of v1, in the order docs/events.md documents
// them.
func Types() []string {
	return []string{
		"AccountCreated", "InstanceCreated", "InstanceReleased",
		"KeyCreated", "KeyRotated", "KeyDeleted",
		"SecretCreated", "SecretRotated", "SecretDeleted",
		"BackupInstanceCreated", "BackupInstanceEnabled", "BackupViewableDaysExtended",
		"BackupInstanceRenewed", "BackupInstanceExpired", "BackupInstanceReleased",
		"BackupInstanceReset", "BackupCheckpointed",
		"KeyRestored", "SecretRestored", "Audited",
		"BackupUploaded", "BackupUploadDeleted",
		"BackupSourceReleased", "BackupFailing", "BackupBaseStored",
	}
}

func newData(typ string) Data {
	switch typ {
	case "AccountCreated":
		return &AccountCreated{}
	case "InstanceCreated":
		return &InstanceCreated{}
	case "InstanceReleased":
		return &InstanceReleased{}
	case "KeyCreated":
		return &KeyCreated{}
	case "KeyRotated":
		return &KeyRotated{}
	case "KeyDeleted":
		return &KeyDeleted{}
	case "SecretCreated":
		return &SecretCreated{}
	case "SecretRotated":
		return &SecretRotated{}
	case "SecretDeleted":
		return &SecretDeleted{}
	case "BackupInstanceCreated":
		return &BackupInstanceCreated{}
	case "BackupInstanceEnabled":
		return &BackupInstanceEnabled{}
	case "BackupViewableDaysExtended":
		return &BackupViewableDaysExtended{}
	case "BackupInstanceRenewed":
		return &BackupInstanceRenewed{}
	case "BackupInstanceExpired":
		return &BackupInstanceExpired{}
	case "BackupInstanceReleased":
		return &BackupInstanceReleased{}
	case "BackupInstanceReset":
		return &BackupInstanceReset{}
	case "BackupCheckpointed":
		return &BackupCheckpointed{}
	case "KeyRestored":
		return &KeyRestored{}
	case "SecretRestored":
		return &SecretRestored{}
	case "Audited":
		return &Audited{}
	case "BackupUploaded":
		return &BackupUploaded{}
	case "BackupUploadDeleted":
		return &BackupUploadDeleted{}
	case "BackupSourceReleased":
		return &BackupSourceReleased{}
	case "BackupFailing":
		return &BackupFailing{}
	case "BackupBaseStored":
		return &BackupBaseStored{}
	}
	return nil
}

// parseData decodes the "data" object of an event of type typ.
func parseData(typ string, raw json.RawMessage) (Data, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("\"data\" must be an object")
	}
	d := newData(typ)
	if d == nil {
		return &Unknown{Type: typ, Raw: bytes.Clone(trimmed)}, nil
	}
	if err := json.Unmarshal(trimmed, d); err != nil {
		return nil, err
	}
	return d, nil
}
