package backupdata

import (
	"errors"
	"slices"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// ItemVersions is an item with its versions.
type ItemVersions struct {
	Item     Item
	Versions []Version
}

// WithinPage reads one page of Within(lo, hi): at most size items that
// sort after (afterKind, afterID) (afterKind "": from the first), each with
// the first Versions versions of its incarnation (fewer if fewer are
// stored: the caller decides whether that is corruption). more is false
// once no item remains after the page's last. It makes two forward scans
// (the page's rows, then its versions from the first item's), and no scan
// is open when it returns, so the caller may do anything with the page;
// memory is the page's. Like Within, a page reads no single snapshot.
func WithinPage(r projections.Reader, ref string, lo, hi uint64, afterKind, afterID string, size int) (page []ItemVersions, more bool, err error) {
	var start []byte
	if afterKind != "" {
		start = after(rowKindPrefix(ref, kindByte(afterKind)), afterID)
	}
	var items []Item
	err = scanWithin(r, ref, lo, hi, start, func(it Item) (bool, error) {
		if len(items) == size {
			more = true
			return false, nil
		}
		items = append(items, it)
		return true, nil
	})
	if err != nil {
		return nil, false, err
	}
	page = make([]ItemVersions, 0, len(items))
	_, err = versionsOfBatch(r, ref, items, nil, func(it Item, vs []Version) error {
		page = append(page, ItemVersions{Item: it, Versions: slices.Clone(vs)})
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return page, more, nil
}

// CountWithin counts the keys and secrets Within(lo, hi) gives and their
// versions (each item's Versions), in one scan of the rows that decodes
// only what it counts.
func CountWithin(r projections.Reader, ref string, lo, hi uint64) (keys, secrets, versions uint64, err error) {
	p := rowsPrefix(ref)
	var lastKind byte
	var lastID string
	var lastVersions uint32
	counted := false
	flush := func() {
		if !counted {
			return
		}
		if lastKind == kindKey {
			keys++
		} else {
			secrets++
		}
		versions += uint64(lastVersions)
		counted = false
	}
	err = r.Scan(p, nil, func(k, v []byte) (bool, error) {
		kind, id, from, ok := parseRowKey(k[len(p):])
		if !ok {
			return false, domain.Corruption("backup data %s: bad item key", ref)
		}
		if counted && (kind != lastKind || id != lastID) {
			flush()
		}
		if from > hi {
			return true, nil
		}
		to, n, err := rowRange(v)
		if err != nil || to <= lo {
			return err == nil, err
		}
		lastKind, lastID, lastVersions, counted = kind, id, n, true
		return true, nil
	})
	flush()
	return keys, secrets, versions, err
}

// WithinItem reads one item of Within(lo, hi) with its versions, as
// WithinPage gives it; ok is false when Within does not give it. kind is
// KindKey or KindSecret.
func WithinItem(r projections.Reader, ref string, lo, hi uint64, kind, id string) (it ItemVersions, ok bool, err error) {
	kb := kindByte(kind)
	if kb == 0 {
		return ItemVersions{}, false, domain.Invalid("read backup data", "kind %q must be %s or %s", kind, KindKey, KindSecret)
	}
	p := append(append(rowKindPrefix(ref, kb), id...), 0)
	var last *Item
	err = r.Scan(p, nil, func(k, v []byte) (bool, error) {
		_, _, from, ok := parseRowKey(k[len(rowsPrefix(ref)):])
		if !ok {
			return false, domain.Corruption("backup data %s: bad item key", ref)
		}
		it, err := withinRow(kb, id, from, v, lo, hi)
		if it != nil {
			last = it
		}
		return err == nil && from <= hi, err
	})
	if err != nil || last == nil {
		return ItemVersions{}, false, err
	}
	vs, err := Versions(r, ref, kind, id, last.CreateSeq)
	if errors.Is(err, domain.ErrNotFound) {
		err = nil
	}
	if err != nil {
		return ItemVersions{}, false, err
	}
	return ItemVersions{Item: *last, Versions: vs[:min(len(vs), int(last.Versions))]}, true, nil
}

// withinRow decodes the row (of an item of kind and ID, from checkpoint
// from, encoded as v) when the item is live at some checkpoint of [lo,
// hi]; nil when it is not.
func withinRow(kind byte, id string, from uint64, v []byte, lo, hi uint64) (*Item, error) {
	if from > hi {
		return nil, nil
	}
	to, err := rowTo(v)
	if err != nil || to <= lo {
		return nil, err
	}
	x, err := decodeRow(v)
	if err != nil {
		return nil, err
	}
	it := x.item(kind, id)
	return &it, nil
}
