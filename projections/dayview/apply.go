package dayview

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Writer is what a change is applied to. Writes are blind: nothing is read
// to decide them, so replaying an event costs its writes alone.
type Writer interface {
	// Set sets key to value.
	Set(key, value []byte) error
	// DeleteRange deletes every key in [start, end).
	DeleteRange(start, end []byte) error
}

// Mode is how deletions are applied.
type Mode uint8

const (
	// Instant: the state at an instant. A deletion removes the item.
	Instant Mode = iota
	// WholeDay: the items of a day as they last stood within it. A
	// deletion marks the item (deleted-at) and keeps it as it was just
	// before; a creation replaces whatever the item's ID held (a deleted
	// incarnation), so the item is as it last stood.
	WholeDay
)

// Change is one event's change to one item, decoded.
type Change struct {
	Kind byte
	ID   string
	e    *domain.Event
	d    domain.EventData
}

// ChangeOf decodes an event of a KMS instance's stream, as a backup holds
// it (key material sealed under the backup's data key). ok is false for an
// event that changes no key or secret (an instance's creation or release,
// a type this version does not know). Errors: domain.ErrCorrupt for a
// payload that does not decode.
func ChangeOf(e *domain.Event) (c Change, ok bool, err error) {
	switch e.Type {
	case domain.TypeKeyCreated, domain.TypeKeyRotated, domain.TypeKeyDeleted, domain.TypeKeyRestored,
		domain.TypeSecretCreated, domain.TypeSecretRotated, domain.TypeSecretDeleted, domain.TypeSecretRestored:
	default:
		return Change{}, false, nil
	}
	d, err := e.Decode()
	if err != nil {
		return Change{}, false, err
	}
	c = Change{e: e, d: d}
	switch d := d.(type) {
	case *domain.KeyCreated:
		c.Kind, c.ID = KindKey, string(d.Key)
	case *domain.KeyRotated:
		c.Kind, c.ID = KindKey, string(d.Key)
	case *domain.KeyDeleted:
		c.Kind, c.ID = KindKey, string(d.Key)
	case *domain.KeyRestored:
		c.Kind, c.ID = KindKey, string(d.Key)
	case *domain.SecretCreated:
		c.Kind, c.ID = KindSecret, d.Name
	case *domain.SecretRotated:
		c.Kind, c.ID = KindSecret, d.Name
	case *domain.SecretDeleted:
		c.Kind, c.ID = KindSecret, d.Name
	case *domain.SecretRestored:
		c.Kind, c.ID = KindSecret, d.Name
	}
	if c.ID == "" {
		return Change{}, false, domain.Corruption("event %s (%s) names no item", e.ID, e.Type)
	}
	return c, true, nil
}

// Apply writes the change in mode m:
//   - a creation sets the row and version 1 (in WholeDay, after deleting
//     whatever the item held: a deleted incarnation);
//   - a rotation sets its version;
//   - a deletion deletes the item's records (Instant) or sets its
//     deleted-at (WholeDay);
//   - a restore (KeyRestored, SecretRestored) deletes the item's records,
//     then sets its row and every version.
func (c Change) Apply(w Writer, m Mode) error {
	at := c.e.OccurredAt
	switch d := c.d.(type) {
	case *domain.KeyCreated:
		return c.create(w, m, &Row{CreatedAt: at, Description: d.Description},
			&Version{Version: 1, CreatedAt: at, Material: d.Material, SealedBy: c.e.ID})
	case *domain.SecretCreated:
		return c.create(w, m, &Row{CreatedAt: at}, &Version{Version: 1, CreatedAt: at, KeyID: d.Key, Value: d.Value})
	case *domain.KeyRotated:
		return c.version(w, &Version{Version: d.Version, CreatedAt: at, Material: d.Material, SealedBy: c.e.ID})
	case *domain.SecretRotated:
		return c.version(w, &Version{Version: d.Version, CreatedAt: at, KeyID: d.Key, Value: d.Value})
	case *domain.KeyDeleted, *domain.SecretDeleted:
		return c.remove(w, m, at)
	case *domain.KeyRestored:
		vs := make([]Version, len(d.Versions))
		for i, v := range d.Versions {
			vs[i] = Version{Version: v.Version, CreatedAt: v.CreatedAt, Material: v.Material, SealedBy: c.e.ID}
		}
		return c.restore(w, &Row{CreatedAt: at, Description: d.Description}, vs)
	case *domain.SecretRestored:
		vs := make([]Version, len(d.Versions))
		for i, v := range d.Versions {
			vs[i] = Version{Version: v.Version, CreatedAt: v.CreatedAt, KeyID: v.Key, Value: v.Value}
		}
		return c.restore(w, &Row{CreatedAt: at}, vs)
	}
	return nil
}

func (c Change) create(w Writer, m Mode, r *Row, v *Version) error {
	if m == WholeDay {
		if err := w.DeleteRange(ItemStart(c.Kind, c.ID), ItemEnd(c.Kind, c.ID)); err != nil {
			return err
		}
	}
	if err := w.Set(RowKey(c.Kind, c.ID), encodeRow(r)); err != nil {
		return err
	}
	return c.version(w, v)
}

func (c Change) version(w Writer, v *Version) error {
	if v.Version == 0 {
		return domain.Corruption("event %s adds version 0 to %s", c.e.ID, c.ID)
	}
	return w.Set(VersionKey(c.Kind, c.ID, v.Version), encodeVersion(c.Kind, v))
}

func (c Change) remove(w Writer, m Mode, at time.Time) error {
	if m == WholeDay {
		return w.Set(DeletedKey(c.Kind, c.ID), encodeDeleted(at))
	}
	return w.DeleteRange(ItemStart(c.Kind, c.ID), ItemEnd(c.Kind, c.ID))
}

func (c Change) restore(w Writer, r *Row, vs []Version) error {
	if len(vs) == 0 {
		return domain.Corruption("event %s restores %s without versions", c.e.ID, c.ID)
	}
	if err := w.DeleteRange(ItemStart(c.Kind, c.ID), ItemEnd(c.Kind, c.ID)); err != nil {
		return err
	}
	if err := w.Set(RowKey(c.Kind, c.ID), encodeRow(r)); err != nil {
		return err
	}
	for i := range vs {
		if err := c.version(w, &vs[i]); err != nil {
			return err
		}
	}
	return nil
}
