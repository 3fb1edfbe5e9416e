package backup

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/backupfile"
	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/cmd/engine"
	"github.com/kmsbackup/kmsbackup/domain"
)

// secondNode is another engine on e's log, data keys and blobs, with read
// models of its own, as a second node of a shared store is: its blobs are
// recorded. Its projectors have caught up with the log when it returns,
// and are stopped: its read models keep that view.
func secondNode(t *testing.T, e *Engine) (*engine.Engine, *recordingBlobs) {
	t.Helper()
	dir := t.TempDir()
	proj, err := pebblestore.OpenProjections(filepath.Join(dir, "projections"), pebblestore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proj.Close() })
	env := Must(envelope.New(e.master, e.Store))
	scratch := Must(pebblestore.NewScratches(filepath.Join(dir, "scratch"), pebblestore.ScratchOptions{}))
	blobs := &recordingBlobs{BlobStore: e.Store, stored: map[string][]string{}}
	eng := engine.New(engine.Ports{Log: e.Store, ReadModels: proj, Blobs: blobs, Keys: env, Scratch: scratch,
		Files: backupfile.New(), Clock: e.Clock}, engine.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range eng.Projectors() {
		wg.Go(func() { _ = p.Run(ctx) })
	}
	head := Must(e.Store.Head(ctx))
	for _, p := range eng.Projectors() {
		if err := p.WaitFor(ctx, head); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	return eng, blobs
}

// TestCheckpointRaceLoserLeavesNoBlob: two nodes on one log take the same
// checkpoint; the one that appends second is refused, and deletes the
// parts of the slice it stored: the chain holds the checkpoint once, and
// no blob is left that the chain does not name.
func TestCheckpointRaceLoserLeavesNoBlob(t *testing.T) {
	ctx := context.Background()
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	in, b := e.EnabledBackup("UTC")
	k := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "payments"))
	Must(e.KMS.RotateKey(ctx, e.Caller, k.ID, ""))
	e.Clock.Advance(5 * time.Minute)
	due := domain.Due{At: e.Clock.Now()}

	other, blobs := secondNode(t, e) // sees the instance before the checkpoint
	other.Checkpoints.Storage.SlicePartBytes = 1
	won := Must(e.Checkpoints.TakeCheckpoint(ctx, b.ID, due))
	if _, err := other.Checkpoints.TakeCheckpoint(ctx, b.ID, due); !errors.Is(err, domain.ErrWrongExpectedRevision) {
		t.Fatalf("the second node's checkpoint: %v, want ErrWrongExpectedRevision", err)
	}
	ref := b.DataRef()
	if len(blobs.stored[ref]) < 2 || len(blobs.stored) != 1 {
		t.Fatalf("the losing node stored %v: the test needs several blobs of %s", blobs.stored, ref)
	}

	seqs := 0
	for _, c := range e.CheckpointEvents(b.ID) {
		if c.Seq == won.Seq {
			seqs++
		}
	}
	if seqs != 1 {
		t.Errorf("checkpoint %d is %d times in the chain, want once", won.Seq, seqs)
	}
	named := map[string]bool{}
	for _, n := range e.namedBlobs(b.ID, b.Generation) {
		named[n] = true
	}
	for _, n := range blobs.stored[ref] {
		if named[n] {
			t.Errorf("the chain names blob %s of the losing node", n)
		}
		if _, err := e.Store.GetBlob(ctx, ref, n); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("blob %s/%s of the losing node: %v, want ErrNotFound", ref, n, err)
		}
	}
}
