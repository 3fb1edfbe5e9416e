package commands

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
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
// backup's data key, and that the state read model agrees with the data.
func (s *Backups) VerifyBackup(ctx context.Context, c Caller, id domain.BackupID) (*VerifyReport, error) {
	const op = "verify backup"
	b, err := s.backup(c, op, id)
	if err != nil {
		return nil, err
	}
	if err := b.Usable(op); err != nil {
		return nil, err
	}
	rep := &VerifyReport{Backup: id, Generation: b.Generation}
	add := func(kind string, seq uint64, format string, args ...any) {
		rep.Findings = append(rep.Findings, Finding{Kind: kind, Seq: seq, Detail: fmt.Sprintf(format, args...)})
	}
	var prev *domain.BackupCheckpointed
	for from := uint64(0); ; {
		page, err := s.Log.ReadStream(ctx, domain.BackupStream(id), from, false, slicePage)
		if err != nil {
			return nil, fmt.Errorf("%s: read %s: %w", op, domain.BackupStream(id), err)
		}
		for _, e := range page {
			from = e.Revision + 1
			if e.Type != domain.TypeBackupCheckpointed {
				continue
			}
			d, err := e.Decode()
			if err != nil {
				add(FindingTamper, 0, "checkpoint event at revision %d does not decode: %v", e.Revision, err)
				continue
			}
			cp := d.(*domain.BackupCheckpointed)
			if cp.Generation != b.Generation {
				continue
			}
			rep.Checkpoints++
			s.verifyLink(prev, cp, id, add)
			s.verifySlice(ctx, b, cp, rep, add)
			prev = cp
		}
		if len(page) < slicePage {
			break
		}
	}
	if prev != nil && prev.Seq != b.Checkpoints {
		add(FindingGap, prev.Seq, "the chain ends at checkpoint %d, the instance records %d", prev.Seq, b.Checkpoints)
	}
	if prev != nil {
		s.verifyState(b, prev.Seq, add)
	}
	return rep, nil
}

func (s *Backups) verifyLink(prev, cp *domain.BackupCheckpointed, id domain.BackupID, add func(string, uint64, string, ...any)) {
	if cp.Digest != domain.CheckpointDigest(id, cp) {
		add(FindingTamper, cp.Seq, "checkpoint digest does not match its contents")
	}
	if cp.Next < cp.From {
		add(FindingRollback, cp.Seq, "covers revisions [%d, %d): backwards", cp.From, cp.Next)
	}
	if prev == nil {
		if cp.Seq != 1 {
			add(FindingGap, cp.Seq, "the chain starts at checkpoint %d, not 1", cp.Seq)
		}
		if !cp.Full {
			add(FindingTamper, cp.Seq, "the first checkpoint is not a full backup")
		}
		return
	}
	switch {
	case cp.Seq <= prev.Seq:
		add(FindingReorder, cp.Seq, "checkpoint %d comes after checkpoint %d", cp.Seq, prev.Seq)
	case cp.Seq > prev.Seq+1:
		add(FindingGap, cp.Seq, "checkpoints %d to %d are missing", prev.Seq+1, cp.Seq-1)
	}
	switch {
	case cp.From > prev.Next:
		add(FindingGap, cp.Seq, "KMS revisions %d to %d are in no checkpoint", prev.Next, cp.From-1)
	case cp.From < prev.Next:
		add(FindingOverlap, cp.Seq, "KMS revisions %d to %d are in two checkpoints", cp.From, prev.Next-1)
	}
	if cp.At.Before(prev.At) {
		add(FindingRollback, cp.Seq, "checkpoint time %s is before the previous %s", cp.At, prev.At)
	}
	if cp.PrevDigest != prev.Digest {
		add(FindingTamper, cp.Seq, "the chain link to checkpoint %d does not match", prev.Seq)
	}
}

func (s *Backups) verifySlice(ctx context.Context, b *domain.Backup, cp *domain.BackupCheckpointed, rep *VerifyReport, add func(string, uint64, string, ...any)) {
	// An upload's first checkpoint is the state its day started from, kept
	// as the events that build it: in order, but with the revisions of
	// everything else left out (and none at all for an empty state).
	compacted := b.Kind == domain.BackupUpload && cp.Seq == 1
	if cp.From == cp.Next || (compacted && cp.Slice == "") {
		return
	}
	if cp.Slice == "" {
		add(FindingMissingSlice, cp.Seq, "revisions [%d, %d) have no slice", cp.From, cp.Next)
		return
	}
	blob, err := s.Blobs.GetBlob(ctx, b.DataRef(), cp.Slice)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		add(FindingMissingSlice, cp.Seq, "slice %s is missing", cp.Slice)
		return
	case err != nil:
		add(FindingChecksum, cp.Seq, "slice %s cannot be read: %v", cp.Slice, err)
		return
	}
	if sha256.Sum256(blob) != cp.SliceDigest {
		add(FindingChecksum, cp.Seq, "slice %s does not match its digest", cp.Slice)
		return
	}
	events, err := domain.DecodeSlice(blob)
	if err != nil {
		add(FindingChecksum, cp.Seq, "slice %s does not decode: %v", cp.Slice, err)
		return
	}
	want := cp.From
	for _, e := range events {
		rep.Events++
		switch {
		case compacted && e.Revision >= cp.Next:
			add(FindingGap, cp.Seq, "slice holds revision %d, beyond the checkpoint's %d", e.Revision, cp.Next)
		case e.Revision > want && !compacted:
			add(FindingGap, cp.Seq, "slice skips revisions %d to %d", want, e.Revision-1)
		case e.Revision < want:
			add(FindingReorder, cp.Seq, "slice repeats or reorders revision %d", e.Revision)
		}
		want = e.Revision + 1
		d, err := e.Decode()
		if err != nil {
			add(FindingChecksum, cp.Seq, "event %s does not decode: %v", e.ID, err)
			continue
		}
		for _, m := range domain.KeyMaterials(d) {
			pt, err := s.Sealer.Open(ctx, b.DataRef(), *m, BackupAAD(b.Account, b.DataRef(), e.ID))
			if err != nil {
				add(FindingUndecryptable, cp.Seq, "key material of event %s does not open: %v", e.ID, err)
				continue
			}
			pt.Wipe()
			rep.Sealed++
		}
	}
	if want != cp.Next && !compacted {
		add(FindingGap, cp.Seq, "slice ends at revision %d, the checkpoint claims %d", want, cp.Next)
	}
}

func (s *Backups) verifyState(b *domain.Backup, last uint64, add func(string, uint64, string, ...any)) {
	sum, err := backupdata.Checkpoint(s.State, b.DataRef(), last)
	if err != nil {
		add(FindingState, last, "the read model has no checkpoint %d: %v", last, err)
		return
	}
	var items []backupdata.Item
	if err := backupdata.StateAt(s.State, b.DataRef(), last, func(it backupdata.Item) error {
		items = append(items, it)
		return nil
	}); err != nil {
		add(FindingState, last, "cannot read the state: %v", err)
		return
	}
	if backupdata.StateDigest(items) != sum.StateDigest {
		add(FindingState, last, "state digest does not match the %d items backed up", len(items))
	}
}
