package domain

import (
	"fmt"
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
	Action string // restore, reset, enable, ... (restore-key and restore-secret in older records)
	Actor  string
	Backup BackupID
	Day    Day
	Target string // the instance or object acted on
	Item   string // the key ID or secret name, when one
	// Keys and Secrets are the items a restore wrote in one batch (one
	// record per batch). Records written before them have none.
	Keys    []string
	Secrets []string
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

// auditedBatch is the format of an Audited record that lists a restore's
// items: it starts with an empty string (an older record starts with its
// action, never empty), then this number, then the fields and the lists,
// so that no cut of it reads as an older record.
const auditedBatch = 2

func (e *Audited) encode(w *wire.Writer) {
	batch := len(e.Keys) > 0 || len(e.Secrets) > 0
	if batch {
		w.String("")
		w.Uvarint(auditedBatch)
	}
	w.String(e.Action)
	w.String(e.Actor)
	w.String(string(e.Backup))
	w.String(string(e.Day))
	w.String(e.Target)
	w.String(e.Item)
	if batch {
		for _, l := range [][]string{e.Keys, e.Secrets} {
			w.Uvarint(uint64(len(l)))
			for _, x := range l {
				w.String(x)
			}
		}
	}
}

func (e *Audited) decode(r *wire.Reader) {
	first := r.String()
	batch := first == ""
	if batch {
		if v := r.Uvarint(); v != auditedBatch {
			r.Fail(fmt.Errorf("audit record format %d is unknown", v))
			return
		}
		first = r.String()
	}
	e.Action, e.Actor, e.Backup, e.Day, e.Target, e.Item = first, r.String(), BackupID(r.String()), Day(r.String()), r.String(), r.String()
	if !batch {
		return
	}
	for _, l := range []*[]string{&e.Keys, &e.Secrets} {
		*l = make([]string, r.Count())
		for i := range *l {
			(*l)[i] = r.String()
		}
	}
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
