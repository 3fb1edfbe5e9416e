package backup

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// partedEngine is an engine whose slices are cut into parts of 2 KiB.
func partedEngine(t *testing.T, start time.Time) *Engine {
	t.Helper()
	e := NewEngine(t, start)
	e.configure(func(e *Engine) { e.Storage.SlicePartBytes = 2 << 10 })
	return e
}

// TestSlicesInParts: a checkpoint whose slice does not fit in one part is
// stored in several, listed in order in its record; the backup verifies
// clean, replays the log's state, and a day of it downloads and uploads
// back with the same lists.
func TestSlicesInParts(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	e := partedEngine(t, start)
	in, b := e.EnabledBackup("UTC")
	var keys []domain.KeyID
	for i := range 60 {
		keys = append(keys, Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, fmt.Sprint("key ", i))).ID)
	}
	for i := range 20 {
		Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: fmt.Sprint("s", i), Instance: in.ID,
			Key: keys[i], Value: domain.Plaintext("v")}))
	}
	for _, k := range keys[:30] {
		Must(e.KMS.RotateKey(ctx, e.Caller, k, ""))
	}
	e.Advance(6 * time.Minute)
	cps := e.CheckpointEvents(b.ID)
	last := cps[len(cps)-1]
	if err := e.KMS.DeleteKey(ctx, e.Caller, keys[59], ""); err != nil {
		t.Fatal(err)
	}
	e.Advance(5 * time.Minute)
	if len(last.Parts) < 3 || last.Slice != "" {
		t.Fatalf("a slice of %d events is in %d parts (blob %q)", last.Next-last.From, len(last.Parts), last.Slice)
	}
	for i, p := range last.Parts {
		if (i == 0 && p.From != last.From) || (i > 0 && p.From != last.Parts[i-1].Next) || p.Events != p.Next-p.From {
			t.Fatalf("part %d: %+v follows %+v", i, p, last.Parts[max(i-1, 0)])
		}
	}
	if last.Parts[len(last.Parts)-1].Next != last.Next {
		t.Fatalf("the parts end at %d, the checkpoint at %d", last.Parts[len(last.Parts)-1].Next, last.Next)
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID)); len(rep.Findings) > 0 || rep.Sealed < 60+30 {
		t.Fatalf("verify: %d key versions, findings %+v", rep.Sealed, rep.Findings)
	}
	day := string(domain.DayOf(start, time.UTC))
	target := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "eu-central-1"}))
	res := Must(restore(t, e, RestoreReq{From: b.ID, Day: day, All: true, ToInstance: target.ID}))
	if !res.Applied || len(res.Validation) > 0 {
		t.Fatalf("restore: %+v", res)
	}
	// The whole day: the key deleted after it as it stood just before.
	want := logState(t, e, in.ID, last.Next)
	if diff := cmp.Diff(want, instanceState(t, e, target.ID)); diff != "" {
		t.Fatalf("restored state (-log +restored):\n%s", diff)
	}

	file, key := e.download(b.ID, day)
	up := Must(e.upload(e.Caller, file, key, "parted"))
	if n := sameDay(t, e, b.ID, day, up.ID); n == 0 {
		t.Fatal("the day is empty")
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, up.ID)); len(rep.Findings) > 0 {
		t.Fatalf("verify the upload: %+v", rep.Findings)
	}

	// A part gone is found, and named.
	if err := e.Store.DeleteBlob(ctx, b.DataRef(), last.Parts[1].Name); err != nil {
		t.Fatal(err)
	}
	rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID))
	if len(rep.Findings) != 1 || rep.Findings[0].Kind != commands.FindingMissingSlice || rep.Findings[0].Seq != last.Seq {
		t.Fatalf("verify without part 1: %+v", rep.Findings)
	}
}
