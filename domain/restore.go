package domain

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// Restore and audit events.
const (
	TypeKeyRestored    = "KeyRestored"
	TypeSecretRestored = "SecretRestored"
	TypeAudited        = "Audited"
)

// AuditStream is the stream of an account's audit records.
func AuditStream(a AccountID) string { return "audit-" + string(a) }

// RestoredFrom says where a restored item came from and who restored it.
type RestoredFrom struct {
	Backup BackupID
	Day    Day
	Seq    uint64 // the checkpoint restored from
	By     string // the caller
}

// RestoredKeyVersion is one version of a restored key, its material sealed
// under the target instance's data key and bound to the restore event.
type RestoredKeyVersion struct {
	Version   uint32
	Material  Sealed
	CreatedAt time.Time
}

// KeyRestored records a key restored from a backup with all its versions,
// under its original key ID, so that ciphertexts made before its deletion
// decrypt again.
type KeyRestored struct {
	Key         KeyID
	Description string
	Spec        string
	Versions    []RestoredKeyVersion
	From        RestoredFrom
}

// RestoredSecretVersion is one version of a restored secret.
type RestoredSecretVersion struct {
	Version   uint32
	Key       KeyID
	Value     []byte // KMS ciphertext under Key
	CreatedAt time.Time
}

// SecretRestored records a secret restored from a backup with all its
// versions.
type SecretRestored struct {
	Name     string
	Key      KeyID
	Versions []RestoredSecretVersion
	From     RestoredFrom
}

// Audited is an audit record: who did what, to which object, from which
// backup and day, when (the envelope's time).
type Audited struct {
	Action string // restore-key, restore-secret, reset, enable, ...
	Actor  string
	Backup BackupID
	Day    Day
	Target string // the instance or object acted on
	Item   string // the key ID or secret name, when one
}

func (KeyRestored) EventType() string    { return TypeKeyRestored }
func (SecretRestored) EventType() string { return TypeSecretRestored }
func (Audited) EventType() string        { return TypeAudited }

func (f *RestoredFrom) encode(w *wire.Writer) {
	w.String(string(f.Backup))
	w.String(string(f.Day))
	w.Uvarint(f.Seq)
	w.String(f.By)
}

func (f *RestoredFrom) decode(r *wire.Reader) {
	f.Backup, f.Day, f.Seq, f.By = BackupID(r.String()), Day(r.String()), r.Uvarint(), r.String()
}

func (e *KeyRestored) encode(w *wire.Writer) {
	w.String(string(e.Key))
	w.String(e.Description)
	w.String(e.Spec)
	w.Uvarint(uint64(len(e.Versions)))
	for _, v := range e.Versions {
		w.Uvarint(uint64(v.Version))
		w.Bytes(v.Material)
		w.Time(v.CreatedAt)
	}
	e.From.encode(w)
}

func (e *KeyRestored) decode(r *wire.Reader) {
	e.Key, e.Description, e.Spec = KeyID(r.String()), r.String(), r.String()
	e.Versions = make([]RestoredKeyVersion, r.Count())
	for i := range e.Versions {
		e.Versions[i] = RestoredKeyVersion{Version: r.Uint32(), Material: r.Bytes(), CreatedAt: r.Time()}
	}
	e.From.decode(r)
}

func (e *SecretRestored) encode(w *wire.Writer) {
	w.String(e.Name)
	w.String(string(e.Key))
	w.Uvarint(uint64(len(e.Versions)))
	for _, v := range e.Versions {
		w.Uvarint(uint64(v.Version))
		w.String(string(v.Key))
		w.Bytes(v.Value)
		w.Time(v.CreatedAt)
	}
	e.From.encode(w)
}

func (e *SecretRestored) decode(r *wire.Reader) {
	e.Name, e.Key = r.String(), KeyID(r.String())
	e.Versions = make([]RestoredSecretVersion, r.Count())
	for i := range e.Versions {
		e.Versions[i] = RestoredSecretVersion{Version: r.Uint32(), Key: KeyID(r.String()), Value: r.Bytes(), CreatedAt: r.Time()}
	}
	e.From.decode(r)
}

func (e *Audited) encode(w *wire.Writer) {
	w.String(e.Action)
	w.String(e.Actor)
	w.String(string(e.Backup))
	w.String(string(e.Day))
	w.String(e.Target)
	w.String(e.Item)
}

func (e *Audited) decode(r *wire.Reader) {
	e.Action, e.Actor, e.Backup, e.Day, e.Target, e.Item = r.String(), r.String(), BackupID(r.String()), Day(r.String()), r.String(), r.String()
}

func restoreData(typ string) EventData {
	switch typ {
	case TypeKeyRestored:
		return &KeyRestored{}
	case TypeSecretRestored:
		return &SecretRestored{}
	case TypeAudited:
		return &Audited{}
	}
	return nil
}

// RestoreKey decides restoring a key into the instance: the instance is
// live, the key ID is free in its region and the key quota has room.
func (in *Instance) RestoreKey(d *KeyRestored, regionHasKey bool) (*KeyRestored, error) {
	const op = "restore key"
	if err := in.live(op); err != nil {
		return nil, err
	}
	if len(d.Versions) == 0 {
		return nil, Invalid(op, "key %s has no version to restore", d.Key)
	}
	if regionHasKey {
		return nil, Errorf(ErrAlreadyExists, op, string(d.Key), "delete it there first", "a key with this ID already exists in region %s", in.Region)
	}
	if in.LiveKeys >= in.KeyQuota {
		return nil, Errorf(ErrQuotaExceeded, op, string(in.ID), "delete a key or restore into another instance", "key quota of %d is used up", in.KeyQuota)
	}
	return d, nil
}

// RestoreSecret decides restoring a secret into the instance: its key must
// be a live key of the instance (restored first when both are restored).
func (in *Instance) RestoreSecret(d *SecretRestored, key *Key, regionHasSecret bool) (*SecretRestored, error) {
	const op = "restore secret"
	if err := in.live(op); err != nil {
		return nil, err
	}
	if len(d.Versions) == 0 {
		return nil, Invalid(op, "secret %s has no version to restore", d.Name)
	}
	if key == nil || key.Instance != in.ID {
		return nil, Errorf(ErrFailedPrecondition, op, d.Name, "restore its key first, or with it", "encryption key %s is not in the target instance", d.Key)
	}
	if regionHasSecret {
		return nil, Errorf(ErrAlreadyExists, op, d.Name, "delete it there first", "a secret with this name already exists in region %s", in.Region)
	}
	if in.LiveSecrets >= in.SecretQuota {
		return nil, Errorf(ErrQuotaExceeded, op, string(in.ID), "delete a secret or restore into another instance", "secret quota of %d is used up", in.SecretQuota)
	}
	return d, nil
}

// NewRestoredKey builds the key a KeyRestored event brings.
func NewRestoredKey(e Event, d *KeyRestored) *Key {
	k := &Key{ID: d.Key, Instance: e.Instance, Account: e.Account, Region: e.Region, Description: d.Description,
		Spec: d.Spec, CreatedAt: d.Versions[0].CreatedAt, UpdatedAt: e.OccurredAt}
	for _, v := range d.Versions {
		k.Versions = append(k.Versions, KeyVersion{Version: v.Version, Material: v.Material, SealedBy: e.ID, Stream: e.Stream, CreatedAt: v.CreatedAt})
	}
	return k
}

// NewRestoredSecret builds the secret a SecretRestored event brings.
func NewRestoredSecret(e Event, d *SecretRestored) *Secret {
	s := &Secret{Name: d.Name, Instance: e.Instance, Account: e.Account, Region: e.Region, Key: d.Key,
		CreatedAt: d.Versions[0].CreatedAt, UpdatedAt: e.OccurredAt}
	for _, v := range d.Versions {
		s.Versions = append(s.Versions, SecretVersion{Version: v.Version, Key: v.Key, Value: v.Value, CreatedAt: v.CreatedAt})
	}
	return s
}

// KeyMaterials returns the key material fields of an event's payload (one
// for a key's create or rotation, one per version for a restore; none for
// other events), so that a copier can reseal them in place.
func KeyMaterials(d EventData) []*Sealed {
	switch d := d.(type) {
	case *KeyCreated:
		return []*Sealed{&d.Material}
	case *KeyRotated:
		return []*Sealed{&d.Material}
	case *KeyRestored:
		out := make([]*Sealed, len(d.Versions))
		for i := range d.Versions {
			out[i] = &d.Versions[i].Material
		}
		return out
	}
	return nil
}
