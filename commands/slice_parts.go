package commands

import (
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Slice parts: how checkpoints store the events they copy (domain's codec
// v2, parts of at most domain.MaxSlicePart bytes) and how their readers
// read them back, part by part.

// slicePartLimit is where slices are cut into parts.
func (s *BackupStorage) slicePartLimit() int {
	if s.SlicePartBytes > 0 {
		return s.SlicePartBytes
	}
	return domain.MaxSlicePart
}

// sliceWriter stores the events of one checkpoint's slice as parts, each
// stored as soon as it is full, so that a slice is never whole in memory.
type sliceWriter struct {
	ctx    context.Context
	blobs  BlobStore
	ref    string
	name   func(part int) string // the blob name of part i
	limit  int
	enc    *domain.SliceEncoder
	parts  []domain.SlicePart
	stored []string // every blob stored, for a caller that gives up
}

// add appends e (an event of the slice's stream, after the previous one),
// storing the current part first when e does not fit in it.
func (w *sliceWriter) add(e *domain.Event) error {
	if w.enc == nil {
		if w.limit == 0 {
			w.limit = domain.MaxSlicePart
		}
		w.enc = domain.NewSliceEncoder(domain.HeaderOf(e), w.limit)
	}
	if !w.enc.Fits(e) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if err := w.enc.Add(e); err != nil {
		return domain.Corruption("slice of %s: %v", w.ref, err)
	}
	return nil
}

// flush stores the current part, if it holds events.
func (w *sliceWriter) flush() error {
	if w.enc == nil || w.enc.Events() == 0 {
		return nil
	}
	data, events, from, next := w.enc.Part()
	p := domain.SlicePart{Name: w.name(len(w.parts)), Digest: sha256.Sum256(data), Events: events, From: from, Next: next}
	if err := w.blobs.PutBlob(w.ctx, w.ref, p.Name, data); err != nil {
		return fmt.Errorf("store slice part %s: %w", p.Name, err)
	}
	w.stored = append(w.stored, p.Name)
	w.parts = append(w.parts, p)
	return nil
}

// finish stores the last part and returns every part.
func (w *sliceWriter) finish() ([]domain.SlicePart, error) {
	if err := w.flush(); err != nil {
		return nil, err
	}
	return w.parts, nil
}

// eachSliceEvent calls fn with every event of a slice's parts, in order.
// Each part is read whole (at most about domain.MaxSlicePart bytes; a
// slice of the first generation is one blob) and checked: its digest, and
// that it holds the events its record claims (when it records them), in
// increasing revisions within [From, Next). e.Data aliases the part: fn copies what it keeps.
// Errors: domain.ErrNotFound for a part that is gone; domain.ErrCorrupt;
// the blob store's; fn's.
func eachSliceEvent(ctx context.Context, blobs BlobStore, ref string, parts []domain.SlicePart, fn func(e *domain.Event) error) error {
	for _, p := range parts {
		blob, err := blobs.GetBlob(ctx, ref, p.Name)
		if err != nil {
			return fmt.Errorf("read slice part %s: %w", p.Name, err)
		}
		if sha256.Sum256(blob) != p.Digest {
			return domain.Corruption("slice part %s of %s does not match its digest", p.Name, ref)
		}
		r, err := domain.NewSliceReader(blob)
		if err != nil {
			return fmt.Errorf("slice part %s of %s: %w", p.Name, ref, err)
		}
		var e domain.Event
		prev, n := uint64(0), uint64(0)
		for {
			ok, err := r.Next(&e)
			if err != nil {
				return fmt.Errorf("slice part %s of %s: %w", p.Name, ref, err)
			}
			if !ok {
				break
			}
			if e.Revision < p.From || e.Revision >= p.Next || (n > 0 && e.Revision <= prev) {
				return domain.Corruption("slice part %s of %s: revision %d outside [%d, %d) or out of order", p.Name, ref, e.Revision, p.From, p.Next)
			}
			prev, n = e.Revision, n+1
			if err := fn(&e); err != nil {
				return err
			}
		}
		if p.Events != 0 && n != p.Events { // 0: a blob of the first generation, whose count is not recorded
			return domain.Corruption("slice part %s of %s holds %d events, its record %d", p.Name, ref, n, p.Events)
		}
	}
	return nil
}
