package publicevent

import (
	"encoding/hex"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
)

// FromEvent maps an event of the log to its public form. It decodes the
// payload: a payload that does not decode is a corruption error
// (domain.ErrCorrupt), and a type without a public form is ErrNoPublicForm.
// Byte fields are copied, so the result does not alias e.Data.
func FromEvent(e domain.Event) (Event, error) {
	d, err := e.Decode()
	if err != nil {
		return Event{}, fmt.Errorf("publicevent: %w", err)
	}
	data, err := fromData(d)
	if err != nil {
		return Event{}, fmt.Errorf("event %s at position %d: %w", e.ID, e.Position, err)
	}
	return Event{
		Schema:     Schema,
		ID:         e.ID.String(),
		Type:       e.Type,
		Stream:     e.Stream,
		Revision:   e.Revision,
		Position:   e.Position,
		OccurredAt: e.OccurredAt.UTC(),
		Account:    string(e.Account),
		Region:     e.Region,
		Instance:   string(e.Instance),
		Data:       data,
	}, nil
}

func fromData(d domain.EventData) (Data, error) {
	switch d := d.(type) {
	case *domain.AccountCreated:
		// The token hash stays in the log: publishing it would allow an
		// offline guess of the token.
		return &AccountCreated{AccountID: string(d.Account), Name: d.Name}, nil
	case *domain.InstanceCreated:
		return &InstanceCreated{InstanceID: string(d.Instance), Region: d.Region,
			KeyQuota: d.KeyQuota, SecretQuota: d.SecretQuota}, nil
	case *domain.InstanceReleased:
		return &InstanceReleased{InstanceID: string(d.Instance)}, nil
	case *domain.KeyCreated:
		return &KeyCreated{KeyID: string(d.Key), Description: d.Description, Spec: d.Spec,
			Version: 1, MaterialSealed: clone(d.Material)}, nil
	case *domain.KeyRotated:
		return &KeyRotated{KeyID: string(d.Key), Version: d.Version,
			MaterialSealed: clone(d.Material)}, nil
	case *domain.KeyDeleted:
		return &KeyDeleted{KeyID: string(d.Key)}, nil
	case *domain.SecretCreated:
		return &SecretCreated{Name: d.Name, KeyID: string(d.Key), Version: 1,
			ValueCiphertext: clone(d.Value)}, nil
	case *domain.SecretRotated:
		return &SecretRotated{Name: d.Name, KeyID: string(d.Key), Version: d.Version,
			ValueCiphertext: clone(d.Value)}, nil
	case *domain.SecretDeleted:
		return &SecretDeleted{Name: d.Name}, nil
	case *domain.BackupCreated:
		v := &BackupInstanceCreated{BackupID: string(d.Backup), Kind: string(d.Kind), Region: d.Region, ViewableDays: d.ViewableDays}
		if !d.ExpiresAt.IsZero() {
			t := d.ExpiresAt.UTC()
			v.ExpiresAt = &t
		}
		return v, nil
	case *domain.BackupEnabled:
		return &BackupInstanceEnabled{KMSInstance: string(d.KMSInstance), Alias: d.Alias, TimeZone: d.TimeZone}, nil
	case *domain.BackupExtended:
		return &BackupViewableDaysExtended{ViewableDays: d.ViewableDays}, nil
	case *domain.BackupRenewed:
		return &BackupInstanceRenewed{ExpiresAt: d.ExpiresAt.UTC()}, nil
	case *domain.BackupExpired:
		return &BackupInstanceExpired{}, nil
	case *domain.BackupReleased:
		return &BackupInstanceReleased{}, nil
	case *domain.BackupReset:
		return &BackupInstanceReset{}, nil
	case *domain.BackupUploaded:
		return &BackupUploaded{BackupID: string(d.Backup), Name: d.Name, Region: d.Region, Day: string(d.Day),
			TimeZone: d.TimeZone, SourceBackupID: string(d.Source), KMSInstance: string(d.KMSInstance), FileID: d.FileID,
			Keys: d.Keys, Secrets: d.Secrets}, nil
	case *domain.BackupUploadDeleted:
		return &BackupUploadDeleted{}, nil
	case *domain.BackupCheckpointed:
		c := &BackupCheckpointed{Generation: d.Generation, Seq: d.Seq, Full: d.Full, At: d.At.UTC(), Day: string(d.Day),
			From: d.From, Next: d.Next, SliceDigest: hex.EncodeToString(d.SliceDigest[:]),
			PrevDigest: hex.EncodeToString(d.PrevDigest[:]), Digest: hex.EncodeToString(d.Digest[:]), InBase: d.InBase}
		for _, p := range d.Parts {
			c.Parts = append(c.Parts, SlicePart{Digest: hex.EncodeToString(p.Digest[:]), Events: p.Events, From: p.From, Next: p.Next})
		}
		return c, nil
	case *domain.BackupBaseStored:
		b := &BackupBaseStored{Generation: d.Generation, Seq: d.Seq, At: d.At.UTC(), Next: d.Next, Items: d.Items,
			Versions: d.Versions, Parts: []BasePart{}, StateDigest: hex.EncodeToString(d.StateDigest[:]),
			CheckpointDigest: hex.EncodeToString(d.CheckpointDigest[:]), PrevDigest: hex.EncodeToString(d.PrevDigest[:]),
			Digest: hex.EncodeToString(d.Digest[:])}
		for _, p := range d.Parts {
			b.Parts = append(b.Parts, BasePart{Digest: hex.EncodeToString(p.Digest[:]), Size: p.Size, Items: p.Items, Versions: p.Versions})
		}
		return b, nil
	case *domain.BackupSourceReleased:
		return &BackupSourceReleased{KMSInstance: string(d.Instance), Next: d.Next, End: d.End}, nil
	case *domain.BackupFailing:
		return &BackupFailing{Work: d.Work, Reason: d.Reason, Since: d.Since.UTC(), Attempts: d.Attempts}, nil
	case *domain.KeyRestored:
		v := &KeyRestored{KeyID: string(d.Key), Description: d.Description, Spec: d.Spec,
			Versions: make([]RestoredKeyVersion, len(d.Versions)), From: fromRestored(d.From)}
		for i, kv := range d.Versions {
			v.Versions[i] = RestoredKeyVersion{Version: kv.Version, CreatedAt: kv.CreatedAt.UTC(), MaterialSealed: clone(kv.Material)}
		}
		return v, nil
	case *domain.SecretRestored:
		v := &SecretRestored{Name: d.Name, KeyID: string(d.Key),
			Versions: make([]RestoredSecretVersion, len(d.Versions)), From: fromRestored(d.From)}
		for i, sv := range d.Versions {
			v.Versions[i] = RestoredSecretVersion{Version: sv.Version, KeyID: string(sv.Key), CreatedAt: sv.CreatedAt.UTC(),
				ValueCiphertext: clone(sv.Value)}
		}
		return v, nil
	case *domain.Audited:
		return &Audited{Action: d.Action, Actor: d.Actor, BackupID: string(d.Backup), Day: string(d.Day),
			Target: d.Target, Item: d.Item, Keys: d.Keys, Secrets: d.Secrets}, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrNoPublicForm, d.EventType())
}

func fromRestored(f domain.RestoredFrom) RestoredFrom {
	return RestoredFrom{BackupID: string(f.Backup), Day: string(f.Day), Seq: f.Seq, By: f.By}
}

// clone copies b, never returning nil, so that empty bytes are written as ""
// rather than null.
func clone(b []byte) []byte { return append([]byte{}, b...) }
