package backupdata

import (
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// All queries take the dataRef of a generation (domain.DataRef). A ref with
// no data (unknown, or destroyed by a reset) reads as empty. None of them
// checks viewability or the account: the use cases do. The Reader's errors
// and domain.ErrCorrupt for malformed records are returned as they are.

// List returns one page of a day's tab, in item ID order (for the deleted
// tab, a key and a secret with the same ID are never split across pages),
// size items at a time; cursor is the Next of the previous page ("" for
// the first). Full tabs list the state at the day's first full backup, or,
// if the day has none, at its last checkpoint; a day without a checkpoint
// has an empty page. The other tabs list the changes made during the day.
// Items never carry key material or values.
//
// Errors: domain.ErrInvalidArgument for an unknown tab or a size below 1.
func List(r projections.Reader, ref string, day domain.Day, tab Tab, cursor string, size int) (projections.Page[Item], error) {
	if _, err := ParseTab(string(tab)); err != nil {
		return projections.Page[Item]{}, err
	}
	if size < 1 {
		return projections.Page[Item]{}, domain.Invalid("list day data", "page size %d must be at least 1", size)
	}
	if tab == FullKeys || tab == FullSecrets {
		kind := kindKey
		if tab == FullSecrets {
			kind = kindSecret
		}
		info, ok, err := dayInfo(r, ref, day)
		if err != nil {
			return projections.Page[Item]{}, err
		}
		if !ok {
			return projections.Page[Item]{Items: []Item{}}, nil
		}
		seq := info.FullSeq
		if seq == 0 {
			seq = info.LastSeq
		}
		return listState(r, ref, seq, kind, cursor, size)
	}
	return listDay(r, ref, day, tab, cursor, size)
}

func listState(r projections.Reader, ref string, seq uint64, kind byte, cursor string, size int) (projections.Page[Item], error) {
	page := projections.Page[Item]{Items: []Item{}}
	p := rowKindPrefix(ref, kind)
	var start []byte
	if cursor != "" {
		start = after(p, cursor)
	}
	err := r.Scan(p, start, func(k, v []byte) (bool, error) {
		x, kind, id, ok, err := liveRow(k[len(p)-1:], v, seq)
		if err != nil || !ok {
			return err == nil, err
		}
		if len(page.Items) == size {
			page.Next = page.Items[size-1].ID
			return false, nil
		}
		page.Items = append(page.Items, x.item(kind, id))
		return true, nil
	})
	if err != nil {
		return projections.Page[Item]{}, err
	}
	return page, nil
}

func listDay(r projections.Reader, ref string, day domain.Day, tab Tab, cursor string, size int) (projections.Page[Item], error) {
	page := projections.Page[Item]{Items: []Item{}}
	p := dayTabPrefix(ref, day, tab)
	var start []byte
	if cursor != "" {
		start = after(p, cursor)
	}
	err := r.Scan(p, start, func(k, v []byte) (bool, error) {
		kind, id, ok := parseDayKey(k[len(p):])
		if !ok {
			return false, domain.Corruption("backup data %s: bad day index key", ref)
		}
		if n := len(page.Items); n >= size && page.Items[n-1].ID != id {
			page.Next = page.Items[n-1].ID
			return false, nil
		}
		x, err := decodeRow(v)
		if err != nil {
			return false, err
		}
		page.Items = append(page.Items, x.item(kind, id))
		return true, nil
	})
	if err != nil {
		return projections.Page[Item]{}, err
	}
	return page, nil
}

// liveRow decodes the row of key rest (after rowsPrefix) if it is live at
// seq.
func liveRow(rest, v []byte, seq uint64) (*row, byte, string, bool, error) {
	kind, id, from, ok := parseRowKey(rest)
	if !ok {
		return nil, 0, "", false, domain.Corruption("backup data: bad item key")
	}
	if from > seq {
		return nil, 0, "", false, nil
	}
	to, err := rowTo(v)
	if err != nil || to <= seq {
		return nil, 0, "", false, err
	}
	x, err := decodeRow(v)
	if err != nil {
		return nil, 0, "", false, err
	}
	return x, kind, id, true, nil
}

func dayInfo(r projections.Reader, ref string, day domain.Day) (DayInfo, bool, error) {
	v, ok, err := r.Get(dayRecordKey(ref, day))
	if err != nil || !ok {
		return DayInfo{}, false, err
	}
	d, err := decodeDay(day, v)
	return d, err == nil, err
}

// Days lists the days that have checkpoints, in order.
func Days(r projections.Reader, ref string) ([]DayInfo, error) {
	var out []DayInfo
	p := daysPrefix(ref)
	err := r.Scan(p, nil, func(k, v []byte) (bool, error) {
		d, err := decodeDay(domain.Day(k[len(p):]), v)
		if err != nil {
			return false, err
		}
		out = append(out, d)
		return true, nil
	})
	return out, err
}

// StateAt calls fn with every item live at checkpoint seq, keys first,
// each kind in ID order, until fn returns an error, which StateAt returns.
// It reads one row per item incarnation and change of the generation.
func StateAt(r projections.Reader, ref string, seq uint64, fn func(Item) error) error {
	p := rowsPrefix(ref)
	return r.Scan(p, nil, func(k, v []byte) (bool, error) {
		x, kind, id, ok, err := liveRow(k[len(p):], v, seq)
		if err != nil || !ok {
			return err == nil, err
		}
		if err := fn(x.item(kind, id)); err != nil {
			return false, err
		}
		return true, nil
	})
}

// Checkpoint returns the summary of checkpoint seq. Errors:
// domain.ErrNotFound.
func Checkpoint(r projections.Reader, ref string, seq uint64) (Summary, error) {
	v, ok, err := r.Get(checkpointKey(ref, seq))
	if err != nil {
		return Summary{}, err
	}
	if !ok {
		return Summary{}, domain.NotFound("get checkpoint", "checkpoint", ref+"#"+strconv.FormatUint(seq, 10))
	}
	return decodeSummary(v)
}

// LastSeq returns the sequence number of the generation's last checkpoint,
// 0 if it has none (or is not the backup's current generation). Errors:
// domain.ErrInvalidArgument for a malformed ref.
func LastSeq(r projections.Reader, ref string) (uint64, error) {
	i := strings.LastIndexByte(ref, '/')
	gen, err := strconv.ParseUint(ref[i+1:], 10, 32)
	if i <= 0 || err != nil {
		return 0, domain.Invalid("read backup data", "data reference %q must be <backup ID>/<generation>", ref)
	}
	m, ok, err := loadMeta(r, domain.BackupID(ref[:i]))
	if err != nil || !ok || m.Generation != uint32(gen) {
		return 0, err
	}
	return m.LastSeq, nil
}

// Diff compares the state at the last checkpoint of day from with the
// state at the last checkpoint of day to (for a day without a checkpoint,
// the last checkpoint before it; before the first, the empty state). An
// item that appears is created, one that disappears deleted (Item is its
// state at from), one of the same incarnation with more versions rotated;
// a key or secret deleted and created again is deleted then created. The
// changes are ordered by kind (keys first), then ID. Errors:
// domain.ErrInvalidArgument when from is after to.
func Diff(r projections.Reader, ref string, from, to domain.Day) ([]Change, error) {
	if from > to {
		return nil, domain.Invalid("compare days", "day %s is after day %s", from, to)
	}
	s1, err := seqAtEndOf(r, ref, from)
	if err != nil {
		return nil, err
	}
	s2, err := seqAtEndOf(r, ref, to)
	if err != nil {
		return nil, err
	}
	var out []Change
	var a, b *Item
	var kind byte
	id, started := "", false
	emit := func() {
		switch {
		case a == nil && b == nil:
		case a == nil:
			out = append(out, Change{Item: *b, What: ChangeCreated})
		case b == nil:
			out = append(out, Change{Item: *a, What: ChangeDeleted})
		case a.CreateSeq != b.CreateSeq:
			out = append(out, Change{Item: *a, What: ChangeDeleted}, Change{Item: *b, What: ChangeCreated})
		case a.Versions != b.Versions:
			out = append(out, Change{Item: *b, What: ChangeRotated})
		}
		a, b = nil, nil
	}
	p := rowsPrefix(ref)
	err = r.Scan(p, nil, func(k, v []byte) (bool, error) {
		kd, itemID, from, ok := parseRowKey(k[len(p):])
		if !ok {
			return false, domain.Corruption("backup data %s: bad item key", ref)
		}
		if !started || kd != kind || itemID != id {
			emit()
			kind, id, started = kd, itemID, true
		}
		if from > s2 {
			return true, nil
		}
		x, err := decodeRow(v)
		if err != nil {
			return false, err
		}
		if from <= s1 && s1 < x.To {
			it := x.item(kd, itemID)
			a = &it
		}
		if s2 < x.To {
			it := x.item(kd, itemID)
			b = &it
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	emit()
	return out, nil
}

// seqAtEndOf is the last checkpoint of day, or of the last day before it
// that has one; 0 when there is none.
func seqAtEndOf(r projections.Reader, ref string, day domain.Day) (uint64, error) {
	info, ok, err := dayInfo(r, ref, day)
	if err != nil || ok {
		return info.LastSeq, err
	}
	var seq uint64
	p := daysPrefix(ref)
	err = r.Scan(p, nil, func(k, v []byte) (bool, error) {
		if domain.Day(k[len(p):]) > day {
			return false, nil
		}
		d, err := decodeDay(day, v)
		seq = d.LastSeq
		return err == nil, err
	})
	return seq, err
}

// Within calls fn, in (kind, ID) order, for every item that existed at some
// checkpoint in [lo, hi], as it last stood there: an item deleted within the
// range comes as it was just before its deletion, with all its versions.
// This is what a restore "from day d" takes, with lo and hi the day's first
// and last checkpoints.
func Within(r projections.Reader, ref string, lo, hi uint64, fn func(Item) error) error {
	p := rowsPrefix(ref)
	var last *Item
	var lastKind byte
	flush := func() error {
		if last == nil {
			return nil
		}
		it := *last
		last = nil
		return fn(it)
	}
	err := r.Scan(p, nil, func(k, v []byte) (bool, error) {
		kind, id, from, ok := parseRowKey(k[len(p):])
		if !ok {
			return false, domain.Corruption("backup data: bad item key")
		}
		if last != nil && (kind != lastKind || id != last.ID) {
			if err := flush(); err != nil {
				return false, err
			}
		}
		if from > hi {
			return true, nil
		}
		to, err := rowTo(v)
		if err != nil {
			return false, err
		}
		if to <= lo {
			return true, nil
		}
		x, err := decodeRow(v)
		if err != nil {
			return false, err
		}
		it := x.item(kind, id)
		last, lastKind = &it, kind
		return true, nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// DayRange is the range of checkpoints of a day's data: its first full
// (or first checkpoint) to its last. ok is false when the day has none.
func DayRange(r projections.Reader, ref string, day domain.Day) (lo, hi uint64, ok bool, err error) {
	info, ok, err := dayInfo(r, ref, day)
	if err != nil || !ok {
		return 0, 0, false, err
	}
	lo = info.FullSeq
	if lo == 0 {
		// No full that day: from the checkpoint after the previous day's last.
		lo = info.LastSeq
		days, err := Days(r, ref)
		if err != nil {
			return 0, 0, false, err
		}
		for _, d := range days {
			if d.Day < day {
				lo = d.LastSeq + 1
			}
		}
	}
	return lo, info.LastSeq, true, nil
}

// StateCount is what CountState counts.
type StateCount struct {
	// Versions is the sum of the versions of the items live at seq.
	Versions uint64
	// Keys and Secrets are the items Within(lo, hi) gives, by kind.
	Keys, Secrets uint64
}

// CountState counts, in one scan of the generation's item rows, the
// versions of the items live at checkpoint seq and the keys and secrets
// that Within(lo, hi) would give, without decoding more of a row than its
// range and its number of versions.
func CountState(r projections.Reader, ref string, seq, lo, hi uint64) (StateCount, error) {
	var c StateCount
	p := rowsPrefix(ref)
	var lastKind byte
	var lastID []byte // the item last counted for Within
	err := r.Scan(p, nil, func(k, v []byte) (bool, error) {
		rest := k[len(p):]
		n := len(rest)
		if n < 1+1+1+8 || rest[n-9] != 0 {
			return false, domain.Corruption("backup data: bad item key")
		}
		kind, id, from := rest[0], rest[1:n-9], binary.BigEndian.Uint64(rest[n-8:])
		if from > seq && from > hi {
			return true, nil
		}
		to, versions, err := rowRange(v)
		if err != nil {
			return false, err
		}
		if from <= seq && seq < to {
			c.Versions += uint64(versions)
		}
		if from <= hi && to > lo && (lastID == nil || kind != lastKind || string(id) != string(lastID)) {
			lastKind, lastID = kind, append(lastID[:0], id...)
			if kind == kindKey {
				c.Keys++
			} else {
				c.Secrets++
			}
		}
		return true, nil
	})
	if err != nil {
		return StateCount{}, err
	}
	return c, nil
}

// rowRange reads only the toSeq and the number of versions of an encoded
// row.
func rowRange(b []byte) (to uint64, versions uint32, err error) {
	r, err := reader(b, "item")
	if err != nil {
		return 0, 0, err
	}
	to, versions = r.Uint64(), r.Uint32()
	if r.Err() != nil {
		return 0, 0, domain.Corruption("backup data item record: %v", r.Err())
	}
	return to, versions, nil
}

// Bases lists the bases of a generation, oldest first.
func Bases(r projections.Reader, ref string) ([]BaseInfo, error) {
	var out []BaseInfo
	err := r.Scan(basesPrefix(ref), nil, func(_, v []byte) (bool, error) {
		b, err := decodeBase(v)
		if err != nil {
			return false, err
		}
		out = append(out, b)
		return true, nil
	})
	return out, err
}
