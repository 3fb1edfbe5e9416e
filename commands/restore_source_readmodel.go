package commands

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// ReadModelSources opens restore sources over the backupdata read model, as
// restores read backups before the day loader (docs/restore-engine.md): a
// whole day is the items of the day's checkpoints, each as it last stood
// there; an instant is the state at the last checkpoint of its day at or
// before it. It is temporary: the loader replaces it, and this file goes.
//
// Reading follows the generation's history kept (every item row and version
// of the generation is scanned), not the point's size alone; memory is one
// page of items.
type ReadModelSources struct {
	State projections.Reader // the backupdata read model
}

var _ RestoreSources = (*ReadModelSources)(nil)

// readModelPage is how many items a source reads at a time.
const readModelPage = 256

// Open finds the checkpoints of the point. Errors: domain.ErrFailedPrecondition
// when the day has no checkpoint, or none at or before the instant; the
// read model's errors.
func (s *ReadModelSources) Open(ctx context.Context, b *domain.Backup, point RestorePoint, only []ItemRef) (RestoreSource, error) {
	const op = "plan restore"
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ref := b.DataRef()
	lo, hi, ok, err := backupdata.DayRange(s.State, ref, point.Day)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, domain.Errorf(domain.ErrFailedPrecondition, op, string(point.Day), "", "the backup has no checkpoint on that day")
	}
	if !point.At.IsZero() {
		seq := uint64(0)
		for q := lo; q <= hi; q++ {
			sum, err := backupdata.Checkpoint(s.State, ref, q)
			if err != nil {
				return nil, err
			}
			if sum.At.After(point.At) {
				break
			}
			seq = q
		}
		if seq == 0 {
			at := point.At.UTC().Format(time.RFC3339)
			return nil, domain.Errorf(domain.ErrFailedPrecondition, op, at, "choose a later time of that day", "no checkpoint of %s is at or before %s", point.Day, at)
		}
		lo, hi = seq, seq
	}
	sum, err := backupdata.Checkpoint(s.State, ref, hi)
	if err != nil {
		return nil, err
	}
	src := &readModelSource{r: s.State, ref: ref, lo: lo, hi: hi, point: RestorePoint{Day: point.Day, At: sum.At}}
	if only == nil {
		src.keys, src.secrets, src.versions, err = backupdata.CountWithin(s.State, ref, lo, hi)
		return src, err
	}
	src.only = slices.Clone(only)
	slices.SortFunc(src.only, compareRefs)
	src.only = slices.Compact(src.only)
	for _, r := range src.only {
		it, ok, err := src.Lookup(ctx, r)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if it.Kind == domain.RestoreKey {
			src.keys++
		} else {
			src.secrets++
		}
		src.versions += uint64(len(it.Versions))
	}
	return src, nil
}

// compareRefs orders items as sources give them: keys first, then
// secrets, each by ID.
func compareRefs(a, b ItemRef) int {
	if a.Kind != b.Kind {
		if a.Kind == domain.RestoreKey {
			return -1
		}
		return 1
	}
	return strings.Compare(a.ID, b.ID)
}

type readModelSource struct {
	r                       projections.Reader
	ref                     string
	lo, hi                  uint64
	point                   RestorePoint
	only                    []ItemRef // sorted; nil: every item
	keys, secrets, versions uint64
	item                    BackedUpItem // the item handed to Each's fn, reused
}

// Checkpoints are the first and last checkpoints the items come from.
func (s *readModelSource) Checkpoints() (from, to uint64) { return s.lo, s.hi }

func (s *readModelSource) Point() RestorePoint { return s.point }

func (s *readModelSource) Counts() (keys, secrets, versions uint64) {
	return s.keys, s.secrets, s.versions
}

func (s *readModelSource) Each(ctx context.Context, after ItemRef, fn func(*BackedUpItem) error) error {
	if s.only != nil {
		for _, r := range s.only {
			if after.Kind != "" && compareRefs(r, after) <= 0 {
				continue
			}
			it, ok, err := s.Lookup(ctx, r)
			if err != nil || !ok {
				if err != nil {
					return err
				}
				continue
			}
			if err := fn(it); err != nil {
				return stopped(err)
			}
		}
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, more, err := backupdata.WithinPage(s.r, s.ref, s.lo, s.hi, after.Kind, after.ID, readModelPage)
		if err != nil {
			return err
		}
		for i := range page {
			if err := s.fill(&s.item, &page[i]); err != nil {
				return err
			}
			if err := fn(&s.item); err != nil {
				return stopped(err)
			}
		}
		if !more || len(page) == 0 {
			return nil
		}
		last := page[len(page)-1].Item
		after = ItemRef{Kind: last.Kind, ID: last.ID}
	}
}

// stopped is Each's answer to fn's error: nil for ErrStop.
func stopped(err error) error {
	if errors.Is(err, ErrStop) {
		return nil
	}
	return err
}

func (s *readModelSource) Lookup(ctx context.Context, ref ItemRef) (*BackedUpItem, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if s.only != nil {
		if _, ok := slices.BinarySearchFunc(s.only, ref, compareRefs); !ok {
			return nil, false, nil
		}
	}
	iv, ok, err := backupdata.WithinItem(s.r, s.ref, s.lo, s.hi, ref.Kind, ref.ID)
	if err != nil || !ok {
		return nil, false, err
	}
	it := &BackedUpItem{}
	return it, true, s.fill(it, &iv)
}

// fill makes it the item iv, with every version its row counts.
func (s *readModelSource) fill(it *BackedUpItem, iv *backupdata.ItemVersions) error {
	x := &iv.Item
	if uint32(len(iv.Versions)) != x.Versions {
		return domain.Corruption("backup data %s: %s %s has %d versions stored, its record says %d", s.ref, x.Kind, x.ID, len(iv.Versions), x.Versions)
	}
	*it = BackedUpItem{Kind: x.Kind, ID: x.ID, Description: x.Description, CreatedAt: x.CreatedAt, Versions: it.Versions[:0]}
	for _, v := range iv.Versions {
		it.Versions = append(it.Versions, BackedUpVersion{Version: v.Version, CreatedAt: v.CreatedAt, Material: v.Material,
			SealedBy: v.SealedBy, KeyID: v.KeyID, Value: v.Value})
	}
	return nil
}

func (s *readModelSource) Close() error { return nil }
