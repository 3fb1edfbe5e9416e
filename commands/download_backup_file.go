package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// DownloadStart is what a download tells its caller before the first byte
// of the file: the data key, to show once.
type DownloadStart struct {
	Header  domain.FileHeader
	DataKey string // domain.FormatDataKey: shown to the user once, never kept
}

// dayFile is the plan of one day's file: the state it starts from and the
// incrementals after it.
type dayFile struct {
	base         backupdata.Summary
	baseEvents   uint64
	incrementals []backupdata.Summary
}

// DownloadDay writes the data of a viewable day of a backup instance (or an
// upload) to w as a backup data file (docs/backup-file.md) under a fresh
// data key. began receives the key once the file's header is written and
// before any data; the key is not kept anywhere. The file holds the state
// the day starts from (its full backup) and the day's incrementals, key
// material in the clear inside the file's encryption. Memory stays flat
// whatever the size of the day: the starting state is loaded into a
// scratch store (Open) and read item by item, slices a part at a time.
//
// Errors: domain.ErrNotFound for an instance the caller cannot see;
// domain.ErrFailedPrecondition for an expired instance, a day outside the
// viewable window, or a day without data; w's and began's errors.
func (s *DayFiles) DownloadDay(ctx context.Context, c Caller, id domain.BackupID, day string, w io.Writer, began func(DownloadStart) error) (domain.FileHeader, error) {
	const op = "download"
	b, d, err := s.Days.viewableDay(c, op, id, day)
	if err != nil {
		return domain.FileHeader{}, err
	}
	plan, h, err := s.planDayFile(ctx, b, d)
	if err != nil {
		return domain.FileHeader{}, err
	}
	fw, key, err := s.Files.Create(w, h)
	if err != nil {
		return domain.FileHeader{}, fmt.Errorf("%s %s: %w", op, id, err)
	}
	start := DownloadStart{Header: h, DataKey: domain.FormatDataKey(key)}
	key.Wipe()
	if err := began(start); err != nil {
		return domain.FileHeader{}, err
	}
	if err := s.writeDayFile(ctx, b, plan, fw); err != nil {
		return domain.FileHeader{}, fmt.Errorf("%s %s day %s: %w", op, id, d, err)
	}
	if err := fw.Close(); err != nil {
		return domain.FileHeader{}, fmt.Errorf("%s %s day %s: %w", op, id, d, err)
	}
	if s.Audit != nil {
		if err := s.Audit.Record(ctx, c, b.Account, &domain.Audited{Action: "download", Backup: b.ID, Day: d,
			Target: h.FileID}); err != nil {
			return domain.FileHeader{}, err
		}
	}
	return h, nil
}

// planDayFile finds the checkpoints of day d and counts what the file will
// hold, so that the authenticated header can promise it: one scan of the
// item rows (backupdata.CountState) besides the checkpoint records.
func (s *DayFiles) planDayFile(ctx context.Context, b *domain.Backup, d domain.Day) (*dayFile, domain.FileHeader, error) {
	const op = "download"
	ref := b.DataRef()
	lo, hi, ok, err := backupdata.DayRange(s.State, ref, d)
	if err != nil {
		return nil, domain.FileHeader{}, err
	}
	if !ok {
		return nil, domain.FileHeader{}, domain.Errorf(domain.ErrFailedPrecondition, op, string(d), "", "the backup has no data on that day")
	}
	first, err := backupdata.Checkpoint(s.State, ref, lo)
	if err != nil {
		return nil, domain.FileHeader{}, err
	}
	// The day starts from its full backup or, on a day without one, from
	// the state at the checkpoint before its first.
	plan := &dayFile{base: first}
	from := lo + 1
	if !first.Full && lo > 1 {
		if plan.base, err = backupdata.Checkpoint(s.State, ref, lo-1); err != nil {
			return nil, domain.FileHeader{}, err
		}
		from = lo
	}
	// One scan of the item rows counts the base state's versions and the
	// keys and secrets of the day (those a restore from it takes).
	count, err := backupdata.CountState(s.State, ref, plan.base.Seq, lo, hi)
	if err != nil {
		return nil, domain.FileHeader{}, err
	}
	plan.baseEvents = count.Versions
	records := 1 + plan.baseEvents
	for q := from; q <= hi; q++ {
		sum, err := backupdata.Checkpoint(s.State, ref, q)
		if err != nil {
			return nil, domain.FileHeader{}, err
		}
		plan.incrementals = append(plan.incrementals, sum)
		records += 1 + sum.Next - sum.From
	}
	// When the engine was down at the end of the day, the day's last events
	// were recorded by a checkpoint of a later day (the catch-up); the day's
	// lists show them, so the file holds that checkpoint too.
	late, err := s.lateCheckpoints(ctx, b, hi, d)
	if err != nil {
		return nil, domain.FileHeader{}, err
	}
	for _, sum := range late {
		plan.incrementals = append(plan.incrementals, sum)
		records += 1 + sum.Next - sum.From
	}
	in := b.KMSInstance
	if b.Kind == domain.BackupUpload {
		in = b.SourceInstance
	}
	zone := b.TimeZone
	if zone == "" {
		zone = "UTC"
	}
	h := domain.FileHeader{FileID: s.IDs.NewULID().String(), Account: b.Account, Source: b.ID, KMSInstance: in,
		Region: b.Region, Day: d, TimeZone: zone, CreatedAt: s.Clock.Now().UTC(),
		Checkpoints: 1 + uint64(len(plan.incrementals)), Records: records, Keys: count.Keys, Secrets: count.Secrets}
	return plan, h, nil
}

// lateCheckpoints returns the checkpoints after hi whose slices begin with
// events that occurred on day d or before.
func (s *DayFiles) lateCheckpoints(ctx context.Context, b *domain.Backup, hi uint64, d domain.Day) ([]backupdata.Summary, error) {
	ref := b.DataRef()
	loc, err := s.location(b)
	if err != nil {
		return nil, err
	}
	var out []backupdata.Summary
	for q := hi + 1; ; q++ {
		sum, err := backupdata.Checkpoint(s.State, ref, q)
		if errors.Is(err, domain.ErrNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		parts := sum.SliceParts()
		if sum.Next == sum.From || len(parts) == 0 {
			return out, nil
		}
		var first time.Time
		err = eachSliceEvent(ctx, s.Storage.Blobs, ref, parts[:1], func(e *domain.Event) error {
			first = e.OccurredAt
			return errStopSlice
		})
		if err != nil && !errors.Is(err, errStopSlice) {
			return nil, fmt.Errorf("load slice of checkpoint %d: %w", q, err)
		}
		if err == nil || domain.DayOf(first, loc) > d {
			return out, nil
		}
		out = append(out, sum)
	}
}

// writeDayFile writes the payload: the base state as the events that build
// it, then each incremental's slice.
func (s *DayFiles) writeDayFile(ctx context.Context, b *domain.Backup, plan *dayFile, fw FileWriter) error {
	ref := b.DataRef()
	in := b.KMSInstance
	if b.Kind == domain.BackupUpload {
		in = b.SourceInstance
	}
	base := plan.base
	if err := fw.WriteRecord(domain.EncodeFileCheckpoint(&domain.FileCheckpoint{Full: base.Full, At: base.At,
		Day: base.Day, From: 0, Next: base.Next, Events: plan.baseEvents})); err != nil {
		return err
	}
	var buf []byte
	defer func() { domain.Plaintext(buf).Wipe() }()
	rev := uint64(0)
	emit := func(at domain.Event, d domain.EventData) error {
		at.ID, at.Stream, at.Revision, at.Type = s.IDs.NewULID(), domain.KMSStream(in), rev, d.EventType()
		at.Schema, at.Account, at.Region, at.Instance = domain.SchemaVersion, b.Account, b.Region, in
		at.Data = domain.EncodeData(d)
		rev++
		buf = domain.AppendFileEvent(buf[:0], &at)
		domain.Plaintext(at.Data).Wipe()
		return fw.WriteRecord(buf)
	}
	// The state the day starts from: exactly what the base checkpoint
	// holds (the restore point at its instant, its checkpoint the last
	// read), each item with its versions (a scratch store: memory stays
	// flat whatever the state).
	src, err := s.Days.openThrough(ctx, b, RestorePoint{Day: base.Day, At: base.At}, nil, base.Seq)
	if err != nil {
		return err
	}
	defer src.Close()
	err = src.Each(ctx, ItemRef{}, func(it *BackedUpItem) error {
		for _, v := range it.Versions {
			at := domain.Event{OccurredAt: v.CreatedAt}
			if v.Version == 1 {
				at.OccurredAt = it.CreatedAt
			}
			if it.Kind == ItemKindSecret {
				var d domain.EventData = &domain.SecretCreated{Name: it.ID, Key: v.KeyID, Value: v.Value}
				if v.Version > 1 {
					d = &domain.SecretRotated{Name: it.ID, Version: v.Version, Key: v.KeyID, Value: v.Value}
				}
				if err := emit(at, d); err != nil {
					return err
				}
				continue
			}
			pt, err := s.Sealer.Open(ctx, ref, v.Material, BackupAAD(b.Account, ref, v.SealedBy))
			if err != nil {
				return fmt.Errorf("open version %d of key %s: %w", v.Version, it.ID, err)
			}
			var d domain.EventData = &domain.KeyCreated{Key: domain.KeyID(it.ID), Description: it.Description,
				Spec: domain.KeySpecAES256, Material: domain.Sealed(pt)}
			if v.Version > 1 {
				d = &domain.KeyRotated{Key: domain.KeyID(it.ID), Version: v.Version, Material: domain.Sealed(pt)}
			}
			err = emit(at, d)
			pt.Wipe()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if rev != plan.baseEvents {
		return domain.Corruption("backup data %s changed during the download", ref)
	}
	for i := range plan.incrementals {
		if err := s.writeSlice(ctx, b, &plan.incrementals[i], fw, &buf); err != nil {
			return err
		}
	}
	return nil
}

// writeSlice writes one incremental: its checkpoint record and its slice's
// events with key material opened.
func (s *DayFiles) writeSlice(ctx context.Context, b *domain.Backup, sum *backupdata.Summary, fw FileWriter, buf *[]byte) error {
	ref := b.DataRef()
	if err := fw.WriteRecord(domain.EncodeFileCheckpoint(&domain.FileCheckpoint{Full: sum.Full, At: sum.At, Day: sum.Day,
		From: sum.From, Next: sum.Next, Events: sum.Next - sum.From})); err != nil {
		return err
	}
	if sum.Next == sum.From {
		return nil
	}
	// The file's writer counts the records against the header's promise.
	return eachSliceEvent(ctx, s.Storage.Blobs, ref, sum.SliceParts(), func(ev *domain.Event) error {
		e := *ev
		d, err := e.Decode()
		if err != nil {
			return err
		}
		var opened []domain.Plaintext
		for _, m := range domain.KeyMaterials(d) {
			pt, err := s.Sealer.Open(ctx, ref, *m, BackupAAD(b.Account, ref, e.ID))
			if err != nil {
				return fmt.Errorf("open key material of event %s: %w", e.ID, err)
			}
			opened = append(opened, pt)
			*m = domain.Sealed(pt)
		}
		if len(opened) > 0 {
			e.Data = domain.EncodeData(d)
		}
		*buf = domain.AppendFileEvent((*buf)[:0], &e)
		for _, pt := range opened {
			pt.Wipe()
		}
		if len(opened) > 0 {
			domain.Plaintext(e.Data).Wipe()
		}
		return fw.WriteRecord(*buf)
	})
}

// errStopSlice ends a walk over a slice's events early.
var errStopSlice = errors.New("commands: stop reading the slice")
