package backupdata

import (
	"encoding/binary"
	"errors"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// A large checkpoint (a slice of more than largeCheckpoint events) is
// applied in parts so that its memory stays bounded whatever the slice:
// its items are split by a hash of their kind and ID into parts of about
// partItems each, and for each part the slice is walked again, the part's
// items worked out and their rows, live index entries and day index
// entries written as sorted runs (Data.Load) ahead of the transaction,
// which commits the checkpoint's summary, day record and meta (with the
// counts and digest) as for any checkpoint.
//
// What a part loads is written blindly and nothing reads it before the
// transaction commits, except the apply of this checkpoint again after a
// crash: its new rows start at the checkpoint (a state at an earlier one
// ignores them), the rows it closes stay live over the earlier ones, the
// live index serves the apply alone. The day index may show the
// checkpoint's changes a moment before its summary; they are in the log
// already. The first part's load also writes a marker (partialKey); an
// apply that finds it reads each item's state before the checkpoint from
// its rows instead of the live index, which the earlier attempt may have
// moved on. The transaction deletes the marker.
const (
	largeCheckpoint = 8192
	partItems       = 8192
)

// ErrOwnTransaction is returned for a large checkpoint applied in a
// transaction that has written already (a burst of events): what it loads
// would be overwritten by those writes when they commit. Apply the event
// again in a transaction of its own.
var ErrOwnTransaction = errors.New("backupdata: a large checkpoint needs a transaction of its own")

// The runs of a large checkpoint's part.
const (
	partRows = iota
	partLive
	partDays
	partMarker
)

// loadable reports whether checkpoint d is applied in parts.
func loadable(txn projections.Txn, d *domain.BackupCheckpointed, data Data) (bool, error) {
	if data.Load == nil || data.Slice == nil || d.Next-d.From <= largeCheckpoint {
		return false, nil
	}
	u, ok := txn.(projections.Unwritten)
	if !ok {
		return false, nil
	}
	if !u.Unwritten() {
		return false, ErrOwnTransaction
	}
	return true, nil
}

// partialKey marks a large checkpoint whose parts are being loaded.
func partialKey(ref string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(base(ref), 'p'), seq)
}

// applyLarge applies checkpoint d in parts (see largeCheckpoint) and
// returns with its items written; applyCheckpoint's caller writes the rest.
func applyLarge(txn projections.Txn, ref string, m *meta, d *domain.BackupCheckpointed, data Data) error {
	loc, err := location(m.TimeZone)
	if err != nil {
		return err
	}
	_, partial, err := txn.Get(partialKey(ref, d.Seq))
	if err != nil {
		return err
	}
	events := d.Next - d.From
	parts := (events + partItems - 1) / partItems
	if parts > 1<<16-1 {
		return domain.Corruption("backup data %s: checkpoint %d has a slice of %d events", ref, d.Seq, events)
	}
	// owner[i] is the part of the item event From+i changes, once the
	// first walk has decoded it (noPart: it changes none), so that the
	// later walks skip the other parts' events without decoding them.
	owner := make([]uint16, events)
	for p := range uint16(parts) {
		c := &checkpoint{txn: txn, ref: ref, seq: d.Seq, baseline: d.Seq == 1, loc: loc,
			items: map[string]*work{}, entries: map[string]*entry{}, fromRows: partial}
		var prev uint64
		n := 0
		err := data.Slice(func(e *domain.Event) error {
			if e.Revision < d.From || e.Revision >= d.Next || (n > 0 && e.Revision <= prev) {
				return domain.Corruption("slice event %s has revision %d, outside [%d, %d) or out of order", e.ID, e.Revision, d.From, d.Next)
			}
			prev, n = e.Revision, n+1
			i := e.Revision - d.From
			if p == 0 {
				kind, id, ok, err := changedItem(e)
				if err != nil {
					return err
				}
				owner[i] = noPart
				if ok {
					owner[i] = uint16(itemHash(kind, id) % parts)
				}
			}
			if owner[i] != p {
				return nil
			}
			return c.event(e)
		})
		if err != nil {
			return err
		}
		err = data.Load(func(add projections.AddSorted) error {
			if p == 0 && !partial {
				if err := add(partMarker, partialKey(ref, d.Seq), []byte{}); err != nil {
					return err
				}
			}
			return c.load(m, add)
		})
		if err != nil {
			return err
		}
	}
	return txn.Delete(partialKey(ref, d.Seq))
}

// noPart is the owner of a slice event that changes no item.
const noPart = 1<<16 - 1

// itemHash is FNV-1a of an item's kind and ID.
func itemHash(kind byte, id string) uint64 {
	h := uint64(14695981039346656037)
	h = (h ^ uint64(kind)) * 1099511628211
	for i := 0; i < len(id); i++ {
		h = (h ^ uint64(id[i])) * 1099511628211
	}
	return h
}

// load writes what the part changed as sorted runs (write's order).
func (c *checkpoint) load(m *meta, add projections.AddSorted) error {
	return c.write(m, changeWriter{
		row:  func(k, v []byte) error { return add(partRows, k, v) },
		live: func(k, v []byte) error { return add(partLive, k, v) },
		day:  func(k, v []byte) error { return add(partDays, k, v) },
	})
}

// rowBefore reads an item's row live at the checkpoint before c's from
// the item's rows (those of c's own checkpoint, which an interrupted apply
// may have written, are after it): its fromSeq and the row, still open;
// nil when the item did not exist then.
func (c *checkpoint) rowBefore(kind byte, id string) (uint64, *row, error) {
	prefix := append(append(rowKindPrefix(c.ref, kind), id...), 0)
	var from uint64
	var last []byte
	err := c.txn.Scan(prefix, nil, func(k, v []byte) (bool, error) {
		if len(k) != len(prefix)+8 {
			return false, domain.Corruption("backup data %s: bad row key of %s %s", c.ref, kindName(kind), id)
		}
		f := binary.BigEndian.Uint64(k[len(prefix):])
		if f >= c.seq {
			return false, nil
		}
		from, last = f, append(last[:0], v...)
		return true, nil
	})
	if err != nil || last == nil {
		return 0, nil, err
	}
	x, err := decodeRow(last)
	if err != nil {
		return 0, nil, err
	}
	if x.To < c.seq { // closed before this checkpoint: the item was deleted
		return 0, nil, nil
	}
	x.To = open
	return from, x, nil
}
