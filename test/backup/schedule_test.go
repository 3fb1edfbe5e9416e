package backup

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// chainOK checks that checkpoints form a gap-free, overlap-free chain.
func chainOK(t *testing.T, cps []*domain.BackupCheckpointed) {
	t.Helper()
	for i, c := range cps {
		if c.Seq != uint64(i+1) {
			t.Fatalf("checkpoint %d has seq %d", i, c.Seq)
		}
		if i > 0 {
			p := cps[i-1]
			if c.From != p.Next || c.PrevDigest != p.Digest || c.At.Before(p.At) {
				t.Fatalf("checkpoint %d does not follow %d: from %d (prev next %d), at %s (prev %s)", c.Seq, p.Seq, c.From, p.Next, c.At, p.At)
			}
		}
	}
}

func count(cps []*domain.BackupCheckpointed) (fulls []time.Time, incs int) {
	for _, c := range cps {
		if c.Full {
			fulls = append(fulls, c.At)
		} else {
			incs++
		}
	}
	return fulls, incs
}

// Test48Hours: 48 hours of a running engine give the first full, exactly two
// daily fulls and an incremental every 5 minutes between them, holding
// exactly the events of their 5 minutes.
func Test48Hours(t *testing.T) {
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	e := NewEngine(t, start)
	in, b := e.EnabledBackup("UTC")
	ctx := context.Background()
	// A key every 7 minutes for the first two hours, so slices hold events.
	for i := range 17 {
		e.Advance(7 * time.Minute)
		if _, err := e.KMS.CreateKey(ctx, e.Caller, in.ID, fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	e.Advance(48*time.Hour - 17*7*time.Minute)
	cps := e.CheckpointEvents(b.ID)
	chainOK(t, cps)
	fulls, incs := count(cps)
	want := []time.Time{start, time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 5, 3, 0, 0, 0, 0, time.UTC)}
	if len(fulls) != 3 || !fulls[0].Equal(want[0]) || !fulls[1].Equal(want[1]) || !fulls[2].Equal(want[2]) {
		t.Fatalf("fulls at %v, want %v", fulls, want)
	}
	if wantIncs := 173 + 287 + 114; incs != wantIncs {
		t.Fatalf("%d incrementals, want %d", incs, wantIncs)
	}
	for i, c := range cps[1:] {
		if d := c.At.Sub(cps[i].At); !c.Full && d != 5*time.Minute {
			t.Fatalf("incremental %d comes %s after the previous checkpoint", c.Seq, d)
		}
	}
	// Every KMS event is in exactly one slice: the last checkpoint covers
	// the whole stream (instance created + 17 keys).
	if last := cps[len(cps)-1]; last.Next != 18 {
		t.Fatalf("chain covers revisions up to %d, want 18", last.Next)
	}
	rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID))
	if len(rep.Findings) != 0 || rep.Checkpoints != len(cps) || rep.Sealed != 17 {
		t.Fatalf("verify: %+v", rep)
	}
}

// TestTimeZoneMovesFulls: fulls happen at midnight in the instance's zone.
func TestTimeZoneMovesFulls(t *testing.T) {
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	e := NewEngine(t, start)
	_, b := e.EnabledBackup("Asia/Shanghai")
	e.Advance(24 * time.Hour)
	fulls, _ := count(e.CheckpointEvents(b.ID))
	// 00:00 in Shanghai is 16:00 UTC.
	if len(fulls) != 2 || !fulls[1].Equal(time.Date(2026, 5, 1, 16, 0, 0, 0, time.UTC)) {
		t.Fatalf("fulls at %v, want the second at 16:00 UTC", fulls)
	}
}

// TestDowntimeAcrossMidnight: an engine down from 23:50 to 00:20 catches up
// with today's missed full, covering everything, with no gap and no
// duplicate.
func TestDowntimeAcrossMidnight(t *testing.T) {
	start := time.Date(2026, 5, 1, 23, 0, 0, 0, time.UTC)
	e := NewEngine(t, start)
	in, b := e.EnabledBackup("UTC")
	ctx := context.Background()
	e.Advance(50 * time.Minute) // up to 23:50, incrementals every 5 minutes
	before := e.CheckpointEvents(b.ID)
	e.Close()
	// Down for 30 minutes; the KMS is down with it, so nothing new happens.
	e.Clock.Set(time.Date(2026, 5, 2, 0, 20, 0, 0, time.UTC))
	e.open()
	n := Must(e.Driver.Start(ctx))
	if n != 1 {
		t.Fatalf("catch-up did %d pieces of work, want 1", n)
	}
	if _, err := e.KMS.CreateKey(ctx, e.Caller, in.ID, "after"); err != nil {
		t.Fatal(err)
	}
	e.Advance(10 * time.Minute)
	cps := e.CheckpointEvents(b.ID)
	chainOK(t, cps)
	caught := cps[len(before)]
	if !caught.Full || !caught.At.Equal(time.Date(2026, 5, 2, 0, 20, 0, 0, time.UTC)) || caught.Day != "2026-05-02" {
		t.Fatalf("catch-up checkpoint %+v", caught)
	}
	if len(cps) != len(before)+3 || cps[len(cps)-1].Next != 2 {
		t.Fatalf("after catch-up: %d checkpoints (before %d), covering up to %d", len(cps), len(before), cps[len(cps)-1].Next)
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID)); len(rep.Findings) != 0 {
		t.Fatalf("verify: %+v", rep.Findings)
	}
}
