package publicevent

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/domain"
)

// opToEvent names ToEvent's errors.
const opToEvent = "map public event"

// KMSTypes are the event types ToEvent maps back: the events of a KMS
// instance's stream (kms-<instance>), which an external KMS that shares
// kmsbackup's envelope may publish for ingestion (see docs/events.md,
// "Ingesting events from an external KMS").
func KMSTypes() []string {
	return []string{
		domain.TypeInstanceCreated, domain.TypeInstanceReleased,
		domain.TypeKeyCreated, domain.TypeKeyRotated, domain.TypeKeyDeleted,
		domain.TypeSecretCreated, domain.TypeSecretRotated, domain.TypeSecretDeleted,
		domain.TypeKeyRestored, domain.TypeSecretRestored,
	}
}

// ToEvent maps a public event of a KMS instance's stream back to the log's
// form: the reverse of FromEvent for the types KMSTypes lists, so that
// ToEvent(FromEvent(e)) is e for every such event. Revision and Position
// are copied as they are; an append to a log assigns its own. Byte fields
// are copied, so the result does not alias pe.Data.
//
// It checks the envelope and the data against each other without any
// state: the schema; a ULID event ID; a stream kms-<instance> naming the
// envelope's instance; a valid account, region and time; well-formed IDs,
// names, days and versions in the data, and data of the envelope's type.
// Every failure, including a type it does not map (another family, or one
// unknown to this version, whose data is *Unknown), is an error wrapping
// domain.ErrInvalidArgument.
func ToEvent(pe Event) (domain.Event, error) {
	e, err := toEnvelope(pe)
	if err != nil {
		return domain.Event{}, err
	}
	if pe.Data == nil {
		return domain.Event{}, invalidEvent(pe, "it has no data")
	}
	if t := pe.Data.EventType(); t != pe.Type {
		return domain.Event{}, invalidEvent(pe, "its data is of type %s", t)
	}
	d, err := toData(pe, e)
	if err != nil {
		return domain.Event{}, err
	}
	e.Data = domain.EncodeData(d)
	return e, nil
}

// toEnvelope checks and copies the envelope.
func toEnvelope(pe Event) (domain.Event, error) {
	if pe.Schema != Schema {
		return domain.Event{}, invalidEvent(pe, "schema %q is not %q", pe.Schema, Schema)
	}
	id, err := ulid.ParseStrict(pe.ID)
	if err != nil || id == (ulid.ULID{}) {
		return domain.Event{}, invalidEvent(pe, "id %q is not a ULID", pe.ID)
	}
	if !isKMSType(pe.Type) {
		return domain.Event{}, invalidEvent(pe, "type %q is not an event of a KMS instance's stream (%s)",
			pe.Type, strings.Join(KMSTypes(), ", "))
	}
	instance, err := domain.ParseInstanceID(pe.Instance)
	if err != nil {
		return domain.Event{}, invalidEvent(pe, "instance: %v", err)
	}
	if want := domain.KMSStream(instance); pe.Stream != want {
		return domain.Event{}, invalidEvent(pe, "stream %q is not the stream of instance %s (%q)", pe.Stream, instance, want)
	}
	account, err := domain.ParseAccountID(pe.Account)
	if err != nil {
		return domain.Event{}, invalidEvent(pe, "account: %v", err)
	}
	if err := domain.ValidateRegion(pe.Region); err != nil {
		return domain.Event{}, invalidEvent(pe, "region: %v", err)
	}
	if pe.OccurredAt.IsZero() {
		return domain.Event{}, invalidEvent(pe, "occurred_at is missing")
	}
	return domain.Event{
		ID:         id,
		Stream:     pe.Stream,
		Revision:   pe.Revision,
		Position:   pe.Position,
		Type:       pe.Type,
		Schema:     domain.SchemaVersion,
		OccurredAt: pe.OccurredAt.UTC(),
		Account:    account,
		Region:     pe.Region,
		Instance:   instance,
	}, nil
}

func isKMSType(t string) bool { return slices.Contains(KMSTypes(), t) }

// toData maps and checks the data; e is the envelope already checked.
func toData(pe Event, e domain.Event) (domain.EventData, error) {
	bad := func(format string, args ...any) error { return invalidEvent(pe, format, args...) }
	key := func(s string) (domain.KeyID, error) {
		id, err := domain.ParseKeyID(s)
		if err != nil {
			return "", bad("key_id: %v", err)
		}
		return id, nil
	}
	name := func(s string) error {
		if err := domain.ValidateSecretName(s); err != nil {
			return bad("name: %v", err)
		}
		return nil
	}
	switch d := pe.Data.(type) {
	case *InstanceCreated:
		if d.InstanceID != string(e.Instance) {
			return nil, bad("instance_id %q differs from the envelope's instance", d.InstanceID)
		}
		if d.Region != e.Region {
			return nil, bad("region %q differs from the envelope's region %q", d.Region, e.Region)
		}
		if _, err := domain.NewInstance(e.Instance, d.Region, d.KeyQuota, d.SecretQuota); err != nil {
			return nil, bad("%v", err)
		}
		return &domain.InstanceCreated{Instance: e.Instance, Region: d.Region, KeyQuota: d.KeyQuota, SecretQuota: d.SecretQuota}, nil
	case *InstanceReleased:
		if d.InstanceID != string(e.Instance) {
			return nil, bad("instance_id %q differs from the envelope's instance", d.InstanceID)
		}
		return &domain.InstanceReleased{Instance: e.Instance}, nil
	case *KeyCreated:
		id, err := key(d.KeyID)
		if err != nil {
			return nil, err
		}
		if d.Version != 1 {
			return nil, bad("version %d: a created key is at version 1", d.Version)
		}
		if err := checkKey(d.Description, d.Spec); err != nil {
			return nil, bad("%v", err)
		}
		if len(d.MaterialSealed) == 0 {
			return nil, bad("material_sealed is empty")
		}
		return &domain.KeyCreated{Key: id, Description: d.Description, Spec: d.Spec, Material: domain.Sealed(clone(d.MaterialSealed))}, nil
	case *KeyRotated:
		id, err := key(d.KeyID)
		if err != nil {
			return nil, err
		}
		if d.Version < 2 {
			return nil, bad("version %d: a rotated key is at version 2 or later", d.Version)
		}
		if len(d.MaterialSealed) == 0 {
			return nil, bad("material_sealed is empty")
		}
		return &domain.KeyRotated{Key: id, Version: d.Version, Material: domain.Sealed(clone(d.MaterialSealed))}, nil
	case *KeyDeleted:
		id, err := key(d.KeyID)
		if err != nil {
			return nil, err
		}
		return &domain.KeyDeleted{Key: id}, nil
	case *SecretCreated:
		if err := name(d.Name); err != nil {
			return nil, err
		}
		id, err := key(d.KeyID)
		if err != nil {
			return nil, err
		}
		if d.Version != 1 {
			return nil, bad("version %d: a created secret is at version 1", d.Version)
		}
		if len(d.ValueCiphertext) == 0 {
			return nil, bad("value_ciphertext is empty")
		}
		return &domain.SecretCreated{Name: d.Name, Key: id, Value: clone(d.ValueCiphertext)}, nil
	case *SecretRotated:
		if err := name(d.Name); err != nil {
			return nil, err
		}
		id, err := key(d.KeyID)
		if err != nil {
			return nil, err
		}
		if d.Version < 2 {
			return nil, bad("version %d: a rotated secret is at version 2 or later", d.Version)
		}
		if len(d.ValueCiphertext) == 0 {
			return nil, bad("value_ciphertext is empty")
		}
		return &domain.SecretRotated{Name: d.Name, Version: d.Version, Key: id, Value: clone(d.ValueCiphertext)}, nil
	case *SecretDeleted:
		if err := name(d.Name); err != nil {
			return nil, err
		}
		return &domain.SecretDeleted{Name: d.Name}, nil
	case *KeyRestored:
		id, err := key(d.KeyID)
		if err != nil {
			return nil, err
		}
		if err := checkKey(d.Description, d.Spec); err != nil {
			return nil, bad("%v", err)
		}
		from, err := toRestored(d.From)
		if err != nil {
			return nil, bad("from: %v", err)
		}
		if len(d.Versions) == 0 {
			return nil, bad("a restored key has no versions")
		}
		v := &domain.KeyRestored{Key: id, Description: d.Description, Spec: d.Spec,
			Versions: make([]domain.RestoredKeyVersion, len(d.Versions)), From: from}
		for i, kv := range d.Versions {
			if kv.Version != uint32(i)+1 {
				return nil, bad("versions[%d] is version %d, want %d (oldest first, from 1)", i, kv.Version, i+1)
			}
			if len(kv.MaterialSealed) == 0 {
				return nil, bad("versions[%d]: material_sealed is empty", i)
			}
			v.Versions[i] = domain.RestoredKeyVersion{Version: kv.Version, Material: domain.Sealed(clone(kv.MaterialSealed)),
				CreatedAt: utc(kv.CreatedAt)}
		}
		return v, nil
	case *SecretRestored:
		if err := name(d.Name); err != nil {
			return nil, err
		}
		id, err := key(d.KeyID)
		if err != nil {
			return nil, err
		}
		from, err := toRestored(d.From)
		if err != nil {
			return nil, bad("from: %v", err)
		}
		if len(d.Versions) == 0 {
			return nil, bad("a restored secret has no versions")
		}
		v := &domain.SecretRestored{Name: d.Name, Key: id,
			Versions: make([]domain.RestoredSecretVersion, len(d.Versions)), From: from}
		for i, sv := range d.Versions {
			if sv.Version != uint32(i)+1 {
				return nil, bad("versions[%d] is version %d, want %d (oldest first, from 1)", i, sv.Version, i+1)
			}
			vk, err := domain.ParseKeyID(sv.KeyID)
			if err != nil {
				return nil, bad("versions[%d].key_id: %v", i, err)
			}
			if len(sv.ValueCiphertext) == 0 {
				return nil, bad("versions[%d]: value_ciphertext is empty", i)
			}
			v.Versions[i] = domain.RestoredSecretVersion{Version: sv.Version, Key: vk, Value: clone(sv.ValueCiphertext),
				CreatedAt: utc(sv.CreatedAt)}
		}
		return v, nil
	}
	// Unreachable after toEnvelope's type check, unless a KMS type lacks a
	// case above.
	return nil, bad("data of type %T is not mapped", pe.Data)
}

// checkKey checks the description and spec of a created or restored key.
func checkKey(description, spec string) error {
	if err := domain.ValidateDescription(description); err != nil {
		return err
	}
	if spec != domain.KeySpecAES256 {
		return fmt.Errorf("spec %q is not %q", spec, domain.KeySpecAES256)
	}
	return nil
}

func toRestored(f RestoredFrom) (domain.RestoredFrom, error) {
	backup, err := domain.ParseBackupID(f.BackupID)
	if err != nil {
		return domain.RestoredFrom{}, err
	}
	day, err := domain.ParseDay(f.Day)
	if err != nil {
		return domain.RestoredFrom{}, err
	}
	if f.By == "" {
		return domain.RestoredFrom{}, errors.New("by is empty")
	}
	return domain.RestoredFrom{Backup: backup, Day: day, Seq: f.Seq, By: f.By}, nil
}

// utc returns t in UTC, keeping the zero time zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// invalidEvent is ToEvent's error: domain.ErrInvalidArgument naming the
// event.
func invalidEvent(pe Event, format string, args ...any) error {
	item := pe.ID
	if pe.Type != "" {
		item = pe.Type + " " + pe.ID
	}
	return &domain.Error{Op: opToEvent, Kind: domain.ErrInvalidArgument, Item: item, Msg: fmt.Sprintf(format, args...)}
}
