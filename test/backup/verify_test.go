package backup

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// verified backs up a few changes, then returns the engine, the backup and
// its last checkpoint.
func verified(t *testing.T) (*Engine, *domain.Backup, *domain.BackupCheckpointed) {
	t.Helper()
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	in, b := e.EnabledBackup("UTC")
	ctx := context.Background()
	k := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, ""))
	e.Advance(5 * time.Minute)
	Must(e.KMS.RotateKey(ctx, e.Caller, k.ID, ""))
	e.Advance(5 * time.Minute)
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID)); len(rep.Findings) != 0 || rep.Sealed != 2 {
		t.Fatalf("a clean backup has findings: %+v", rep)
	}
	b = Must(e.Backups.ShowBackupInstance(e.Caller, b.ID))
	cps := e.CheckpointEvents(b.ID)
	return e, b, cps[len(cps)-1]
}

// forge appends a checkpoint event as a faulty or malicious engine would.
func forge(t *testing.T, e *Engine, b *domain.Backup, c domain.BackupCheckpointed, redigest bool) {
	t.Helper()
	if redigest {
		c.Digest = domain.CheckpointDigest(b.ID, &c)
	}
	ev := domain.Event{ID: e.Backups.IDs.NewULID(), Stream: domain.BackupStream(b.ID), Type: c.EventType(),
		Schema: domain.SchemaVersion, OccurredAt: c.At, Account: b.Account, Region: b.Region, Instance: b.KMSInstance,
		Data: domain.EncodeData(&c)}
	if _, err := e.Store.Append(context.Background(), ev.Stream, domain.ExpectAny, []domain.Event{ev}); err != nil {
		t.Fatal(err)
	}
}

func kinds(rep *commands.VerifyReport) map[string]bool {
	out := map[string]bool{}
	for _, f := range rep.Findings {
		out[f.Kind] = true
	}
	return out
}

func TestVerifyFindings(t *testing.T) {
	next := func(last *domain.BackupCheckpointed) domain.BackupCheckpointed {
		return domain.BackupCheckpointed{Generation: last.Generation, Seq: last.Seq + 1, At: last.At.Add(5 * time.Minute),
			Day: last.Day, From: last.Next, Next: last.Next, PrevDigest: last.Digest}
	}
	cases := []struct {
		name   string
		breaks func(t *testing.T, e *Engine, b *domain.Backup, last *domain.BackupCheckpointed)
		want   string
	}{
		{"gap in the chain", func(t *testing.T, e *Engine, b *domain.Backup, last *domain.BackupCheckpointed) {
			c := next(last)
			c.Seq += 2
			forge(t, e, b, c, true)
		}, commands.FindingGap},
		{"gap in revisions", func(t *testing.T, e *Engine, b *domain.Backup, last *domain.BackupCheckpointed) {
			c := next(last)
			c.From, c.Next = last.Next+3, last.Next+3
			forge(t, e, b, c, true)
		}, commands.FindingGap},
		{"overlap", func(t *testing.T, e *Engine, b *domain.Backup, last *domain.BackupCheckpointed) {
			c := next(last)
			c.From = last.Next - 1
			forge(t, e, b, c, true)
		}, commands.FindingOverlap},
		{"reorder", func(t *testing.T, e *Engine, b *domain.Backup, last *domain.BackupCheckpointed) {
			c := next(last)
			c.Seq = last.Seq
			forge(t, e, b, c, true)
		}, commands.FindingReorder},
		{"rollback in time", func(t *testing.T, e *Engine, b *domain.Backup, last *domain.BackupCheckpointed) {
			c := next(last)
			c.At = last.At.Add(-time.Hour)
			forge(t, e, b, c, true)
		}, commands.FindingRollback},
		{"rollback in revisions", func(t *testing.T, e *Engine, b *domain.Backup, last *domain.BackupCheckpointed) {
			c := next(last)
			c.Next = c.From - 1
			forge(t, e, b, c, true)
		}, commands.FindingRollback},
		{"broken chain link", func(t *testing.T, e *Engine, b *domain.Backup, last *domain.BackupCheckpointed) {
			c := next(last)
			c.PrevDigest[0] ^= 1
			forge(t, e, b, c, true)
		}, commands.FindingTamper},
		{"tampered checkpoint", func(t *testing.T, e *Engine, b *domain.Backup, last *domain.BackupCheckpointed) {
			c := next(last)
			c.Digest = last.Digest
			forge(t, e, b, c, false)
		}, commands.FindingTamper},
		{"slice that does not match its digest", func(t *testing.T, e *Engine, b *domain.Backup, last *domain.BackupCheckpointed) {
			c := next(last)
			blob := domain.EncodeSliceV1(nil)
			if err := e.Store.PutBlob(context.Background(), b.DataRef(), "forged", blob); err != nil {
				t.Fatal(err)
			}
			c.Next, c.Slice, c.SliceDigest = c.From+1, "forged", sha256.Sum256([]byte("something else"))
			forge(t, e, b, c, true)
		}, commands.FindingChecksum},
		{"missing slices", func(t *testing.T, e *Engine, b *domain.Backup, _ *domain.BackupCheckpointed) {
			if err := e.Store.DestroyBlobs(context.Background(), b.DataRef()); err != nil {
				t.Fatal(err)
			}
		}, commands.FindingMissingSlice},
		{"undecryptable key material", func(t *testing.T, e *Engine, b *domain.Backup, _ *domain.BackupCheckpointed) {
			if err := e.Storage.DataKeys.DestroyDataKey(context.Background(), b.DataRef()); err != nil {
				t.Fatal(err)
			}
		}, commands.FindingUndecryptable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, b, last := verified(t)
			e.TolerateCorruption.Store(true)
			c.breaks(t, e, b, last)
			rep := Must(e.Checkpoints.VerifyBackup(context.Background(), e.Caller, b.ID))
			if !kinds(rep)[c.want] {
				t.Fatalf("want a %s finding, got %+v", c.want, rep.Findings)
			}
		})
	}
}
