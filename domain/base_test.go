package domain_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// withCheckpoint applies c to b (as the log would) and returns it.
func withCheckpoint(b *domain.Backup, c *domain.BackupCheckpointed) *domain.BackupCheckpointed {
	b.Apply(domain.Event{Revision: b.Revision + 1, Account: b.Account, OccurredAt: c.At}, c)
	return c
}

func enabledAt(t *testing.T, at time.Time) *domain.Backup {
	t.Helper()
	b := &domain.Backup{}
	applyAt(b, at, &domain.BackupCreated{Backup: "bkp_1", Kind: domain.BackupProvisioned, Region: "cn-hangzhou", ViewableDays: 30})
	applyAt(b, at, &domain.BackupEnabled{KMSInstance: "kms_1", Alias: "a", TimeZone: "UTC"})
	return b
}

func TestBaseStoredCodec(t *testing.T) {
	e := &domain.BackupBaseStored{Generation: 2, Seq: 9, At: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), Next: 40,
		Parts: []domain.BasePart{{Name: "p0", Digest: [32]byte{1}, Size: 100, First: []byte("k\x00a"), Last: []byte("kz"), Items: 3, Versions: 5},
			{Name: "p1", Size: 7, First: []byte("s"), Last: []byte("t"), Items: 1, Versions: 1}},
		Items: 4, Versions: 6, StateDigest: [32]byte{2}, CheckpointDigest: [32]byte{3}, PrevDigest: [32]byte{4}, Digest: [32]byte{5}}
	d, err := domain.DecodeData(domain.TypeBackupBaseStored, domain.SchemaVersion, domain.EncodeData(e))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, e) {
		t.Fatalf("round trip: %+v, want %+v", d, e)
	}
	if domain.BaseDigest("bkp_1", e) == domain.BaseDigest("bkp_2", e) {
		t.Fatal("the digest does not bind the backup")
	}
}

// TestFirstCheckpointWithBase: the first checkpoint of a generation may be
// held by a base, and then by no slice; base 0 is recorded with it and
// chained to it.
func TestFirstCheckpointWithBase(t *testing.T) {
	at := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	b := enabledAt(t, at)
	due, _ := b.NextCheckpoint(time.UTC)
	if _, err := b.Checkpoint(due, time.UTC, 5, []domain.SlicePart{{Name: "x"}}, true); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("a base and a slice: %v", err)
	}
	c, err := b.Checkpoint(due, time.UTC, 5, nil, true)
	if err != nil || !c.InBase || c.Slice != "" || c.Next != 5 {
		t.Fatalf("first checkpoint with a base: %+v, %v", c, err)
	}
	withCheckpoint(b, c)
	parts := []domain.BasePart{{Name: "base-1-0", Items: 2, Versions: 3}, {Name: "base-1-1", Items: 1, Versions: 1}}
	base, err := b.StoreBase(c, parts, [32]byte{9})
	if err != nil {
		t.Fatal(err)
	}
	if base.Seq != 1 || base.Items != 3 || base.Versions != 4 || base.CheckpointDigest != c.Digest || base.PrevDigest != ([32]byte{}) ||
		base.Digest != domain.BaseDigest(b.ID, base) || base.Next != 5 || !base.At.Equal(at) {
		t.Fatalf("base 0: %+v", base)
	}
	applyAt(b, at, base)
	if b.Bases != 1 || b.BaseSeq != 1 || b.BaseNext != 5 || b.BaseRecords != 7 || b.LastBaseDigest != base.Digest {
		t.Fatalf("after base 0: %+v", b)
	}
	if _, err := b.StoreBase(c, parts, [32]byte{}); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("a second base of the same checkpoint: %v", err)
	}
	// Later checkpoints cannot be held by a base.
	due, _ = b.NextCheckpoint(time.UTC)
	if _, err := b.Checkpoint(due, time.UTC, 6, nil, true); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("a later checkpoint in a base: %v", err)
	}
	c2 := withCheckpoint(b, mustCheckpoint(t, b, due, 8))
	next, err := b.StoreBase(c2, parts[:1], [32]byte{1})
	if err != nil || next.PrevDigest != base.Digest {
		t.Fatalf("the next base: %+v, %v (want it chained to base 0)", next, err)
	}
	// A base of another generation, or of a checkpoint not taken, is
	// refused; so is one recorded for a destroyed generation.
	other := *c2
	other.Generation++
	if _, err := b.StoreBase(&other, parts, [32]byte{}); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("another generation: %v", err)
	}
	other = *c2
	other.Seq = 99
	if _, err := b.StoreBase(&other, parts, [32]byte{}); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("a checkpoint not taken: %v", err)
	}
	applyAt(b, at, &domain.BackupReset{})
	if b.Bases != 0 || b.BaseSeq != 0 || b.LastBaseDigest != ([32]byte{}) {
		t.Fatalf("a reset keeps the base: %+v", b)
	}
	applyAt(b, at, next) // of the destroyed generation
	if b.Bases != 0 {
		t.Fatal("a base of a destroyed generation counts")
	}
}

func mustCheckpoint(t *testing.T, b *domain.Backup, due domain.Due, next uint64) *domain.BackupCheckpointed {
	t.Helper()
	var parts []domain.SlicePart
	if next > b.NextRevision {
		parts = []domain.SlicePart{{Name: "s", Events: next - b.NextRevision}}
	}
	c, err := b.Checkpoint(due, time.UTC, next, parts, false)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRebaseDue: a base of the last daily full is due once the events
// since the newest base reach Beta times its records, and at least
// MinEvents; never twice for one full; a generation without a base gets
// one after MinEvents.
func TestRebaseDue(t *testing.T) {
	p := domain.RebasePolicy{Beta: 0.5, MinEvents: 10}
	at := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	b := enabledAt(t, at)
	due, _ := b.NextCheckpoint(time.UTC)
	c := withCheckpoint(b, mustCheckpoint(t, b, due, 0))
	c.InBase = true
	if b.RebaseDue(p) {
		t.Fatal("due with no event at all")
	}
	applyAt(b, at, &domain.BackupBaseStored{Generation: b.Generation, Seq: 1, Next: 0, Items: 40, Versions: 60})
	step := func(next uint64) {
		due, _ := b.NextCheckpoint(time.UTC)
		withCheckpoint(b, mustCheckpoint(t, b, due, next))
	}
	// Incrementals until the day's end, then the full of 2026-05-02.
	step(30)
	for !b.LastFullAt.After(at) {
		step(b.NextRevision)
	}
	if b.RebaseDue(p) {
		t.Fatalf("due after %d events for a base of 100 records (beta 0.5)", b.LastFullNext)
	}
	step(60) // the day's events
	for b.LastFullAt.Before(at.Add(24 * time.Hour)) {
		step(b.NextRevision)
	}
	if !b.RebaseDue(p) {
		t.Fatalf("not due after %d events for a base of 100 records", b.LastFullNext)
	}
	applyAt(b, at, &domain.BackupBaseStored{Generation: b.Generation, Seq: b.LastFullSeq, Next: b.LastFullNext, Items: 1, Versions: 1})
	if b.RebaseDue(p) {
		t.Fatal("due again for the full that has its base")
	}
	// Without a base (a generation of the first version): MinEvents.
	nb := *b
	nb.Bases, nb.BaseSeq, nb.BaseNext, nb.BaseRecords = 0, 0, 0, 0
	if !nb.RebaseDue(p) {
		t.Fatal("a generation without a base gets none")
	}
	nb.State = domain.StateExpired
	if nb.RebaseDue(p) {
		t.Fatal("due for an expired instance")
	}
}
