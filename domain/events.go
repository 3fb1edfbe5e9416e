package domain

import (
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// SchemaVersion is the version of the binary payload encoding written today.
// Decoders accept every version listed in their switch.
const SchemaVersion uint16 = 1

// Event types.
const (
	TypeAccountCreated   = "AccountCreated"
	TypeInstanceCreated  = "InstanceCreated"
	TypeInstanceReleased = "InstanceReleased"
	TypeKeyCreated       = "KeyCreated"
	TypeKeyRotated       = "KeyRotated"
	TypeKeyDeleted       = "KeyDeleted"
	TypeSecretCreated    = "SecretCreated"
	TypeSecretRotated    = "SecretRotated"
	TypeSecretDeleted    = "SecretDeleted"
)

// EventData is the payload of one event type.
type EventData interface {
	EventType() string
	encode(w *wire.Writer)
	decode(r *wire.Reader)
}

// AccountCreated records a new account (a tenant). Only a hash of its API
// token is kept.
type AccountCreated struct {
	Account   AccountID
	Name      string
	TokenHash [32]byte
}

// InstanceCreated records a new KMS instance.
type InstanceCreated struct {
	Instance    InstanceID
	Region      string
	KeyQuota    uint32
	SecretQuota uint32
}

// InstanceReleased records that a KMS instance was released: its keys and
// secrets are gone from the region and its data key is destroyed.
type InstanceReleased struct {
	Instance InstanceID
}

// KeyCreated records a new AES-256 key with its first version (1).
type KeyCreated struct {
	Key         KeyID
	Description string
	Spec        string
	Material    Sealed // the key material, sealed under the instance's data key
}

// KeyRotated records a new version of a key, which becomes primary.
type KeyRotated struct {
	Key      KeyID
	Version  uint32
	Material Sealed
}

// KeyDeleted records the deletion of a key and all its versions.
type KeyDeleted struct {
	Key KeyID
}

// SecretCreated records a new secret with its first version (1). Value is a
// KMS ciphertext of the secret value under Key (see Ciphertext).
type SecretCreated struct {
	Name  string
	Key   KeyID
	Value []byte
}

// SecretRotated records a new value of a secret (a new version).
type SecretRotated struct {
	Name    string
	Version uint32
	Key     KeyID
	Value   []byte
}

// SecretDeleted records the deletion of a secret and all its versions.
type SecretDeleted struct {
	Name string
}

func (AccountCreated) EventType() string   { return TypeAccountCreated }
func (InstanceCreated) EventType() string  { return TypeInstanceCreated }
func (InstanceReleased) EventType() string { return TypeInstanceReleased }
func (KeyCreated) EventType() string       { return TypeKeyCreated }
func (KeyRotated) EventType() string       { return TypeKeyRotated }
func (KeyDeleted) EventType() string       { return TypeKeyDeleted }
func (SecretCreated) EventType() string    { return TypeSecretCreated }
func (SecretRotated) EventType() string    { return TypeSecretRotated }
func (SecretDeleted) EventType() string    { return TypeSecretDeleted }

func (e *AccountCreated) encode(w *wire.Writer) {
	w.String(string(e.Account))
	w.String(e.Name)
	w.Fixed(e.TokenHash[:])
}
func (e *AccountCreated) decode(r *wire.Reader) {
	e.Account = AccountID(r.String())
	e.Name = r.String()
	r.Fixed(e.TokenHash[:])
}

func (e *InstanceCreated) encode(w *wire.Writer) {
	w.String(string(e.Instance))
	w.String(e.Region)
	w.Uvarint(uint64(e.KeyQuota))
	w.Uvarint(uint64(e.SecretQuota))
}
func (e *InstanceCreated) decode(r *wire.Reader) {
	e.Instance = InstanceID(r.String())
	e.Region = r.String()
	e.KeyQuota = r.Uint32()
	e.SecretQuota = r.Uint32()
}

func (e *InstanceReleased) encode(w *wire.Writer) { w.String(string(e.Instance)) }
func (e *InstanceReleased) decode(r *wire.Reader) { e.Instance = InstanceID(r.String()) }

func (e *KeyCreated) encode(w *wire.Writer) {
	w.String(string(e.Key))
	w.String(e.Description)
	w.String(e.Spec)
	w.Bytes(e.Material)
}
func (e *KeyCreated) decode(r *wire.Reader) {
	e.Key = KeyID(r.String())
	e.Description = r.String()
	e.Spec = r.String()
	e.Material = r.Bytes()
}

func (e *KeyRotated) encode(w *wire.Writer) {
	w.String(string(e.Key))
	w.Uvarint(uint64(e.Version))
	w.Bytes(e.Material)
}
func (e *KeyRotated) decode(r *wire.Reader) {
	e.Key = KeyID(r.String())
	e.Version = r.Uint32()
	e.Material = r.Bytes()
}

func (e *KeyDeleted) encode(w *wire.Writer) { w.String(string(e.Key)) }
func (e *KeyDeleted) decode(r *wire.Reader) { e.Key = KeyID(r.String()) }

func (e *SecretCreated) encode(w *wire.Writer) {
	w.String(e.Name)
	w.String(string(e.Key))
	w.Bytes(e.Value)
}
func (e *SecretCreated) decode(r *wire.Reader) {
	e.Name = r.String()
	e.Key = KeyID(r.String())
	e.Value = r.Bytes()
}

func (e *SecretRotated) encode(w *wire.Writer) {
	w.String(e.Name)
	w.Uvarint(uint64(e.Version))
	w.String(string(e.Key))
	w.Bytes(e.Value)
}
func (e *SecretRotated) decode(r *wire.Reader) {
	e.Name = r.String()
	e.Version = r.Uint32()
	e.Key = KeyID(r.String())
	e.Value = r.Bytes()
}

func (e *SecretDeleted) encode(w *wire.Writer) { w.String(e.Name) }
func (e *SecretDeleted) decode(r *wire.Reader) { e.Name = r.String() }

// newData returns an empty payload for a type, or nil if the type is unknown.
func newData(typ string) EventData {
	switch typ {
	case TypeAccountCreated:
		return &AccountCreated{}
	case TypeInstanceCreated:
		return &InstanceCreated{}
	case TypeInstanceReleased:
		return &InstanceReleased{}
	case TypeKeyCreated:
		return &KeyCreated{}
	case TypeKeyRotated:
		return &KeyRotated{}
	case TypeKeyDeleted:
		return &KeyDeleted{}
	case TypeSecretCreated:
		return &SecretCreated{}
	case TypeSecretRotated:
		return &SecretRotated{}
	case TypeSecretDeleted:
		return &SecretDeleted{}
	}
	if d := backupData(typ); d != nil {
		return d
	}
	if typ == TypeDevClockSet {
		return &DevClockSet{}
	}
	if d := sessionData(typ); d != nil {
		return d
	}
	if d := nameData(typ); d != nil {
		return d
	}
	if d := bindingData(typ); d != nil {
		return d
	}
	return restoreData(typ)
}

// EncodeData encodes a payload in the current schema. d must be a pointer to
// one of the payload types of this package.
func EncodeData(d EventData) []byte {
	return AppendData(make([]byte, 0, 64), d)
}

// AppendData appends the encoding of d (EncodeData's) to b: a caller that
// encodes payload after payload reuses one buffer.
func AppendData(b []byte, d EventData) []byte {
	w := wire.Writer{B: b}
	d.encode(&w)
	return w.B
}

// DecodeData decodes a payload. Unknown types or schemas and malformed bytes
// are corruption errors.
func DecodeData(typ string, schema uint16, b []byte) (EventData, error) {
	if schema != SchemaVersion {
		return nil, Corruption("event type %s: unknown schema version %d", typ, schema)
	}
	d := newData(typ)
	if d == nil {
		return nil, Corruption("unknown event type %q", typ)
	}
	r := wire.Reader{B: b}
	d.decode(&r)
	if err := r.Done(); err != nil {
		return nil, Corruption("event type %s: %v", typ, err)
	}
	return d, nil
}

// Decode decodes e's payload.
func (e Event) Decode() (EventData, error) {
	d, err := DecodeData(e.Type, e.Schema, e.Data)
	if err != nil {
		return nil, fmt.Errorf("event %s at position %d: %w", e.ID, e.Position, err)
	}
	return d, nil
}
