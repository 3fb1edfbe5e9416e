package commands

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// UploadBackupFile brings a downloaded backup data file back as an upload:
// a backup instance of kind upload holding the file's day, listed beside
// the others and restorable like them. open returns the file from its
// start; it is called twice. The first pass checks the whole file (every
// chunk authentic, every record sound, every count the header's, the
// caller's account) before anything is stored; the second stores its data
// resealed under the upload's own data key, then records the upload with
// one atomic append. A failure at any point leaves nothing behind.
//
// Errors: domain.ErrInvalidArgument for a bad name or a string that is not
// a data key; domain.BadBackupFile for every file that cannot be used
// (wrong key, any damage, truncation, another account's file), all alike;
// open's and the stores' errors.
func (s *Backups) UploadBackupFile(ctx context.Context, c Caller, name, dataKey string, open func() (io.Reader, error)) (*domain.Backup, error) {
	const op = "upload"
	if err := requireAccount(c, op); err != nil {
		return nil, err
	}
	name, err := domain.CleanAlias("upload name", name)
	if err != nil {
		return nil, err
	}
	key, err := domain.ParseDataKey(dataKey)
	if err != nil {
		return nil, err
	}
	defer key.Wipe()

	h, err := s.readUpload(c, key, open, nil)
	if err != nil {
		return nil, err
	}
	id := domain.NewBackupID(s.IDs.NewULID())
	ref := domain.DataRef(id, 0)
	if err := s.DataKeys.CreateDataKey(ctx, ref); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	b, committed, err := s.storeUpload(ctx, c, id, ref, name, key, h, open)
	if err != nil && !committed {
		// Nothing of a failed upload stays: its blobs and data key go.
		if derr := s.destroyData(context.WithoutCancel(ctx), ref); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if err := s.audit(ctx, c, b, "upload"); err != nil {
		return nil, err
	}
	return b, nil
}

// uploadSink receives the events of each segment of a checked file.
type uploadSink struct {
	begin func(cp *domain.FileCheckpoint) error
	event func(e *domain.Event) error
	end   func() error
}

// readUpload reads a whole file, checking it; sink (if not nil) receives
// its content as it is checked. Every problem with the file is
// BadBackupFile.
func (s *Backups) readUpload(c Caller, key domain.Plaintext, open func() (io.Reader, error), sink *uploadSink) (domain.FileHeader, error) {
	r, err := open()
	if err != nil {
		return domain.FileHeader{}, err
	}
	fr, err := s.Files.Open(r, key)
	if err != nil {
		return domain.FileHeader{}, err
	}
	h := fr.Header()
	loc, err := s.zone(h.TimeZone)
	if err != nil {
		return domain.FileHeader{}, domain.BadBackupFile()
	}
	chk, err := domain.NewFileCheck(h, c.Account, loc)
	if err != nil {
		return domain.FileHeader{}, err
	}
	open1 := false
	for {
		rec, err := fr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return domain.FileHeader{}, err
		}
		cp, e, err := domain.DecodeFileRecord(rec)
		if err != nil {
			return domain.FileHeader{}, err
		}
		if cp != nil {
			if err := chk.Checkpoint(cp); err != nil {
				return domain.FileHeader{}, err
			}
			if sink != nil {
				if open1 {
					if err := sink.end(); err != nil {
						return domain.FileHeader{}, err
					}
				}
				if err := sink.begin(cp); err != nil {
					return domain.FileHeader{}, err
				}
			}
			open1 = true
			continue
		}
		err = chk.Event(e)
		if err == nil && sink != nil {
			err = sink.event(e)
		}
		domain.Plaintext(e.Data).Wipe()
		if err != nil {
			return domain.FileHeader{}, err
		}
	}
	if err := chk.Done(); err != nil {
		return domain.FileHeader{}, err
	}
	if sink != nil && open1 {
		if err := sink.end(); err != nil {
			return domain.FileHeader{}, err
		}
	}
	return h, nil
}

// storeUpload reads the file again, storing each segment's events as a
// blob resealed under ref, then appends the upload and its checkpoints.
func (s *Backups) storeUpload(ctx context.Context, c Caller, id domain.BackupID, ref, name string, key domain.Plaintext,
	h0 domain.FileHeader, open func() (io.Reader, error)) (b *domain.Backup, committed bool, err error) {
	const op = "upload"
	var segs []domain.UploadSegment
	var cur *domain.FileCheckpoint
	// Each event goes into its segment's slice as it arrives, resealed, and
	// the slice is stored in parts as they fill (domain.MaxSlicePart), so
	// that a segment is never whole in memory.
	var slice *sliceWriter
	sink := &uploadSink{
		begin: func(cp *domain.FileCheckpoint) error {
			seq, run := len(segs)+1, s.IDs.NewULID()
			cur = cp
			slice = &sliceWriter{ctx: ctx, blobs: s.Blobs, ref: ref, limit: s.slicePartLimit(), name: func(i int) string {
				return fmt.Sprintf("slice-%d-%s-%d", seq, run, i)
			}}
			return nil
		},
		event: func(e *domain.Event) error {
			d, err := e.Decode()
			if err != nil {
				return domain.BadBackupFile()
			}
			for _, m := range domain.KeyMaterials(d) {
				sealed, err := s.Sealer.Seal(ctx, ref, domain.Plaintext(*m), BackupAAD(c.Account, ref, e.ID))
				domain.Plaintext(*m).Wipe()
				if err != nil {
					return fmt.Errorf("%s: seal key material: %w", op, err)
				}
				*m = sealed
			}
			cp := *e
			cp.Data = domain.EncodeData(d)
			if err := slice.add(&cp); err != nil {
				return fmt.Errorf("%s: store data: %w", op, err)
			}
			return nil
		},
		end: func() error {
			parts, err := slice.finish()
			if err != nil {
				return fmt.Errorf("%s: store data: %w", op, err)
			}
			if len(parts) > 0 && (cur.Next == cur.From || parts[0].From < cur.From || parts[len(parts)-1].Next > cur.Next) {
				return domain.BadBackupFile()
			}
			// A segment's first part starts at the segment's first revision,
			// its last ends at its Next; an upload's first segment keeps only
			// the events that build its state, so its parts cover less.
			if len(parts) > 0 {
				parts[0].From, parts[len(parts)-1].Next = cur.From, cur.Next
			}
			segs = append(segs, domain.UploadSegment{Full: cur.Full, At: cur.At, From: cur.From, Next: cur.Next, Parts: parts})
			slice = nil // stored: let it go before the next segment
			return nil
		},
	}
	h, err := s.readUpload(c, key, open, sink)
	if err != nil {
		return nil, false, err
	}
	if h.FileID != h0.FileID || h.Records != h0.Records {
		return nil, false, domain.BadBackupFile() // the file changed between the passes
	}
	loc, err := s.zone(h.TimeZone)
	if err != nil {
		return nil, false, domain.BadBackupFile()
	}
	ds, err := domain.NewUpload(id, name, h, segs, loc)
	if err != nil {
		return nil, false, err
	}
	stub := &domain.Backup{ID: id, Account: c.Account, Region: h.Region}
	now := s.Clock.Now()
	batch := make([]domain.Event, len(ds))
	for i, d := range ds {
		batch[i] = s.newEvent(stub, now, d)
	}
	res, err := s.Log.Append(ctx, domain.BackupStream(id), domain.ExpectNoStream, batch)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", op, err)
	}
	if err := s.StateApplied.WaitFor(ctx, res.LastPosition); err != nil {
		return nil, true, err
	}
	if err := s.DataApplied.WaitFor(ctx, res.LastPosition); err != nil {
		return nil, true, err
	}
	b, err = backupstate.Get(s.State, id)
	return b, true, err
}
