package dayview

import (
	"bytes"
	"crypto/sha256"
	"hash"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// Cursor walks the records of a state in key order (an iterator of the
// store that holds it).
type Cursor interface {
	// Valid reports whether the cursor is at a record.
	Valid() bool
	// Key is the record's key, valid until the cursor moves.
	Key() []byte
	// Value is the record's value, valid until the cursor moves.
	Value() ([]byte, error)
	// Next moves to the next record and reports whether there is one.
	Next() bool
}

// Item is one key or secret of a state with every version, in version
// order.
type Item struct {
	Kind      byte
	ID        string
	Row       Row
	DeletedAt time.Time // whole-day states: when it was deleted within the day
	Versions  []Version
}

// ItemReader reads the items of a state one at a time. The item it
// returns, and the bytes in it, are valid until its next call; memory is
// that of the largest item. Not safe for concurrent use.
type ItemReader struct {
	c    Cursor
	buf  []byte // the values of the current item's records
	item Item
	cur  []byte // the first key of the item being read
	last []byte // the first key of the last item read
}

// NewItemReader reads items from c, which must be at an item's first
// record (or not Valid).
func NewItemReader(c Cursor) *ItemReader { return &ItemReader{c: c} }

// Next reads the item at the cursor and moves the cursor to the next
// item's first record. ok is false once the cursor is exhausted. Errors:
// domain.ErrCorrupt for a record that does not parse, an item without a
// row, or versions that are not 1, 2, ... in order; the cursor's.
func (r *ItemReader) Next() (it *Item, ok bool, err error) {
	if !r.c.Valid() {
		return nil, false, nil
	}
	r.buf = r.buf[:0]
	r.item = Item{Versions: r.item.Versions[:0]}
	it = &r.item
	start := false
	type span struct{ off, end int }
	var row, deleted span
	var versions []span
	haveRow, haveDeleted := false, false
	for r.c.Valid() {
		k := r.c.Key()
		rec, err := ParseKey(k)
		if err != nil {
			return nil, false, err
		}
		if !start {
			start = true
			r.cur = append(append(append(r.cur[:0], rec.Kind), rec.ID...), 0)
			if r.last != nil && bytes.Compare(r.cur, r.last) <= 0 {
				return nil, false, domain.Corruption("state layout: items out of order")
			}
			it.Kind, it.ID = rec.Kind, string(rec.ID)
		} else if rec.Kind != it.Kind || string(rec.ID) != it.ID {
			break // the next item
		}
		v, err := r.c.Value()
		if err != nil {
			return nil, false, err
		}
		s := span{len(r.buf), len(r.buf) + len(v)}
		r.buf = append(r.buf, v...)
		switch {
		case rec.IsRow():
			row, haveRow = s, true
		case rec.IsDeleted():
			deleted, haveDeleted = s, true
		default:
			if want := uint32(len(versions)) + 1; rec.Version != want {
				return nil, false, domain.Corruption("state layout: %s has version %d where %d was expected", it.ID, rec.Version, want)
			}
			versions = append(versions, s)
		}
		r.c.Next()
	}
	r.last, r.cur = r.cur, r.last
	if !haveRow {
		return nil, false, domain.Corruption("state layout: %s has no row", it.ID)
	}
	if len(versions) == 0 {
		return nil, false, domain.Corruption("state layout: %s has no version", it.ID)
	}
	if it.Row, err = DecodeRow(r.buf[row.off:row.end]); err != nil {
		return nil, false, err
	}
	if haveDeleted {
		if it.DeletedAt, err = decodeDeleted(r.buf[deleted.off:deleted.end]); err != nil {
			return nil, false, err
		}
	}
	for i, s := range versions {
		it.Versions = append(it.Versions, Version{})
		if err := decodeVersion(it.Kind, uint32(i)+1, r.buf[s.off:s.end:s.end], &it.Versions[i]); err != nil {
			return nil, false, err
		}
	}
	return it, true, nil
}

// Digest computes the digest of a state, item by item in key order: a
// SHA-256 over each item's row, deleted-at and versions (every field,
// sealed material included), so that a base and the same state replayed
// from slices digest alike, and any difference shows. The zero value is
// not usable: use NewDigest. Not safe for concurrent use.
type Digest struct {
	h     hash.Hash
	w     wire.Writer
	items uint64
	vers  uint64
}

// NewDigest starts the digest of an empty state.
func NewDigest() *Digest {
	d := &Digest{h: sha256.New()}
	d.h.Write([]byte("kmsbackup state v1\x00"))
	return d
}

// Add adds the next item (in key order).
func (d *Digest) Add(it *Item) {
	d.w.B = d.w.B[:0]
	d.w.B = append(d.w.B, it.Kind)
	d.w.String(it.ID)
	d.w.Time(it.Row.CreatedAt)
	d.w.String(it.Row.Description)
	d.w.Time(it.DeletedAt)
	d.w.Uvarint(uint64(len(it.Versions)))
	for i := range it.Versions {
		v := &it.Versions[i]
		d.w.Uvarint(uint64(v.Version))
		d.w.Time(v.CreatedAt)
		d.w.Fixed(v.SealedBy[:])
		d.w.Bytes(v.Material)
		d.w.String(string(v.KeyID))
		d.w.Bytes(v.Value)
	}
	d.h.Write(d.w.B)
	d.items++
	d.vers += uint64(len(it.Versions))
}

// Sum is the digest of the items added so far, with their counts: a
// SHA-256 over the items' hash and the counts.
func (d *Digest) Sum() (sum [32]byte, items, versions uint64) {
	w := wire.Writer{B: d.h.Sum(nil)}
	w.Uvarint(d.items)
	w.Uvarint(d.vers)
	return sha256.Sum256(w.B), d.items, d.vers
}
