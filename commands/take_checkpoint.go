package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
	"github.com/kmsbackup/kmsbackup/projections/dayview"
)

// slicePage is how many KMS events a checkpoint reads at a time.
const slicePage = 1000

// TakeCheckpoint takes the checkpoint due of a backup instance: it copies
// the KMS instance's events that occurred up to due.At and are not backed up
// yet into a new blob (key material resealed under the backup's data key),
// and appends the checkpoint event that chains it. It returns the
// checkpoint, or domain.ErrWrongExpectedRevision when another engine took a
// checkpoint first (the caller re-plans). A checkpoint that fails deletes
// the blobs it stored, unless its append may have been written (see
// appendRefused).
func (s *Checkpoints) TakeCheckpoint(ctx context.Context, id domain.BackupID, due domain.Due) (*domain.BackupCheckpointed, error) {
	const op = "take backup"
	defer s.lock(id)()
	b, err := backupstate.Get(s.State, id)
	if err != nil {
		return nil, err
	}
	if b.Taken(due) {
		// Planned from an older view: another engine took it meanwhile.
		return nil, domain.Errorf(domain.ErrWrongExpectedRevision, op, string(id), "",
			"the checkpoint due %s was taken already", due.At.Format(time.RFC3339))
	}
	return s.checkpoint(ctx, b, due)
}

// checkpoint takes b's checkpoint due; the caller holds b's lock and loaded
// b under it. An unscheduled checkpoint (the last one before a released KMS
// instance's data key is destroyed) may share the instant of the previous
// one, to cover what was appended since.
func (s *Checkpoints) checkpoint(ctx context.Context, b *domain.Backup, due domain.Due) (*domain.BackupCheckpointed, error) {
	const op = "take backup"
	id := b.ID
	loc, err := s.location(b)
	if err != nil {
		return nil, err
	}
	if b.Checkpoints == 0 && !b.SourceReleased.Recorded() && s.Storage.Scratch != nil {
		return s.firstCheckpoint(ctx, b, due, loc)
	}
	// Once its KMS instance is released nothing more is copied: the
	// checkpoint holds no event and never opens that instance's key.
	var parts []domain.SlicePart
	next := b.NextRevision
	if !b.SourceReleased.Recorded() {
		if parts, next, err = s.copySlice(ctx, b, due); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, id, err)
		}
	}
	drop := func() {
		names := make([]string, len(parts))
		for i, p := range parts {
			names[i] = p.Name
		}
		s.Storage.deleteBlobs(ctx, b.DataRef(), names)
	}
	c, err := b.Checkpoint(due, loc, next, parts, false)
	if err != nil {
		drop()
		return nil, err
	}
	pos, err := s.appendEvents(ctx, b, false, s.newEvent(b, due.At, c))
	if err != nil {
		if appendRefused(err) { // else it may be recorded: its parts stay (see appendRefused)
			drop()
		}
		return nil, err
	}
	if err := s.waitApplied(ctx, pos); err != nil {
		return nil, err
	}
	return c, nil
}

// firstCheckpoint takes the first checkpoint of a generation: the history
// of the KMS instance from before enabling is not viewable, so instead of
// a slice of its events it is written as base 0, the state those events
// leave: they are read page by page, resealed and replayed into a scratch
// store (memory stays that of the scratch and one page, whatever the
// instance's size), whose content is stored as base parts. The checkpoint
// (held by its base) and the base are appended together.
func (s *Checkpoints) firstCheckpoint(ctx context.Context, b *domain.Backup, due domain.Due, loc *time.Location) (*domain.BackupCheckpointed, error) {
	const op = "take backup"
	sc, err := s.Storage.Scratch.OpenScratch(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, b.ID, err)
	}
	defer sc.Close()
	var apply dayview.Applier
	next, err := s.copyEvents(ctx, b, due, func(e *domain.Event) error {
		c, ok, err := dayview.ChangeOf(e)
		if err != nil || !ok {
			return err
		}
		return apply.Apply(sc, dayview.Instant, &c)
	})
	if err == nil {
		err = sc.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, b.ID, err)
	}
	c, err := b.Checkpoint(due, loc, next, nil, true)
	if err != nil {
		return nil, err
	}
	parts, digest, err := s.Storage.writeBase(ctx, b.DataRef(), c.Seq, sc, s.Storage.basePartLimit())
	if err != nil {
		return nil, fmt.Errorf("%s %s: write base 0: %w", op, b.ID, err)
	}
	after := *b
	cpEvent := s.newEvent(b, due.At, c)
	after.Apply(domain.Event{Revision: b.Revision + 1, OccurredAt: cpEvent.OccurredAt}, c)
	base, err := after.StoreBase(c, parts, digest)
	if err != nil {
		s.Storage.deleteParts(ctx, b.DataRef(), parts)
		return nil, err
	}
	pos, err := s.appendEvents(ctx, b, false, cpEvent, s.newEvent(b, due.At, base))
	if err != nil {
		if appendRefused(err) { // else it may be recorded: its parts stay (see appendRefused)
			s.Storage.deleteParts(ctx, b.DataRef(), parts)
		}
		return nil, err
	}
	if err := s.waitApplied(ctx, pos); err != nil {
		return nil, err
	}
	return c, nil
}

// copyEvents reads the KMS stream from the first revision not backed up,
// up to the last event that occurred at or before due.At, page by page,
// reseals each event's key material for the backup and hands it to fn. It
// returns the first revision left for the next checkpoint.
func (s *Checkpoints) copyEvents(ctx context.Context, b *domain.Backup, due domain.Due, fn func(e *domain.Event) error) (uint64, error) {
	stream := domain.KMSStream(b.KMSInstance)
	next := b.NextRevision
	for {
		page, err := s.Log.ReadStream(ctx, stream, next, false, slicePage)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", stream, err)
		}
		for _, e := range page {
			if e.OccurredAt.After(due.At) {
				return next, nil
			}
			cp, err := s.reseal(ctx, b, e)
			if err != nil {
				return 0, err
			}
			if err := fn(&cp); err != nil {
				return 0, err
			}
			next = e.Revision + 1
		}
		if len(page) < slicePage {
			return next, nil
		}
	}
}

// copySlice reads the KMS stream from the first revision not backed up, up
// to the last event that occurred at or before due.At, reseals each
// event's key material for the backup and stores the copies as slice
// parts as they fill (one page of events and one part in memory). It
// returns the parts and the first revision left for the next checkpoint.
func (s *Checkpoints) copySlice(ctx context.Context, b *domain.Backup, due domain.Due) ([]domain.SlicePart, uint64, error) {
	seq, run := b.Checkpoints+1, s.IDs.NewULID()
	w := &sliceWriter{ctx: ctx, blobs: s.Storage.Blobs, ref: b.DataRef(), limit: s.Storage.slicePartLimit(), name: func(i int) string {
		if i == 0 {
			return fmt.Sprintf("slice-%d-%s", seq, run)
		}
		return fmt.Sprintf("slice-%d-%s-%d", seq, run, i)
	}}
	next, err := s.copyEvents(ctx, b, due, w.add)
	var parts []domain.SlicePart
	if err == nil {
		parts, err = w.finish()
	}
	if err != nil {
		s.Storage.deleteBlobs(ctx, b.DataRef(), w.stored)
		return nil, 0, err
	}
	return parts, next, nil
}

// reseal copies one KMS event for the backup: key material sealed under the
// KMS instance's data key is opened and sealed again under the backup
// generation's data key, bound to the backup's data ref and the event ID.
func (s *Checkpoints) reseal(ctx context.Context, b *domain.Backup, e domain.Event) (domain.Event, error) {
	d, err := e.Decode()
	if err != nil {
		return domain.Event{}, err
	}
	materials := domain.KeyMaterials(d)
	if len(materials) == 0 {
		return e, nil
	}
	for _, m := range materials {
		pt, err := s.Sealer.Open(ctx, string(e.Instance), *m, domain.AssociatedData(e.Account, e.Stream, e.ID))
		if err != nil {
			err = fmt.Errorf("open key material of event %s: %w", e.ID, err)
			if errors.Is(err, domain.ErrNotFound) {
				err = sourceKeyGone{err}
			}
			return domain.Event{}, err
		}
		sealed, err := s.Sealer.Seal(ctx, b.DataRef(), pt, BackupAAD(b.Account, b.DataRef(), e.ID))
		pt.Wipe()
		if err != nil {
			return domain.Event{}, fmt.Errorf("reseal key material of event %s: %w", e.ID, err)
		}
		*m = sealed
	}
	e.Data = domain.EncodeData(d)
	return e, nil
}

// sourceKeyGone marks a copy that failed because the KMS instance's data
// key is destroyed: what it sealed and was not backed up is lost for good.
type sourceKeyGone struct{ error }

func (e sourceKeyGone) Unwrap() error { return e.error }

// BackupAAD is the associated data of key material in a backup's copy.
func BackupAAD(a domain.AccountID, dataRef string, id domain.EventID) []byte {
	return AppendBackupAAD(nil, a, dataRef, id)
}

// AppendBackupAAD appends BackupAAD(a, dataRef, id) to dst (a buffer that
// the opening of many versions reuses).
func AppendBackupAAD(dst []byte, a domain.AccountID, dataRef string, id domain.EventID) []byte {
	return domain.AppendAssociatedData(dst, a, "backup:", dataRef, id)
}
