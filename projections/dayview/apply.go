package dayview

import (
	"encoding/binary"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// Writer is what a change is applied to. Writes are blind: nothing is read
// to decide them, so replaying an event costs its writes alone.
type Writer interface {
	// Set sets key to value (both are copied).
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

// What a change does.
const (
	opCreate byte = iota + 1
	opRotate
	opDelete
	opRestore
)

// Change is one event's change to one item, decoded. Its byte fields alias
// the event's payload: use it while the event is.
type Change struct {
	Kind byte
	ID   []byte
	op   byte
	e    *domain.Event
	// create, rotate:
	version  uint32
	desc     []byte // keys: the description
	keyID    []byte // secrets: the key of the version
	material []byte // keys: the sealed material; secrets: the ciphertext
	// restore:
	restored domain.EventData
}

// ChangeOf decodes an event of a KMS instance's stream, as a backup holds
// it (key material sealed under the backup's data key). ok is false for an
// event that changes no key or secret (an instance's creation or release,
// a type this version does not know). Creations, rotations and deletions
// are read in place, without copying the payload (replay costs what it
// writes); restores through domain.DecodeData. Errors: domain.ErrCorrupt
// for a payload that does not decode.
func ChangeOf(e *domain.Event) (c Change, ok bool, err error) {
	c = Change{e: e}
	switch e.Type {
	case domain.TypeKeyCreated, domain.TypeKeyRotated, domain.TypeKeyDeleted, domain.TypeKeyRestored:
		c.Kind = KindKey
	case domain.TypeSecretCreated, domain.TypeSecretRotated, domain.TypeSecretDeleted, domain.TypeSecretRestored:
		c.Kind = KindSecret
	default:
		return Change{}, false, nil
	}
	if e.Schema != domain.SchemaVersion {
		return Change{}, false, domain.Corruption("event %s (%s): unknown schema version %d", e.ID, e.Type, e.Schema)
	}
	p := payload{b: e.Data}
	switch e.Type {
	case domain.TypeKeyCreated:
		c.op, c.version = opCreate, 1
		c.ID, c.desc = p.str(), p.str()
		p.str() // spec
		c.material = p.str()
	case domain.TypeKeyRotated:
		c.op = opRotate
		c.ID, c.version, c.material = p.str(), p.u32(), p.str()
	case domain.TypeSecretCreated:
		c.op, c.version = opCreate, 1
		c.ID, c.keyID, c.material = p.str(), p.str(), p.str()
	case domain.TypeSecretRotated:
		c.op = opRotate
		c.ID, c.version, c.keyID, c.material = p.str(), p.u32(), p.str(), p.str()
	case domain.TypeKeyDeleted, domain.TypeSecretDeleted:
		c.op = opDelete
		c.ID = p.str()
	default: // a restore: rare, decoded whole
		d, err := e.Decode()
		if err != nil {
			return Change{}, false, err
		}
		c.op, c.restored = opRestore, d
		if k, ok := d.(*domain.KeyRestored); ok {
			c.ID = []byte(k.Key)
		} else {
			c.ID = []byte(d.(*domain.SecretRestored).Name)
		}
		p.b = nil
	}
	if p.bad || len(p.b) != 0 {
		return Change{}, false, domain.Corruption("event %s (%s): the payload does not decode", e.ID, e.Type)
	}
	if len(c.ID) == 0 {
		return Change{}, false, domain.Corruption("event %s (%s) names no item", e.ID, e.Type)
	}
	return c, true, nil
}

// payload reads a payload's fields in place.
type payload struct {
	b   []byte
	bad bool
}

func (p *payload) uvarint() uint64 {
	v, n := binary.Uvarint(p.b)
	if n <= 0 {
		p.bad, p.b = true, nil
		return 0
	}
	p.b = p.b[n:]
	return v
}

func (p *payload) u32() uint32 {
	v := p.uvarint()
	if v > 1<<32-1 {
		p.bad = true
	}
	return uint32(v)
}

func (p *payload) str() []byte {
	n := p.uvarint()
	if p.bad || n > uint64(len(p.b)) {
		p.bad, p.b = true, nil
		return nil
	}
	out := p.b[:n:n]
	p.b = p.b[n:]
	return out
}

// Applier applies changes, reusing its buffers for the keys and values it
// writes (the Writer copies them). The zero value is ready. Not safe for
// concurrent use.
type Applier struct{ key, val []byte }

// Apply writes the change in mode m (see Applier.Apply).
func (c *Change) Apply(w Writer, m Mode) error {
	var a Applier
	return a.Apply(w, m, c)
}

// Apply writes change c in mode m:
//   - a creation sets the row and version 1 (in WholeDay, after deleting
//     whatever the item held: a deleted incarnation);
//   - a rotation sets its version;
//   - a deletion deletes the item's records (Instant) or sets its
//     deleted-at (WholeDay);
//   - a restore (KeyRestored, SecretRestored) deletes the item's records,
//     then sets its row and every version.
func (a *Applier) Apply(w Writer, m Mode, c *Change) error {
	at := c.e.OccurredAt
	switch c.op {
	case opCreate:
		if m == WholeDay {
			if err := a.deleteItem(w, c); err != nil {
				return err
			}
		}
		if err := a.row(w, c, at, c.desc); err != nil {
			return err
		}
		return a.version(w, c, c.version, at, c.e.ID, c.keyID, c.material)
	case opRotate:
		return a.version(w, c, c.version, at, c.e.ID, c.keyID, c.material)
	case opDelete:
		if m == WholeDay {
			a.key = append(a.itemStart(c), tagDeleted)
			a.val = appendTime(append(a.val[:0], recordV1), at)
			return w.Set(a.key, a.val)
		}
		return a.deleteItem(w, c)
	}
	switch d := c.restored.(type) {
	case *domain.KeyRestored:
		if len(d.Versions) == 0 {
			return domain.Corruption("event %s restores %s without versions", c.e.ID, c.ID)
		}
		if err := a.deleteItem(w, c); err != nil {
			return err
		}
		if err := a.row(w, c, at, []byte(d.Description)); err != nil {
			return err
		}
		for _, v := range d.Versions {
			if err := a.version(w, c, v.Version, v.CreatedAt, c.e.ID, nil, v.Material); err != nil {
				return err
			}
		}
	case *domain.SecretRestored:
		if len(d.Versions) == 0 {
			return domain.Corruption("event %s restores %s without versions", c.e.ID, c.ID)
		}
		if err := a.deleteItem(w, c); err != nil {
			return err
		}
		if err := a.row(w, c, at, nil); err != nil {
			return err
		}
		for _, v := range d.Versions {
			if err := a.version(w, c, v.Version, v.CreatedAt, c.e.ID, []byte(v.Key), v.Value); err != nil {
				return err
			}
		}
	}
	return nil
}

// itemStart sets a.key to the start of c's item and returns it.
func (a *Applier) itemStart(c *Change) []byte {
	a.key = append(append(append(a.key[:0], c.Kind), c.ID...), 0)
	return a.key
}

func (a *Applier) deleteItem(w Writer, c *Change) error {
	start := a.itemStart(c)
	n := len(start)
	end := append(start, start...) // the end, after the start, in one buffer
	end[len(end)-1] = 1
	a.key = end
	return w.DeleteRange(end[:n], end[n:])
}

func (a *Applier) row(w Writer, c *Change, at time.Time, desc []byte) error {
	a.key = append(a.itemStart(c), tagRow)
	v := appendTime(append(a.val[:0], recordV1), at)
	v = binary.AppendUvarint(v, uint64(len(desc)))
	a.val = append(v, desc...)
	return w.Set(a.key, a.val)
}

// version writes version n of c's item: a key's (sealed by event by) or a
// secret's (its key keyID).
func (a *Applier) version(w Writer, c *Change, n uint32, at time.Time, by domain.EventID, keyID, material []byte) error {
	if n == 0 {
		return domain.Corruption("event %s adds version 0 to %s", c.e.ID, c.ID)
	}
	a.key = binary.BigEndian.AppendUint32(append(a.itemStart(c), tagVersion), n)
	v := appendTime(append(a.val[:0], recordV1), at)
	if c.Kind == KindKey {
		v = append(v, by[:]...)
	} else {
		v = binary.AppendUvarint(v, uint64(len(keyID)))
		v = append(v, keyID...)
	}
	v = binary.AppendUvarint(v, uint64(len(material)))
	a.val = append(v, material...)
	return w.Set(a.key, a.val)
}

// appendTime appends t as wire.Writer.Time does.
func appendTime(b []byte, t time.Time) []byte {
	w := wire.Writer{B: b}
	w.Time(t)
	return w.B
}
