package domain

import (
	"crypto/sha256"
	"time"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// Due is the next piece of scheduled work of a backup instance.
type Due struct {
	At   time.Time
	Full bool
}

// lastCheckpointAt is the instant the last checkpoint covered.
func (b *Backup) lastCheckpointAt() time.Time {
	if b.LastIncremental.After(b.LastFullAt) {
		return b.LastIncremental
	}
	return b.LastFullAt
}

// Taken reports whether a checkpoint due at due.At was already taken: the
// chain already covers that instant (another engine got there first).
func (b *Backup) Taken(due Due) bool {
	return b.Checkpoints > 0 && !due.At.After(b.lastCheckpointAt())
}

// NextCheckpoint is when the next checkpoint is due, and whether it is a
// full backup: the first full at once on enable; then a full at 00:00 of
// every day in the instance's time zone; and, after each full, an
// incremental every 5 minutes. Once its KMS instance is released (see
// MarkSourceReleased) nothing can change any more: only the daily full
// remains, so that the last state stays viewable and restorable day after
// day. After a renewal ended an expiry, whatever fell due before it is one
// catch-up checkpoint at the renewal (see CatchUp), never a back-fill. ok
// is false when the instance takes no backups (not enabled, expired or
// released), and when the next checkpoint would fall at or after the
// expiry: the instance expires instead.
func (b *Backup) NextCheckpoint(loc *time.Location) (Due, bool) {
	due, ok := b.nextCheckpoint(loc)
	if !ok || b.ExpiredBy(due.At) {
		return Due{}, false
	}
	return due, true
}

func (b *Backup) nextCheckpoint(loc *time.Location) (Due, bool) {
	if b.State != StateEnabled {
		return Due{}, false
	}
	if b.Checkpoints == 0 {
		return Due{At: b.EnabledAt, Full: true}, true
	}
	due := Due{At: b.LastFullDay.Next().Start(loc), Full: true}
	if inc := b.lastCheckpointAt().Add(IncrementalEvery); inc.Before(due.At) && !b.SourceReleased.Recorded() {
		due = Due{At: inc}
	}
	if due.At.Before(b.ResumedAt) {
		return b.CatchUp(b.ResumedAt, loc), true
	}
	return due, true
}

// CatchUp is the one checkpoint that covers a downtime ending at now: the
// missed full of today if today has none yet, else one incremental.
func (b *Backup) CatchUp(now time.Time, loc *time.Location) Due {
	return Due{At: now, Full: b.Checkpoints == 0 || b.LastFullDay < DayOf(now, loc)}
}

// Checkpoint decides the next checkpoint, covering the KMS stream up to
// (not including) revision next, at instant at. The parts of its slice
// are already stored (Slice, the one blob of the first generation, is no
// longer written); inBase says that a base holds the revisions instead
// (the first checkpoint only).
func (b *Backup) Checkpoint(due Due, loc *time.Location, next uint64, parts []SlicePart, inBase bool) (*BackupCheckpointed, error) {
	const op = "take backup"
	if b.State != StateEnabled {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "", "backup instance is %s", b.State)
	}
	if next < b.NextRevision {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "", "rollback: revision %d is before the %d already backed up", next, b.NextRevision)
	}
	if b.SourceReleased.Recorded() && next != b.NextRevision {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "",
			"KMS instance %s was released: nothing more of it is backed up", b.KMSInstance)
	}
	if b.Checkpoints > 0 && due.At.Before(b.lastCheckpointAt()) {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "", "checkpoint at %s is before the previous one", due.At.Format(time.RFC3339))
	}
	if b.ExpiredBy(due.At) {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "renew it to go on backing up",
			"the term ends at %s: no checkpoint at or after it", b.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if b.Checkpoints == 0 && !due.Full {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "", "the first checkpoint must be a full backup")
	}
	if inBase && (b.Checkpoints > 0 || len(parts) > 0) {
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "", "only the first checkpoint is held by a base, and then by no slice")
	}
	c := &BackupCheckpointed{Generation: b.Generation, Seq: b.Checkpoints + 1, Full: due.Full, At: due.At.UTC(),
		Day: DayOf(due.At, loc), From: b.NextRevision, Next: next, PrevDigest: b.LastDigest, InBase: inBase}
	if next > b.NextRevision {
		c.Parts = parts
	}
	c.Digest = CheckpointDigest(b.ID, c)
	return c, nil
}

// CheckpointDigest hashes every field of a checkpoint but its own digest,
// chaining it to its predecessor through PrevDigest.
func CheckpointDigest(id BackupID, c *BackupCheckpointed) [32]byte {
	w := wire.Writer{B: make([]byte, 0, 192)}
	w.String("kmsbackup checkpoint v1")
	w.String(string(id))
	cp := *c
	cp.Digest = [32]byte{}
	cp.encode(&w)
	return sha256.Sum256(w.B)
}
