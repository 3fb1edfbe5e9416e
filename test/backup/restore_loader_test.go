package backup

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// onlyItem keeps one item of a state (logState's or instanceState's).
func onlyItem(st map[string][]string, item string) map[string][]string {
	return map[string][]string{item: st[item]}
}

// restoresTo applies r into a new instance of region and checks that it
// restores n items, validates, and leaves the target holding want.
func restoresTo(t *testing.T, e *Engine, r RestoreReq, region string, n int, want map[string][]string) {
	t.Helper()
	r.ToInstance = Must(e.KMS.CreateInstance(context.Background(), e.Caller, commands.CreateInstanceInput{Region: region})).ID
	res := Must(restore(t, e, r))
	if !res.Applied || res.Restored != n || len(res.Validation) > 0 {
		t.Fatalf("restore %+v: applied %v, restored %d, findings %+v, validation %+v", r, res.Applied, res.Restored, res.Plan.Findings, res.Validation)
	}
	if diff := cmp.Diff(want, instanceState(t, e, r.ToInstance)); diff != "" {
		t.Fatalf("restore %+v (-log +restored):\n%s", r, diff)
	}
}

// TestRestoreItemBetweenCheckpoints: a key created, rotated and deleted
// within three minutes, between two checkpoints (no checkpoint ever held
// it live), restores from its day at an instant between, and from the
// whole day as it stood just before its deletion.
func TestRestoreItemBetweenCheckpoints(t *testing.T) {
	ctx := context.Background()
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	in, b := e.EnabledBackup("UTC")
	e.Advance(6 * time.Minute) // 09:36, after the checkpoint of 09:35
	k := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "short-lived"))
	e.Clock.Set(e.Clock.Now().Add(time.Minute))
	Must(e.KMS.RotateKey(ctx, e.Caller, k.ID, ""))
	between := e.Clock.Now().Add(30 * time.Second) // 09:37:30
	e.Clock.Set(e.Clock.Now().Add(2 * time.Minute))
	if err := e.KMS.DeleteKey(ctx, e.Caller, k.ID, ""); err != nil { // 09:39
		t.Fatal(err)
	}
	e.Advance(10 * time.Minute)
	item := "key/" + string(k.ID)
	want := onlyItem(logStateAt(t, e, in.ID, between), item)
	if len(want[item]) != 2 {
		t.Fatalf("the log holds %v at %s", want, between)
	}
	for i, r := range []RestoreReq{
		{From: b.ID, At: between.Format(time.RFC3339), Keys: []string{string(k.ID)}},
		{From: b.ID, Day: "2026-05-01", Keys: []string{string(k.ID)}},
	} {
		restoresTo(t, e, r, []string{"eu-central-1", "eu-west-1"}[i], 1, want)
	}
}

// TestRestoreDayWithCatchUpEvents: the last changes of a day, made before
// a downtime over midnight and recorded by the next day's catch-up full,
// are part of that day: a whole-day restore and a restore at an instant
// after them restore them.
func TestRestoreDayWithCatchUpEvents(t *testing.T) {
	ctx := context.Background()
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	in, b := e.EnabledBackup("UTC")
	k := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "late"))
	Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: "db", Instance: in.ID, Key: k.ID, Value: domain.Plaintext("v1")}))
	e.Advance(time.Date(2026, 5, 1, 23, 57, 0, 0, time.UTC).Sub(e.Clock.Now()))
	Must(e.KMS.RotateKey(ctx, e.Caller, k.ID, ""))
	Must(e.KMS.RotateSecret(ctx, e.Caller, "db", "", domain.Plaintext("v2")))
	// Down over midnight; the catch-up full of 2 May at 00:33 holds them.
	e.DownUntil(time.Date(2026, 5, 2, 0, 33, 0, 0, time.UTC))
	Must(e.KMS.RotateKey(ctx, e.Caller, k.ID, "")) // 2 May's own
	e.Advance(10 * time.Minute)
	caughtUp := false
	for _, c := range e.CheckpointEvents(b.ID) {
		if c.At.Equal(time.Date(2026, 5, 2, 0, 33, 0, 0, time.UTC)) {
			caughtUp = c.Full && c.Day == "2026-05-02" && c.Next-c.From == 2 // the two late rotations
		}
	}
	if !caughtUp {
		t.Fatal("no catch-up full at 00:33 holding the two late rotations")
	}
	endOfDay := time.Date(2026, 5, 1, 23, 59, 59, 0, time.UTC)
	want := logStateAt(t, e, in.ID, endOfDay)
	if len(want["key/"+string(k.ID)]) != 2 || len(want["secret/db"]) != 2 {
		t.Fatalf("the log holds %v at the end of 1 May", want)
	}
	for i, r := range []RestoreReq{
		{From: b.ID, Day: "2026-05-01", All: true},
		{From: b.ID, At: "2026-05-01T23:58:00Z", All: true},
	} {
		restoresTo(t, e, r, []string{"eu-central-1", "eu-west-1"}[i], 2, want)
	}
}
