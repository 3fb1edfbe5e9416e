package dayview

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// The state layout: one key per record, items in (kind, ID) order, each
// item's records together, its row before its versions:
//
//	<kind 'k'|'s'> <key ID or secret name> 0x00 'd'                 deleted-at (whole-day states only)
//	<kind> <item> 0x00 'r'                                          the item's row
//	<kind> <item> 0x00 'v' <version, 4 bytes big-endian>            one version
//
// No key ID or secret name contains 0x00 (the domain checks names), so the
// records of one item are exactly the keys between ItemStart and ItemEnd,
// which no other item's keys fall between. A base's tables hold exactly
// this layout; a replayed state is written in it too, so the two read, and
// digest, alike.
const (
	KindKey    byte = 'k'
	KindSecret byte = 's'

	tagDeleted byte = 'd'
	tagRow     byte = 'r'
	tagVersion byte = 'v'
)

// recordV1 is the first byte of every value, so the layout can evolve.
const recordV1 = 1

// ItemStart is the first key of an item's records.
func ItemStart(kind byte, id string) []byte {
	b := make([]byte, 0, len(id)+8)
	b = append(b, kind)
	b = append(b, id...)
	return append(b, 0)
}

// ItemEnd is the first key after every record of an item.
func ItemEnd(kind byte, id string) []byte {
	b := ItemStart(kind, id)
	b[len(b)-1] = 1
	return b
}

// RowKey is the key of an item's row.
func RowKey(kind byte, id string) []byte { return append(ItemStart(kind, id), tagRow) }

// DeletedKey is the key of an item's deleted-at record.
func DeletedKey(kind byte, id string) []byte { return append(ItemStart(kind, id), tagDeleted) }

// VersionKey is the key of version v of an item.
func VersionKey(kind byte, id string, v uint32) []byte {
	return binary.BigEndian.AppendUint32(append(ItemStart(kind, id), tagVersion), v)
}

// KindEnd is the first key after every item of kind.
func KindEnd(kind byte) []byte { return []byte{kind + 1} }

// Record is one key of the layout, parsed.
type Record struct {
	Kind    byte
	ID      []byte // aliases the key
	Tag     byte   // 'd', 'r' or 'v'
	Version uint32 // of a version record
}

// IsRow, IsVersion and IsDeleted tell what a record is.
func (r Record) IsRow() bool     { return r.Tag == tagRow }
func (r Record) IsVersion() bool { return r.Tag == tagVersion }
func (r Record) IsDeleted() bool { return r.Tag == tagDeleted }

// ParseKey parses a key of the layout. Errors: domain.ErrCorrupt for a key
// that is not one.
func ParseKey(k []byte) (Record, error) {
	bad := func() (Record, error) {
		return Record{}, domain.Corruption("state layout: bad key of %d bytes", len(k))
	}
	if len(k) < 4 || (k[0] != KindKey && k[0] != KindSecret) {
		return bad()
	}
	end := bytes.IndexByte(k[1:], 0) + 1 // the item's terminator
	if end < 2 || end+1 >= len(k) {
		return bad()
	}
	r := Record{Kind: k[0], ID: k[1:end], Tag: k[end+1]}
	switch rest := len(k) - end - 2; {
	case r.Tag == tagVersion && rest == 4:
		r.Version = binary.BigEndian.Uint32(k[end+2:])
	case (r.Tag == tagRow || r.Tag == tagDeleted) && rest == 0:
	default:
		return bad()
	}
	return r, nil
}

// Row is an item's row: when this incarnation was created and, for a key,
// its description.
type Row struct {
	CreatedAt   time.Time
	Description string
}

func encodeRow(r *Row) []byte {
	w := wire.Writer{B: make([]byte, 0, 16+len(r.Description))}
	w.Uvarint(recordV1)
	w.Time(r.CreatedAt)
	w.String(r.Description)
	return w.B
}

// DecodeRow decodes a row. Errors: domain.ErrCorrupt.
func DecodeRow(b []byte) (Row, error) {
	r := wire.Reader{B: b}
	if v := r.Uvarint(); v != recordV1 {
		return Row{}, domain.Corruption("state layout: row of unknown version %d", v)
	}
	out := Row{CreatedAt: r.Time(), Description: r.String()}
	if err := r.Done(); err != nil {
		return Row{}, domain.Corruption("state layout: row: %v", err)
	}
	return out, nil
}

// Version is one version record: for a key, its material sealed under the
// backup generation's data key, bound to SealedBy (the event that sealed
// it); for a secret, the key it is encrypted under and its KMS ciphertext.
type Version struct {
	Version   uint32
	CreatedAt time.Time
	Material  domain.Sealed
	SealedBy  domain.EventID
	KeyID     domain.KeyID
	Value     []byte
}

func encodeVersion(kind byte, v *Version) []byte {
	w := wire.Writer{B: make([]byte, 0, 40+len(v.Material)+len(v.KeyID)+len(v.Value))}
	w.Uvarint(recordV1)
	w.Time(v.CreatedAt)
	if kind == KindKey {
		w.Fixed(v.SealedBy[:])
		w.Bytes(v.Material)
	} else {
		w.String(string(v.KeyID))
		w.Bytes(v.Value)
	}
	return w.B
}

// decodeVersion decodes version n of an item of kind into v, its byte
// fields aliasing b. Errors: domain.ErrCorrupt.
func decodeVersion(kind byte, n uint32, b []byte, v *Version) error {
	r := wire.Reader{B: b}
	if ver := r.Uvarint(); ver != recordV1 {
		return domain.Corruption("state layout: version of unknown version %d", ver)
	}
	*v = Version{Version: n, CreatedAt: r.Time()}
	if kind == KindKey {
		r.Fixed(v.SealedBy[:])
		v.Material = domain.Sealed(aliasBytes(&r))
	} else {
		v.KeyID = domain.KeyID(r.String())
		v.Value = aliasBytes(&r)
	}
	if err := r.Done(); err != nil {
		return domain.Corruption("state layout: version %d: %v", n, err)
	}
	return nil
}

// aliasBytes reads a length-prefixed byte string without copying it.
func aliasBytes(r *wire.Reader) []byte {
	n := r.Uvarint()
	if r.Err() != nil || n > uint64(len(r.B)) {
		r.Fixed(make([]byte, len(r.B)+1)) // fail the reader
		return nil
	}
	out := r.B[:n:n]
	r.B = r.B[n:]
	return out
}

func encodeDeleted(at time.Time) []byte {
	w := wire.Writer{B: make([]byte, 0, 12)}
	w.Uvarint(recordV1)
	w.Time(at)
	return w.B
}

func decodeDeleted(b []byte) (time.Time, error) {
	r := wire.Reader{B: b}
	if v := r.Uvarint(); v != recordV1 {
		return time.Time{}, domain.Corruption("state layout: deleted-at of unknown version %d", v)
	}
	at := r.Time()
	if err := r.Done(); err != nil {
		return time.Time{}, domain.Corruption("state layout: deleted-at: %v", err)
	}
	return at, nil
}
