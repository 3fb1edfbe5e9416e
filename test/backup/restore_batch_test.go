package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// batchWorld is a backed-up instance of 10 keys and 4 secrets (each under
// its own key), and restores over the engine in batches of 3 items.
type batchWorld struct {
	e       *Engine
	src     *domain.Instance
	b       *domain.Backup
	keys    []domain.KeyID
	day     string
	restore *commands.Restores
}

func newBatchWorld(t *testing.T) *batchWorld {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	ctx := context.Background()
	src, b := e.EnabledBackup("UTC")
	w := &batchWorld{e: e, src: src, b: b, day: "2026-05-01"}
	for i := range 10 {
		w.keys = append(w.keys, Must(e.KMS.CreateKey(ctx, e.Caller, src.ID, fmt.Sprint("k", i))).ID)
	}
	for i := range 4 {
		Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: fmt.Sprint("s", i), Instance: src.ID, Key: w.keys[i], Value: domain.Plaintext("v")}))
	}
	e.Advance(10 * time.Minute)
	w.restore = &commands.Restores{Days: e.Days, KMS: e.KMS, Sealer: e.Restores.Sealer, Audit: e.Restores.Audit, Sources: e.Restores.Sources, BatchItems: 3}
	return w
}

func (w *batchWorld) target(t *testing.T, region string) domain.InstanceID {
	t.Helper()
	return Must(w.e.KMS.CreateInstance(context.Background(), w.e.Caller, commands.CreateInstanceInput{Region: region})).ID
}

func (w *batchWorld) all(t *testing.T, to domain.InstanceID) commands.RestoreRequest {
	return RestoreReq{From: w.b.ID, Day: w.day, All: true, ToInstance: to}.typed(t)
}

// restoreAudit lists the items of the restore audit records of w's backup.
func (w *batchWorld) restoreAudit(t *testing.T) (records int, items []string) {
	t.Helper()
	p := Must(w.e.Backups.Audit.ListAudit(w.e.Caller, w.b.ID, time.Time{}, "", 1000))
	for _, r := range p.Items {
		if r.Action != "restore" {
			continue
		}
		records++
		if n := len(r.Keys) + len(r.Secrets); n == 0 || n > 3 {
			t.Errorf("audit record of %d items, want 1 to 3 (a batch)", n)
		}
		items = append(append(items, r.Keys...), r.Secrets...)
	}
	slices.Sort(items)
	return records, items
}

// TestRestoreInBatches: a restore of 14 items in batches of 3 writes 5
// atomic appends, keys before secrets, with one audit record per batch
// listing its items, and reports its progress phase by phase; repeated, it
// writes nothing and finds every item already present.
func TestRestoreInBatches(t *testing.T) {
	w := newBatchWorld(t)
	ctx := context.Background()
	to := w.target(t, "eu-central-1")
	var seen []commands.RestoreProgress
	res, err := w.restore.Restore(ctx, w.e.Caller, w.all(t, to), func(p commands.RestoreProgress) { seen = append(seen, p) })
	if err != nil || !res.Applied || res.Restored != 14 || res.Batches != 5 || len(res.Validation) != 0 {
		t.Fatalf("restore: %v; %+v", err, res)
	}
	want := []commands.RestoreProgress{{Phase: "plan", Total: 14}, {Phase: "plan", Done: 14, Total: 14}, {Phase: "apply", Total: 14}}
	for _, n := range []uint64{3, 6, 9, 12, 14} {
		want = append(want, commands.RestoreProgress{Phase: "apply", Done: n, Total: 14})
	}
	want = append(want, commands.RestoreProgress{Phase: "validate", Total: 14}, commands.RestoreProgress{Phase: "validate", Done: 14, Total: 14})
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	// The target's stream: every key restored before any secret, five appends.
	events := Must(w.e.Store.ReadStream(ctx, domain.KMSStream(to), 0, false, 100))
	var types []string
	for _, ev := range events[1:] {
		types = append(types, ev.Type)
	}
	if len(types) != 14 || slices.Index(types, domain.TypeSecretRestored) != 10 || slices.Contains(types[10:], domain.TypeKeyRestored) {
		t.Fatalf("the target's events after its creation: %v", types)
	}
	records, items := w.restoreAudit(t)
	var wantItems []string
	for _, k := range w.keys {
		wantItems = append(wantItems, string(k))
	}
	wantItems = append(wantItems, "s0", "s1", "s2", "s3")
	slices.Sort(wantItems)
	if diff := cmp.Diff(wantItems, items); records != 5 || diff != "" {
		t.Fatalf("%d audit records; their items (-want +got):\n%s", records, diff)
	}

	again, err := w.restore.Restore(ctx, w.e.Caller, w.all(t, to), nil)
	if err != nil || !again.Applied || again.Restored != 0 || again.AlreadyPresent != 14 || again.Batches != 0 || len(again.Validation) != 0 {
		t.Fatalf("repeated restore: %v; %+v", err, again)
	}
	if records, _ := w.restoreAudit(t); records != 5 {
		t.Fatalf("a repeated restore that wrote nothing added audit records: %d", records)
	}
}

// TestRestoreInterruptedThenRetried: a restore cut short after its first
// batch leaves exactly that batch in the target (all or nothing); the
// retry writes the rest, and nothing twice.
func TestRestoreInterruptedThenRetried(t *testing.T) {
	w := newBatchWorld(t)
	to := w.target(t, "eu-central-1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := w.restore.Restore(ctx, w.e.Caller, w.all(t, to), func(p commands.RestoreProgress) {
		if p.Phase == commands.PhaseApply && p.Done > 0 {
			cancel()
		}
	})
	if err == nil {
		t.Fatal("a restore whose context ended after its first batch succeeded")
	}
	w.e.CaughtUp() // the restore ended without waiting for the read model to show its batch
	in := Must(kmsstate.GetInstance(w.e.Proj, to))
	if in.LiveKeys+in.LiveSecrets != 3 {
		t.Fatalf("after the first batch the target holds %d keys and %d secrets, want 3 items", in.LiveKeys, in.LiveSecrets)
	}
	res, err := w.restore.Restore(context.Background(), w.e.Caller, w.all(t, to), nil)
	if err != nil || !res.Applied || res.Restored != 11 || res.AlreadyPresent != 3 || len(res.Validation) != 0 {
		t.Fatalf("retry: %v; %+v", err, res)
	}
	in = Must(kmsstate.GetInstance(w.e.Proj, to))
	if in.LiveKeys != 10 || in.LiveSecrets != 4 || in.Revision != 14 {
		t.Fatalf("after the retry: %d keys, %d secrets, stream at revision %d; want 10, 4 and 14 (one event per item)", in.LiveKeys, in.LiveSecrets, in.Revision)
	}
	if _, items := w.restoreAudit(t); len(items) != 14 {
		t.Fatalf("the audit lists %d restored items, want 14", len(items))
	}
}

// TestRestoreIntoItsSourceSaysPresent: restoring a day into the instance
// it was taken from, where nothing was deleted since, finds every item
// already present and identical, writes nothing and validates; an item
// changed since (a rotated key) is in the way.
func TestRestoreIntoItsSourceSaysPresent(t *testing.T) {
	w := newBatchWorld(t)
	ctx := context.Background()
	res, err := w.restore.Restore(ctx, w.e.Caller, w.all(t, w.src.ID), nil)
	if err != nil || !res.Applied || res.Restored != 0 || res.AlreadyPresent != 14 || len(res.Validation) != 0 {
		t.Fatalf("restore into the source: %v; %+v", err, res)
	}
	for _, it := range res.Plan.Items {
		if it.Status != commands.StatusPresent {
			t.Fatalf("%s %s: status %q, want %q", it.Kind, it.ID, it.Status, commands.StatusPresent)
		}
	}
	Must(w.e.KMS.RotateKey(ctx, w.e.Caller, w.keys[7], ""))
	plan, err := w.restore.PlanRestore(ctx, w.e.Caller, w.all(t, w.src.ID), nil)
	if err != nil || len(plan.Findings) != 1 || plan.Findings[0].Code != commands.FindingKeyExists || plan.Findings[0].Item != string(w.keys[7]) || plan.Present != 13 {
		t.Fatalf("plan into the source after a rotation: %v; present %d, findings %+v", err, plan.Present, plan.Findings)
	}
}

// TestRestoreBatchLosesARace: another node restores one item of a batch
// into the target just before the batch's append; the batch loses the
// race, is decided again against the target as it is then, and skips
// that item: every item once.
func TestRestoreBatchLosesARace(t *testing.T) {
	w := newBatchWorld(t)
	e := w.e
	to := w.target(t, "eu-central-1")
	other := &commands.Restores{Days: e.Days, Sealer: e.Restores.Sealer, KMS: &commands.KMS{Log: e.KMS.Log, State: e.KMS.State, Applied: e.KMS.Applied,
		Sealer: e.KMS.Sealer, DataKeys: e.KMS.DataKeys, Cipher: e.KMS.Cipher, Clock: e.KMS.Clock, IDs: e.KMS.IDs},
		Audit: e.Restores.Audit, Sources: e.Restores.Sources}
	log := &interferingLog{Store: e.Store}
	sorted := slices.Sorted(slices.Values(w.keys)) // the order of the batches
	attempts := 0
	log.other = func(ctx context.Context) {
		if attempts++; attempts != 2 { // the second batch's first attempt
			return
		}
		r := Must(other.Restore(ctx, e.Caller, RestoreReq{From: w.b.ID, Day: w.day, Keys: []string{string(sorted[4])}, ToInstance: to}.typed(t), nil))
		if r.Restored != 1 {
			t.Errorf("the other node restored %d items", r.Restored)
		}
	}
	this := *w.restore
	this.KMS = &commands.KMS{Log: log, State: e.KMS.State, Applied: e.KMS.Applied, Sealer: e.KMS.Sealer, DataKeys: e.KMS.DataKeys,
		Cipher: e.KMS.Cipher, Clock: e.KMS.Clock, IDs: e.KMS.IDs}
	res, err := this.Restore(context.Background(), e.Caller, w.all(t, to), nil)
	if err != nil || !res.Applied || res.Restored != 13 || res.AlreadyPresent != 1 || len(res.Validation) != 0 {
		t.Fatalf("restore: %v; %+v", err, res)
	}
	if attempts != 6 { // 5 batches, one of them twice
		t.Fatalf("%d appends attempted, want 6", attempts)
	}
	if in := Must(kmsstate.GetInstance(e.Proj, to)); in.LiveKeys != 10 || in.LiveSecrets != 4 || in.Revision != 14 {
		t.Fatalf("target: %d keys, %d secrets, revision %d", in.LiveKeys, in.LiveSecrets, in.Revision)
	}
}

// TestRestorePlanListsFindingsBounded: a plan keeps the first findings of
// each code and counts the others.
func TestRestorePlanListsFindingsBounded(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	ctx := context.Background()
	src, b := e.EnabledBackup("UTC")
	n := commands.MaxListedFindings + 20
	for range n {
		Must(e.KMS.CreateKey(ctx, e.Caller, src.ID, ""))
	}
	e.Advance(10 * time.Minute)
	same := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "cn-hangzhou", KeyQuota: 1000}))
	plan := Must(planRestore(t, e, RestoreReq{From: b.ID, Day: "2026-05-01", All: true, ToInstance: same.ID}))
	if len(plan.Findings) != commands.MaxListedFindings || plan.Omitted[commands.FindingKeyExists] != 20 || plan.FindingCount() != n || plan.Keys != n {
		t.Fatalf("plan of %d conflicting keys: %d findings listed, omitted %v, %d keys", n, len(plan.Findings), plan.Omitted, plan.Keys)
	}
}

// TestRestoreAtAnyInstant: --at takes any instant of a viewable day (its
// day may be left out) and restores the state of every event that occurred
// at or before it, whichever checkpoint holds them. An instant outside the
// day named is refused.
func TestRestoreAtAnyInstant(t *testing.T) {
	w := newBatchWorld(t)
	e := w.e
	cps := e.CheckpointEvents(w.b.ID)
	to := w.target(t, "eu-central-1")
	// Between the first checkpoint (09:30, the instant the items were
	// made: the second checkpoint holds them) and the second.
	between := cps[0].At.Add(2 * time.Minute)
	plan := Must(planRestore(t, e, RestoreReq{From: w.b.ID, At: between.Format(time.RFC3339), All: true, ToInstance: to}))
	if plan.Day != "2026-05-01" || !plan.At.Equal(between) || plan.Keys != 10 || plan.Secrets != 4 {
		t.Fatalf("plan at %s: day %s, state at %s, %d keys, %d secrets", between, plan.Day, plan.At, plan.Keys, plan.Secrets)
	}
	later := cps[len(cps)-1].At.Add(time.Minute)
	plan = Must(planRestore(t, e, RestoreReq{From: w.b.ID, Day: w.day, At: later.Format(time.RFC3339), All: true, ToInstance: to}))
	if !plan.At.Equal(cps[len(cps)-1].At) || plan.Keys != 10 || plan.Secrets != 4 { // the data goes no further yet
		t.Fatalf("plan at %s: state at %s, %d keys, %d secrets", later, plan.At, plan.Keys, plan.Secrets)
	}
	_, err := planRestore(t, e, RestoreReq{From: w.b.ID, Day: "2026-05-02", At: later.Format(time.RFC3339), All: true, ToInstance: to})
	if !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("an instant outside its day: %v", err)
	}
}
