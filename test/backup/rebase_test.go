package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// rebasingEngine is an engine that writes a base once the events since the
// newest reach beta times its records, and at least min, with small parts.
func rebasingEngine(t *testing.T, start time.Time, beta float64, min uint64) *Engine {
	t.Helper()
	e := NewEngine(t, start)
	e.configure(func(e *Engine) {
		e.Storage.SlicePartBytes, e.Storage.BasePartBytes = 2<<10, 2<<10
		e.Checkpoints.Rebase = &domain.RebasePolicy{Beta: beta, MinEvents: min}
	})
	return e
}

// churn makes n changes on in's keys (rotations, and a deletion and a
// creation now and then), a few minutes apart.
func churn(t *testing.T, e *Engine, in domain.InstanceID, keys *[]domain.KeyID, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		switch {
		case i%5 == 4 && len(*keys) > 3:
			if err := e.KMS.DeleteKey(ctx, e.Caller, (*keys)[0], ""); err != nil {
				t.Fatal(err)
			}
			*keys = (*keys)[1:]
			*keys = append(*keys, Must(e.KMS.CreateKey(ctx, e.Caller, in, fmt.Sprint("k", i))).ID)
		default:
			Must(e.KMS.RotateKey(ctx, e.Caller, (*keys)[i%len(*keys)], ""))
		}
		if i%7 == 0 {
			e.Advance(3 * time.Minute)
		}
	}
}

// TestRebaseAfterDailyFull: once enough events follow the newest base, the
// daily full gets a base of its own, in the background of the schedule,
// chained to the one before; restores read from it; it verifies clean;
// a reset destroys it with the rest.
func TestRebaseAfterDailyFull(t *testing.T) {
	ctx := context.Background()
	e := rebasingEngine(t, time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC), 0.5, 20)
	in, b := e.EnabledBackup("UTC")
	var keys []domain.KeyID
	for i := range 10 {
		keys = append(keys, Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, fmt.Sprint("k", i))).ID)
	}
	churn(t, e, in.ID, &keys, 30)
	e.Advance(24 * time.Hour) // the full of 2 May, 40 events after base 0 (empty)
	bases := e.baseRecords(b.ID)
	if len(bases) != 2 {
		t.Fatalf("%d bases after the first daily full", len(bases))
	}
	b = Must(e.Backups.ShowBackupInstance(e.Caller, b.ID))
	if bases[1].Seq != b.LastFullSeq || bases[1].PrevDigest != bases[0].Digest || b.BaseSeq != bases[1].Seq {
		t.Fatalf("the base of the full: seq %d (last full %d), chained %v", bases[1].Seq, b.LastFullSeq, bases[1].PrevDigest == bases[0].Digest)
	}
	// Not again for the same full, nor while too few events follow.
	if did := Must(e.Checkpoints.RebaseBackup(ctx, b.ID)); did {
		t.Fatal("a second base of the same full")
	}
	churn(t, e, in.ID, &keys, 3)
	e.Advance(24 * time.Hour)
	if n := len(e.baseRecords(b.ID)); n != 2 {
		t.Fatalf("%d bases after 3 events more", n)
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID)); len(rep.Findings) > 0 {
		t.Fatalf("verify: %+v", rep.Findings)
	}
	// A day after the base reads from it: the same as the log's.
	cps := e.CheckpointEvents(b.ID)
	day := domain.DayOf(e.Clock.Now().Add(-time.Hour), time.UTC)
	src := Must(e.Days.Open(ctx, b, commands.RestorePoint{Day: day}, nil))
	loc := time.UTC
	want := naiveItems(t, e, in.ID, cps[0].Next, day.Start(loc), day.Next().Start(loc), true)
	if got := sourceItems(t, e, b, src); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("day %s read from the base differs from the log", day)
	}
	_ = src.Close()

	// A reset destroys the bases with the slices.
	Must(e.Backups.ResetBackupInstance(ctx, e.Caller, b.ID, true))
	for _, base := range bases {
		for _, p := range base.Parts {
			if _, err := e.Store.GetBlob(ctx, b.DataRef(), p.Name); !errors.Is(err, domain.ErrNotFound) {
				t.Fatalf("base part %s after the reset: %v", p.Name, err)
			}
		}
	}
}

// hookBlobs calls a hook before each put of a base part.
type hookBlobs struct {
	commands.BlobStore
	mu     sync.Mutex
	before func(ref, name string) error
}

func (h *hookBlobs) PutBlob(ctx context.Context, ref, name string, data []byte) error {
	h.mu.Lock()
	hook := h.before
	h.mu.Unlock()
	if hook != nil && strings.HasPrefix(name, "base-") {
		if err := hook(ref, name); err != nil {
			return err
		}
	}
	return h.BlobStore.PutBlob(ctx, ref, name, data)
}

// TestRebaseRaces: of two rebases of one full at once, one stores its
// base and the other deletes its parts; checkpoints appended while a base
// is written do not keep it from being claimed.
func TestRebaseRaces(t *testing.T) {
	ctx := context.Background()
	never := &domain.RebasePolicy{Beta: 0.5, MinEvents: 1 << 40}
	due := &domain.RebasePolicy{Beta: 0.5, MinEvents: 10}
	e := rebasingEngine(t, time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC), 0.5, 1<<40) // none in the schedule: called here
	hook := &hookBlobs{BlobStore: e.Store}
	e.Storage.Blobs = hook
	in, b := e.EnabledBackup("UTC")
	var keys []domain.KeyID
	for i := range 10 {
		keys = append(keys, Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, fmt.Sprint("k", i))).ID)
	}
	churn(t, e, in.ID, &keys, 30)
	e.Advance(15*time.Hour + time.Minute) // past the full of 2 May
	e.Checkpoints.Rebase = due

	// A checkpoint lands while the base's parts are stored.
	var once sync.Once
	hook.before = func(string, string) error {
		once.Do(func() {
			Must(e.KMS.RotateKey(ctx, e.Caller, keys[0], ""))
			now := Must(e.Backups.ShowBackupInstance(e.Caller, b.ID))
			next, _ := now.NextCheckpoint(time.UTC)
			e.Clock.Set(next.At)
			Must(e.Checkpoints.TakeCheckpoint(ctx, b.ID, next))
		})
		return nil
	}
	if did, err := e.Checkpoints.RebaseBackup(ctx, b.ID); err != nil || !did {
		t.Fatalf("a rebase overtaken by a checkpoint: %v %v", did, err)
	}
	hook.before = nil
	if n := len(e.baseRecords(b.ID)); n != 2 {
		t.Fatalf("%d bases", n)
	}

	// Two at once, for the next full.
	e.Checkpoints.Rebase = never
	churn(t, e, in.ID, &keys, 30)
	e.Advance(24 * time.Hour)
	e.Checkpoints.Rebase = due
	var started sync.WaitGroup
	started.Add(2)
	var once2 [2]sync.Once
	var namesMu sync.Mutex
	var put []string
	n := atomic.Int32{}
	hook.before = func(_, name string) error {
		namesMu.Lock()
		put = append(put, name)
		namesMu.Unlock()
		// Each rebase waits for the other at its first part.
		if strings.HasSuffix(name, "-0") {
			once2[n.Add(1)-1].Do(func() { started.Done(); started.Wait() })
		}
		return nil
	}
	var stored atomic.Int32
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			did, err := e.Checkpoints.RebaseBackup(ctx, b.ID)
			errs[i] = err
			if did {
				stored.Add(1)
			}
		})
	}
	wg.Wait()
	hook.before = nil
	if errs[0] != nil || errs[1] != nil || stored.Load() != 1 {
		t.Fatalf("two rebases at once: %v, %v; %d stored", errs[0], errs[1], stored.Load())
	}
	bases := e.baseRecords(b.ID)
	if len(bases) != 3 {
		t.Fatalf("%d bases", len(bases))
	}
	// Only the winner's parts are left.
	kept := map[string]bool{}
	for _, p := range bases[2].Parts {
		kept[p.Name] = true
	}
	for _, name := range put {
		_, err := e.Store.GetBlob(ctx, b.DataRef(), name)
		if kept[name] != (err == nil) || (!kept[name] && !errors.Is(err, domain.ErrNotFound)) {
			t.Fatalf("part %s (kept %v): %v", name, kept[name], err)
		}
	}
	if len(put) <= len(kept) {
		t.Fatalf("%d parts put for %d kept: the race did not happen", len(put), len(kept))
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID)); len(rep.Findings) > 0 {
		t.Fatalf("verify: %+v", rep.Findings)
	}
}

// TestFailingRebaseIsolated: a rebase that fails delays no checkpoint of its
// backup and no other backup's rebase; it is retried later, and succeeds
// once the cause is gone. The backup instance is not failing meanwhile.
func TestFailingRebaseIsolated(t *testing.T) {
	ctx := context.Background()
	e := rebasingEngine(t, time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC), 0.5, 20)
	hook := &hookBlobs{BlobStore: e.Store}
	e.Storage.Blobs = hook
	inA, a := e.EnabledBackup("UTC")
	inB, bb := e.EnabledBackup("UTC")
	var keysA, keysB []domain.KeyID
	for i := range 6 {
		keysA = append(keysA, Must(e.KMS.CreateKey(ctx, e.Caller, inA.ID, fmt.Sprint("a", i))).ID)
		keysB = append(keysB, Must(e.KMS.CreateKey(ctx, e.Caller, inB.ID, fmt.Sprint("b", i))).ID)
	}
	churn(t, e, inA.ID, &keysA, 25)
	churn(t, e, inB.ID, &keysB, 25)
	refA := a.DataRef()
	var fails atomic.Int32
	hook.before = func(ref, _ string) error {
		if ref == refA {
			fails.Add(1)
			return fmt.Errorf("%w: the disk is full", domain.ErrUnavailable)
		}
		return nil
	}
	e.Advance(24 * time.Hour)
	if fails.Load() == 0 || len(e.baseRecords(a.ID)) != 1 || len(e.baseRecords(bb.ID)) != 2 {
		t.Fatalf("%d failures; bases: a %d, b %d", fails.Load(), len(e.baseRecords(a.ID)), len(e.baseRecords(bb.ID)))
	}
	a = Must(e.Backups.ShowBackupInstance(e.Caller, a.ID))
	cps := e.CheckpointEvents(a.ID)
	if last := cps[len(cps)-1]; a.Failing.Active() || last.At.Before(e.Clock.Now().Add(-commands.RetryMax)) {
		t.Fatalf("backup a: failing %+v, last checkpoint at %s, now %s", a.Failing, last.At, e.Clock.Now())
	}
	chainOK(t, cps)
	hook.before = nil
	e.Advance(10 * time.Minute) // past the retry delay
	if n := len(e.baseRecords(a.ID)); n != 2 {
		t.Fatalf("backup a has %d bases once healed", n)
	}
}
