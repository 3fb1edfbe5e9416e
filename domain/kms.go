package domain

import "time"

// Limits of the software KMS.
const (
	MaxQuota           = 100000 // largest key or secret quota of one instance
	DefaultKeyQuota    = 1000
	DefaultSecretQuota = 1000
	MaxDescription     = 1024 // characters of a key description
	MaxSecretValue     = 64 << 10
	KeySpecAES256      = "AES_256"
)

// Instance is the state of one KMS instance as its events left it.
type Instance struct {
	ID          InstanceID
	Account     AccountID
	Region      string
	KeyQuota    uint32
	SecretQuota uint32
	LiveKeys    uint32
	LiveSecrets uint32
	Released    bool
	CreatedAt   time.Time
	ReleasedAt  time.Time
	Revision    uint64 // revision of the last event of its stream
}

// KeyVersion is one version of a key.
type KeyVersion struct {
	Version  uint32
	Material Sealed
	// SealedBy is the ID of the event that carried Material, and Stream its
	// stream: together with the account they are the seal's associated data.
	SealedBy  EventID
	Stream    string
	CreatedAt time.Time
}

// Key is a live key with every version it has.
type Key struct {
	ID          KeyID
	Instance    InstanceID
	Account     AccountID
	Region      string
	Description string
	Spec        string
	Versions    []KeyVersion
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Primary is the newest version, used to encrypt.
func (k *Key) Primary() KeyVersion { return k.Versions[len(k.Versions)-1] }

// Version returns version v, if the key has it.
func (k *Key) Version(v uint32) (KeyVersion, bool) {
	if v == 0 || int(v) > len(k.Versions) {
		return KeyVersion{}, false
	}
	return k.Versions[v-1], true
}

// SecretVersion is one value of a secret.
type SecretVersion struct {
	Version   uint32
	Key       KeyID
	Value     []byte // KMS ciphertext under Key
	CreatedAt time.Time
}

// Secret is a live secret with every version it has.
type Secret struct {
	Name      string
	Instance  InstanceID
	Account   AccountID
	Region    string
	Key       KeyID
	Versions  []SecretVersion
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Current is the newest version.
func (s *Secret) Current() SecretVersion { return s.Versions[len(s.Versions)-1] }

// NewInstance decides the creation of a KMS instance.
func NewInstance(id InstanceID, region string, keyQuota, secretQuota uint32) (*InstanceCreated, error) {
	const op = "create instance"
	if err := ValidateRegion(region); err != nil {
		return nil, err
	}
	if keyQuota == 0 || keyQuota > MaxQuota {
		return nil, Invalid(op, "key quota %d must be between 1 and %d", keyQuota, MaxQuota)
	}
	if secretQuota == 0 || secretQuota > MaxQuota {
		return nil, Invalid(op, "secret quota %d must be between 1 and %d", secretQuota, MaxQuota)
	}
	return &InstanceCreated{Instance: id, Region: region, KeyQuota: keyQuota, SecretQuota: secretQuota}, nil
}

func (in *Instance) live(op string) error {
	if in.Released {
		return Errorf(ErrFailedPrecondition, op, string(in.ID), "create a new instance or restore into another one", "KMS instance is released")
	}
	return nil
}

// Release decides the release of the instance.
func (in *Instance) Release() (*InstanceReleased, error) {
	if err := in.live("release instance"); err != nil {
		return nil, err
	}
	return &InstanceReleased{Instance: in.ID}, nil
}

// CreateKey decides the creation of a key. regionHasKey reports whether a
// key with that ID already lives in the instance's region (in any instance
// of the account).
func (in *Instance) CreateKey(id KeyID, description string, material Sealed, regionHasKey bool) (*KeyCreated, error) {
	const op = "create key"
	if err := in.live(op); err != nil {
		return nil, err
	}
	description, err := CleanDescription(description)
	if err != nil {
		return nil, err
	}
	if regionHasKey {
		return nil, Errorf(ErrAlreadyExists, op, string(id), "delete it there first", "a key with this ID already exists in region %s", in.Region)
	}
	if in.LiveKeys >= in.KeyQuota {
		return nil, Errorf(ErrQuotaExceeded, op, string(in.ID), "delete a key or use another instance", "key quota of %d is used up", in.KeyQuota)
	}
	return &KeyCreated{Key: id, Description: description, Spec: KeySpecAES256, Material: material}, nil
}

// ValidateDescription checks what a key description holds (see
// CleanDescription), trimmed or not.
func ValidateDescription(d string) error {
	_, err := CleanDescription(d)
	return err
}

func (in *Instance) ownKey(op string, k *Key) error {
	if k == nil || k.Instance != in.ID {
		id := ""
		if k != nil {
			id = string(k.ID)
		}
		return NotFound(op, "key", id)
	}
	return nil
}

// RotateKey decides a new version of k.
func (in *Instance) RotateKey(k *Key, material Sealed) (*KeyRotated, error) {
	const op = "rotate key"
	if err := in.live(op); err != nil {
		return nil, err
	}
	if err := in.ownKey(op, k); err != nil {
		return nil, err
	}
	return &KeyRotated{Key: k.ID, Version: uint32(len(k.Versions)) + 1, Material: material}, nil
}

// DeleteKey decides the deletion of k. secretsUsing is the number of live
// secrets encrypted under it: a key still in use cannot be deleted, since
// that would make those secrets unreadable.
func (in *Instance) DeleteKey(k *Key, secretsUsing int) (*KeyDeleted, error) {
	const op = "delete key"
	if err := in.live(op); err != nil {
		return nil, err
	}
	if err := in.ownKey(op, k); err != nil {
		return nil, err
	}
	if secretsUsing > 0 {
		return nil, Errorf(ErrFailedPrecondition, op, string(k.ID), "delete those secrets first", "key encrypts %d live secret(s)", secretsUsing)
	}
	return &KeyDeleted{Key: k.ID}, nil
}

// CreateSecret decides the creation of a secret whose value was encrypted
// under key k (nil when no such key exists). regionHasSecret reports whether
// the name is taken in the instance's region.
func (in *Instance) CreateSecret(name string, k *Key, value []byte, regionHasSecret bool) (*SecretCreated, error) {
	const op = "create secret"
	if err := in.live(op); err != nil {
		return nil, err
	}
	if err := ValidateSecretName(name); err != nil {
		return nil, err
	}
	if k == nil {
		return nil, Errorf(ErrNotFound, op, name, "create the key first, or name a live key", "encryption key not found")
	}
	if k.Instance != in.ID {
		return nil, Errorf(ErrFailedPrecondition, op, name, "use a key of instance "+string(in.ID),
			"encryption key %s belongs to another KMS instance", k.ID)
	}
	if regionHasSecret {
		return nil, Errorf(ErrAlreadyExists, op, name, "delete it there first or choose another name", "a secret with this name already exists in region %s", in.Region)
	}
	if in.LiveSecrets >= in.SecretQuota {
		return nil, Errorf(ErrQuotaExceeded, op, string(in.ID), "delete a secret or use another instance", "secret quota of %d is used up", in.SecretQuota)
	}
	return &SecretCreated{Name: name, Key: k.ID, Value: value}, nil
}

// RotateSecret decides a new value of s, encrypted under its key k.
func (in *Instance) RotateSecret(s *Secret, k *Key, value []byte) (*SecretRotated, error) {
	const op = "rotate secret"
	if err := in.live(op); err != nil {
		return nil, err
	}
	if s == nil || s.Instance != in.ID {
		return nil, NotFound(op, "secret", "")
	}
	if k == nil || k.Instance != in.ID {
		return nil, Errorf(ErrFailedPrecondition, op, s.Name, "restore the key first", "encryption key %s is no longer live", s.Key)
	}
	return &SecretRotated{Name: s.Name, Version: uint32(len(s.Versions)) + 1, Key: k.ID, Value: value}, nil
}

// DeleteSecret decides the deletion of s.
func (in *Instance) DeleteSecret(s *Secret) (*SecretDeleted, error) {
	const op = "delete secret"
	if err := in.live(op); err != nil {
		return nil, err
	}
	if s == nil || s.Instance != in.ID {
		return nil, NotFound(op, "secret", "")
	}
	return &SecretDeleted{Name: s.Name}, nil
}

// Apply evolves the instance by one of its own events.
func (in *Instance) Apply(e Event, d EventData) {
	in.Revision = e.Revision
	switch d := d.(type) {
	case *InstanceCreated:
		*in = Instance{ID: d.Instance, Account: e.Account, Region: d.Region, KeyQuota: d.KeyQuota,
			SecretQuota: d.SecretQuota, CreatedAt: e.OccurredAt, Revision: e.Revision}
	case *InstanceReleased:
		in.Released, in.ReleasedAt = true, e.OccurredAt
		in.LiveKeys, in.LiveSecrets = 0, 0
	case *KeyCreated, *KeyRestored:
		in.LiveKeys++
	case *KeyDeleted:
		in.LiveKeys--
	case *SecretCreated, *SecretRestored:
		in.LiveSecrets++
	case *SecretDeleted:
		in.LiveSecrets--
	}
}

// NewKey builds a key from its creation event.
func NewKey(e Event, d *KeyCreated) *Key {
	return &Key{ID: d.Key, Instance: e.Instance, Account: e.Account, Region: e.Region,
		Description: d.Description, Spec: d.Spec, CreatedAt: e.OccurredAt, UpdatedAt: e.OccurredAt,
		Versions: []KeyVersion{{Version: 1, Material: d.Material, SealedBy: e.ID, Stream: e.Stream, CreatedAt: e.OccurredAt}}}
}

// Rotate adds the version recorded by d.
func (k *Key) Rotate(e Event, d *KeyRotated) {
	k.Versions = append(k.Versions, KeyVersion{Version: d.Version, Material: d.Material, SealedBy: e.ID, Stream: e.Stream, CreatedAt: e.OccurredAt})
	k.UpdatedAt = e.OccurredAt
}

// NewSecret builds a secret from its creation event.
func NewSecret(e Event, d *SecretCreated) *Secret {
	return &Secret{Name: d.Name, Instance: e.Instance, Account: e.Account, Region: e.Region, Key: d.Key,
		CreatedAt: e.OccurredAt, UpdatedAt: e.OccurredAt,
		Versions: []SecretVersion{{Version: 1, Key: d.Key, Value: d.Value, CreatedAt: e.OccurredAt}}}
}

// Rotate adds the version recorded by d.
func (s *Secret) Rotate(e Event, d *SecretRotated) {
	s.Versions = append(s.Versions, SecretVersion{Version: d.Version, Key: d.Key, Value: d.Value, CreatedAt: e.OccurredAt})
	s.Key = d.Key
	s.UpdatedAt = e.OccurredAt
}
