package commands

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// Kinds of verify findings.
const (
	FindingGap           = "gap"            // checkpoints or KMS revisions missing
	FindingOverlap       = "overlap"        // a revision backed up twice
	FindingReorder       = "reorder"        // checkpoints or events out of order
	FindingRollback      = "rollback"       // a checkpoint going back in time or revision
	FindingTamper        = "tamper"         // a checkpoint digest or chain link does not match
	FindingMissingSlice  = "missing-slice"  // a slice blob is gone
	FindingChecksum      = "checksum"       // a slice blob does not match its digest
	FindingUndecryptable = "undecryptable"  // sealed key material does not open
	FindingState         = "state-mismatch" // the read model's state digest disagrees with the data
	FindingBase          = "base-mismatch"  // a base's content is not the state its slices replay to, or not its record
)

// Finding is one problem verify found, at a checkpoint.
type Finding struct {
	Kind   string `json:"kind"`
	Seq    uint64 `json:"seq"`
	Detail string `json:"detail"`
}

// VerifyReport is what verify checked and found.
type VerifyReport struct {
	Backup      domain.BackupID
	Generation  uint32
	Checkpoints int
	Events      int
	Sealed      int // key versions opened
	Findings    []Finding
}

// VerifyBackup checks a backup instance's data without restoring anything:
// the chain of checkpoints (no gap, overlap, reorder or rollback), every
// digest and checksum, that every sealed key version opens under the
// backup's data key, that every base is chained, whole, holds what its
// record says and exactly the state its checkpoint's slices replay to,
// and that the state read model agrees with the data.
// It acts for caller c: another account's instance does not exist, and an
// expired or released one is refused. ScrubBackups runs the same checks for
// the engine itself, over every instance that holds data.
//
// Errors: domain.ErrNotFound, domain.ErrFailedPrecondition (expired or
// released); domain.ErrUnavailable (wrapped) when the log, the blob store or
// the key store cannot be read: then nothing is known, which differs from
// a report with findings. Safe for concurrent use; reads only.
func (s *Checkpoints) VerifyBackup(ctx context.Context, c Caller, id domain.BackupID) (*VerifyReport, error) {
	const op = "verify backup"
	b, err := s.backup(c, op, id)
	if err != nil {
		return nil, err
	}
	if err := b.Usable(op); err != nil {
		return nil, err
	}
	rep, err := s.verify(ctx, b, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, id, err)
	}
	return rep, nil
}

// verify checks the data of b's generation: every checkpoint event of b's
// stream (the log, not the read model, is the truth: an event the read
// model refused is checked too). It takes no lock, so checkpoints of b
// proceed while it runs, and checks no caller: its callers do. th, when
// not nil, paces it by the bytes it reads. It returns an error only when
// the data could not be read (see unreadable); damage is a finding.
func (s *Checkpoints) verify(ctx context.Context, b *domain.Backup, th Throttle) (*VerifyReport, error) {
	v := &verifier{s: s, b: b, th: th, rep: &VerifyReport{Backup: b.ID, Generation: b.Generation}}
	stream := domain.BackupStream(b.ID)
	var prev *domain.BackupCheckpointed
	var prevPos, lastPos uint64 // log positions of prev's event and of the last event read
	var bases []*domain.BackupBaseStored
	fulls := map[uint64][32]byte{} // digests of the full checkpoints, which bases are of
	for from := uint64(0); ; {
		page, err := s.Log.ReadStream(ctx, stream, from, false, slicePage)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", stream, err)
		}
		read := 0
		for _, e := range page {
			from, lastPos = e.Revision+1, e.Position
			read += storedSize(&e)
			if e.Type != domain.TypeBackupCheckpointed && e.Type != domain.TypeBackupBaseStored {
				continue
			}
			d, err := e.Decode()
			if err != nil {
				v.add(FindingTamper, 0, "%s event at revision %d does not decode: %v", e.Type, e.Revision, err)
				continue
			}
			if base, ok := d.(*domain.BackupBaseStored); ok {
				if base.Generation == b.Generation {
					bases = append(bases, base)
				}
				continue
			}
			cp := d.(*domain.BackupCheckpointed)
			if cp.Generation != b.Generation {
				continue
			}
			if cp.Full {
				fulls[cp.Seq] = cp.Digest
			}
			v.rep.Checkpoints++
			v.link(prev, cp)
			if err := v.slice(ctx, cp); err != nil {
				return nil, err
			}
			prev, prevPos = cp, e.Position
		}
		if err := v.pace(ctx, read); err != nil {
			return nil, err
		}
		if len(page) < slicePage {
			break
		}
	}
	if prev != nil && prev.Seq != b.Checkpoints {
		recorded := b.Checkpoints
		if prev.Seq > recorded {
			// Checkpoints appended while this ran are in the chain read but
			// not in b: the read model must show them once it has applied
			// everything read (and maybe more), unless it refused them.
			now, err := s.settled(ctx, b, lastPos)
			if err != nil {
				return nil, err
			}
			recorded = now.Checkpoints
		}
		if prev.Seq < b.Checkpoints || prev.Seq > recorded {
			v.add(FindingGap, prev.Seq, "the chain ends at checkpoint %d, the instance records %d", prev.Seq, recorded)
		}
	}
	if prev != nil {
		if err := v.state(ctx, prev.Seq, prevPos); err != nil {
			return nil, err
		}
	}
	if err := v.bases(ctx, bases, fulls); err != nil {
		return nil, err
	}
	return v.rep, nil
}

// settled returns b as the backupstate read model shows it once it has
// applied log position pos, or b itself when the read model cannot get
// there (it stopped on a corrupt event) or b's generation has been
// destroyed since. Errors: ctx's.
func (s *Checkpoints) settled(ctx context.Context, b *domain.Backup, pos uint64) (*domain.Backup, error) {
	if s.StateApplied == nil {
		return b, nil
	}
	if err := s.StateApplied.WaitFor(ctx, pos); err != nil {
		return b, ctx.Err()
	}
	now, err := backupstate.Get(s.State, b.ID)
	if err != nil || now.Generation != b.Generation {
		return b, nil
	}
	return now, nil
}

// unreadable reports whether err means that the data could not be read
// (a store or the log is unavailable, or the work was cancelled), as
// opposed to data that was read and is damaged.
func unreadable(err error) bool {
	return errors.Is(err, domain.ErrUnavailable) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}

// storedSize approximates the bytes an event takes in the log, for pacing.
func storedSize(e *domain.Event) int { return len(e.Data) + len(e.Stream) + 100 }

// verifier is one verification of a backup generation.
type verifier struct {
	s   *Checkpoints
	b   *domain.Backup
	th  Throttle // nil: no pacing
	rep *VerifyReport
}

func (v *verifier) add(kind string, seq uint64, format string, args ...any) {
	v.rep.Findings = append(v.rep.Findings, Finding{Kind: kind, Seq: seq, Detail: fmt.Sprintf(format, args...)})
}

// pace counts n bytes read against the throttle.
func (v *verifier) pace(ctx context.Context, n int) error {
	if v.th == nil || n <= 0 {
		return nil
	}
	return v.th.WaitN(ctx, n)
}

func (v *verifier) link(prev, cp *domain.BackupCheckpointed) {
	if cp.Digest != domain.CheckpointDigest(v.b.ID, cp) {
		v.add(FindingTamper, cp.Seq, "checkpoint digest does not match its contents")
	}
	if cp.Next < cp.From {
		v.add(FindingRollback, cp.Seq, "covers revisions [%d, %d): backwards", cp.From, cp.Next)
	}
	if prev == nil {
		if cp.Seq != 1 {
			v.add(FindingGap, cp.Seq, "the chain starts at checkpoint %d, not 1", cp.Seq)
		}
		if !cp.Full {
			v.add(FindingTamper, cp.Seq, "the first checkpoint is not a full backup")
		}
		return
	}
	switch {
	case cp.Seq <= prev.Seq:
		v.add(FindingReorder, cp.Seq, "checkpoint %d comes after checkpoint %d", cp.Seq, prev.Seq)
	case cp.Seq > prev.Seq+1:
		v.add(FindingGap, cp.Seq, "checkpoints %d to %d are missing", prev.Seq+1, cp.Seq-1)
	}
	switch {
	case cp.From > prev.Next:
		v.add(FindingGap, cp.Seq, "KMS revisions %d to %d are in no checkpoint", prev.Next, cp.From-1)
	case cp.From < prev.Next:
		v.add(FindingOverlap, cp.Seq, "KMS revisions %d to %d are in two checkpoints", cp.From, prev.Next-1)
	}
	if cp.At.Before(prev.At) {
		v.add(FindingRollback, cp.Seq, "checkpoint time %s is before the previous %s", cp.At, prev.At)
	}
	if cp.PrevDigest != prev.Digest {
		v.add(FindingTamper, cp.Seq, "the chain link to checkpoint %d does not match", prev.Seq)
	}
}

func (v *verifier) slice(ctx context.Context, cp *domain.BackupCheckpointed) error {
	b := v.b
	// An upload's first checkpoint is the state its day started from, kept
	// as the events that build it: in order, but with the revisions of
	// everything else left out (and none at all for an empty state).
	compacted := b.Kind == domain.BackupUpload && cp.Seq == 1
	parts := cp.SliceParts()
	if cp.From == cp.Next || (compacted && len(parts) == 0) || cp.InBase {
		return nil // nothing, or held by its base (checked by bases)
	}
	if len(parts) == 0 {
		v.add(FindingMissingSlice, cp.Seq, "revisions [%d, %d) have no slice", cp.From, cp.Next)
		return nil
	}
	want := cp.From
	for i, p := range parts {
		switch {
		case compacted:
		case p.From != want:
			v.add(FindingGap, cp.Seq, "slice part %d starts at revision %d, where %d was due", i, p.From, want)
		case p.Events != 0 && p.Events != p.Next-p.From:
			v.add(FindingGap, cp.Seq, "slice part %d holds %d events for revisions [%d, %d)", i, p.Events, p.From, p.Next)
		}
		var err error
		if want, err = v.slicePart(ctx, cp, p, want, compacted); err != nil {
			return err
		}
	}
	if want != cp.Next && !compacted {
		v.add(FindingGap, cp.Seq, "slice ends at revision %d, the checkpoint claims %d", want, cp.Next)
	}
	return nil
}

// slicePart checks one part of cp's slice, whose first revision is due to
// be want, and returns the revision due after it.
func (v *verifier) slicePart(ctx context.Context, cp *domain.BackupCheckpointed, p domain.SlicePart, want uint64, compacted bool) (uint64, error) {
	b := v.b
	blob, err := v.s.Storage.Blobs.GetBlob(ctx, b.DataRef(), p.Name)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		v.add(FindingMissingSlice, cp.Seq, "slice part %s is missing", p.Name)
		return p.Next, nil
	case unreadable(err):
		return 0, fmt.Errorf("read slice part %s: %w", p.Name, err)
	case err != nil:
		v.add(FindingChecksum, cp.Seq, "slice part %s cannot be read: %v", p.Name, err)
		return p.Next, nil
	}
	if err := v.pace(ctx, len(blob)); err != nil {
		return 0, err
	}
	if sha256.Sum256(blob) != p.Digest {
		v.add(FindingChecksum, cp.Seq, "slice part %s does not match its digest", p.Name)
		return p.Next, nil
	}
	events, err := domain.DecodeSliceAll(blob)
	if err != nil {
		v.add(FindingChecksum, cp.Seq, "slice part %s does not decode: %v", p.Name, err)
		return p.Next, nil
	}
	if p.Events != 0 && uint64(len(events)) != p.Events {
		v.add(FindingGap, cp.Seq, "slice part %s holds %d events, its record %d", p.Name, len(events), p.Events)
	}
	for _, e := range events {
		v.rep.Events++
		switch {
		case compacted && e.Revision >= cp.Next:
			v.add(FindingGap, cp.Seq, "slice holds revision %d, beyond the checkpoint's %d", e.Revision, cp.Next)
		case e.Revision > want && !compacted:
			v.add(FindingGap, cp.Seq, "slice skips revisions %d to %d", want, e.Revision-1)
		case e.Revision < want:
			v.add(FindingReorder, cp.Seq, "slice repeats or reorders revision %d", e.Revision)
		}
		want = e.Revision + 1
		if err := v.opens(ctx, cp.Seq, &e); err != nil {
			return 0, err
		}
	}
	return want, nil
}

// opens checks that the key material an event holds opens under the
// backup's data key.
func (v *verifier) opens(ctx context.Context, seq uint64, e *domain.Event) error {
	b := v.b
	d, err := e.Decode()
	if err != nil {
		v.add(FindingChecksum, seq, "event %s does not decode: %v", e.ID, err)
		return nil
	}
	for _, m := range domain.KeyMaterials(d) {
		pt, err := v.s.Sealer.Open(ctx, b.DataRef(), *m, BackupAAD(b.Account, b.DataRef(), e.ID))
		switch {
		case unreadable(err):
			return fmt.Errorf("open key material of event %s: %w", e.ID, err)
		case err != nil:
			v.add(FindingUndecryptable, seq, "key material of event %s does not open: %v", e.ID, err)
			continue
		}
		pt.Wipe()
		v.rep.Sealed++
	}
	return nil
}

// state checks the read model's state digest at the last checkpoint (seq,
// appended at log position pos) against the items it holds. The backupdata
// projector follows the log on its own, behind the backupstate one that b
// came from: a checkpoint it has not applied yet is waited for, not
// reported.
func (v *verifier) state(ctx context.Context, seq, pos uint64) error {
	s, ref := v.s, v.b.DataRef()
	sum, err := backupdata.Checkpoint(s.State, ref, seq)
	if errors.Is(err, domain.ErrNotFound) && s.DataApplied != nil {
		if werr := s.DataApplied.WaitFor(ctx, pos); werr == nil {
			sum, err = backupdata.Checkpoint(s.State, ref, seq)
		} else if ctx.Err() != nil {
			return werr
		}
	}
	if err != nil {
		if unreadable(err) {
			return fmt.Errorf("read the state at checkpoint %d: %w", seq, err)
		}
		v.add(FindingState, seq, "the read model has no checkpoint %d: %v", seq, err)
		return nil
	}
	var digest backupdata.StateSum
	items, read := 0, 0
	err = backupdata.StateAt(s.State, ref, seq, func(it backupdata.Item) error {
		digest.Add(&it)
		items++
		read += len(it.ID) + len(it.Description) + len(it.KeyID) + 48
		return nil
	})
	if err != nil {
		if unreadable(err) {
			return fmt.Errorf("read the state at checkpoint %d: %w", seq, err)
		}
		v.add(FindingState, seq, "cannot read the state: %v", err)
		return nil
	}
	// Paced after the scan, so that no read of the store stays open while
	// the throttle waits.
	if err := v.pace(ctx, read); err != nil {
		return err
	}
	if digest.Digest() != sum.StateDigest {
		v.add(FindingState, seq, "state digest does not match the %d items backed up", items)
	}
	return nil
}
