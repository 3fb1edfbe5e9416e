package domain

import (
	"crypto/sha256"
	"time"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// A base is the complete state of a backup generation at one checkpoint,
// every item with every version (key material sealed under the
// generation's data key), stored as parts in the blob store: sorted,
// non-overlapping tables that a reader loads without replaying what came
// before (docs/restore-engine.md). A generation's first checkpoint is
// written as base 0; later bases are written in the background after a
// daily full (RebaseDue), so that reading any day replays at most a bounded
// share of events on top of the newest base before it.

// BasePart names one part of a base: its blob and the blob's SHA-256, its
// size, the first and last keys it holds (of the state layout: kind, item
// ID or name, record), and how many items and versions it holds. An item
// never spans two parts.
type BasePart struct {
	Name            string
	Digest          [32]byte
	Size            uint64
	First, Last     []byte
	Items, Versions uint64
}

// BackupBaseStored records a base written for checkpoint Seq of the
// generation, chained to that checkpoint (CheckpointDigest) and to the
// previous base (PrevDigest), as checkpoints chain to each other. The
// first base of a generation of this version is appended with its first
// checkpoint, in one append; a later one claims its place by being
// appended at the revision its writer saw.
type BackupBaseStored struct {
	Generation uint32
	Seq        uint64    // the checkpoint whose state it holds
	At         time.Time // that checkpoint's instant
	Next       uint64    // the KMS revisions that checkpoint covers up to
	Parts      []BasePart
	Items      uint64
	Versions   uint64
	// StateDigest is the digest of the state it holds, computed the same
	// way over a state replayed from slices (projections/dayview).
	StateDigest      [32]byte
	CheckpointDigest [32]byte // the Digest of checkpoint Seq
	PrevDigest       [32]byte // the previous base's Digest (zero for the first)
	Digest           [32]byte // see BaseDigest
}

// Records is how many records (items and versions) the base holds.
func (e *BackupBaseStored) Records() uint64 { return e.Items + e.Versions }

// BaseDigest hashes every field of a base record but its own digest.
func BaseDigest(id BackupID, e *BackupBaseStored) [32]byte {
	w := wire.Writer{B: make([]byte, 0, 256)}
	w.String("kmsbackup base v1")
	w.String(string(id))
	cp := *e
	cp.Digest = [32]byte{}
	cp.encode(&w)
	return sha256.Sum256(w.B)
}

// StoreBase decides recording a base of checkpoint cp of b's current
// generation, whose parts are stored. Errors: ErrFailedPrecondition when
// cp is of another generation or not yet taken, or the instance holds no
// data; ErrAlreadyExists when b already records a base of cp or of a later
// checkpoint (another engine stored one first); ErrInvalidArgument for a
// base without parts holding items.
func (b *Backup) StoreBase(cp *BackupCheckpointed, parts []BasePart, stateDigest [32]byte) (*BackupBaseStored, error) {
	const op = "store base"
	switch {
	case !b.HoldsData():
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "", "backup instance is %s", b.State)
	case cp.Generation != b.Generation || cp.Seq == 0 || cp.Seq > b.Checkpoints:
		return nil, Errorf(ErrFailedPrecondition, op, string(b.ID), "", "checkpoint %d of generation %d is not in the chain", cp.Seq, cp.Generation)
	case b.Bases > 0 && cp.Seq <= b.BaseSeq:
		return nil, Errorf(ErrAlreadyExists, op, string(b.ID), "", "a base of checkpoint %d is stored already", b.BaseSeq)
	}
	e := &BackupBaseStored{Generation: b.Generation, Seq: cp.Seq, At: cp.At, Next: cp.Next, Parts: parts,
		StateDigest: stateDigest, CheckpointDigest: cp.Digest, PrevDigest: b.LastBaseDigest}
	for _, p := range parts {
		if p.Name == "" || p.Items == 0 {
			return nil, Invalid(op, "a part of the base of checkpoint %d has no name or no item", cp.Seq)
		}
		e.Items += p.Items
		e.Versions += p.Versions
	}
	e.Digest = BaseDigest(b.ID, e)
	return e, nil
}

// RebasePolicy says when a new base is written: after a daily full, once
// the events backed up since the newest base reach Beta times that base's
// records (items and versions), and at least MinEvents; a generation
// without a base (of the first version) gets one once MinEvents events are
// backed up.
type RebasePolicy struct {
	Beta      float64
	MinEvents uint64
}

// DefaultRebasePolicy is the policy of the engine (docs/restore-engine.md
// says why).
var DefaultRebasePolicy = RebasePolicy{Beta: 0.35, MinEvents: 4096}

// RebaseDue reports whether a base of the last daily full is due under p:
// the instance is enabled, its last full is newer than its newest base,
// and enough events were backed up between the two.
func (b *Backup) RebaseDue(p RebasePolicy) bool {
	if b.State != StateEnabled || b.LastFullSeq == 0 || (b.Bases > 0 && b.LastFullSeq <= b.BaseSeq) {
		return false
	}
	since := b.LastFullNext - min(b.BaseNext, b.LastFullNext)
	need := max(uint64(p.Beta*float64(b.BaseRecords)), p.MinEvents)
	if b.Bases == 0 {
		need = p.MinEvents
	}
	return since >= need
}
