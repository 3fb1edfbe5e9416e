package backup

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/softkms"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// appendKeys appends n KeyCreated events to instance in's stream as the
// KMS appends them (material sealed under the instance), in appends of
// 1,000, and waits for the read models.
func appendKeys(t *testing.T, e *Engine, in *domain.Instance, n int) {
	t.Helper()
	ctx := context.Background()
	stream := domain.KMSStream(in.ID)
	var batch []domain.Event
	for i := range n {
		m := Must(softkms.Cipher{}.NewKeyMaterial())
		eid := e.Backups.IDs.NewULID()
		sealed := Must(e.KMS.Sealer.Seal(ctx, string(in.ID), m, domain.AssociatedData(in.Account, stream, eid)))
		m.Wipe()
		d := &domain.KeyCreated{Key: domain.NewKeyID(e.Backups.IDs.NewULID()), Description: fmt.Sprintf("bulk %05d", i),
			Spec: domain.KeySpecAES256, Material: sealed}
		batch = append(batch, domain.Event{ID: eid, Stream: stream, Type: d.EventType(), Schema: domain.SchemaVersion,
			OccurredAt: e.Clock.Now().UTC(), Account: in.Account, Region: in.Region, Instance: in.ID, Data: domain.EncodeData(d)})
		if len(batch) == 1000 || i == n-1 {
			Must(e.Store.Append(ctx, stream, domain.ExpectAny, batch))
			batch = batch[:0]
		}
	}
	e.CaughtUp()
}

// TestLargeCheckpointThroughTheEngine: an incremental of more than 8,192
// events (9,000 keys created within five minutes) is projected in parts
// (backupdata's large checkpoint), and so is the same slice in an upload
// (appended with the upload's other events at once): the day's lists show
// every key, verify finds no damage in either, the read model is the same
// after a restart, and a restore of the uploaded day brings the keys back,
// an old ciphertext decrypting under the restored key.
func TestLargeCheckpointThroughTheEngine(t *testing.T) {
	const bulk = 9000
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	ctx := context.Background()
	in := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "cn-hangzhou", KeyQuota: domain.MaxQuota}))
	b := Must(e.Backups.CreateBackupInstance(ctx, e.Caller, commands.CreateBackupInput{Region: "cn-hangzhou", ViewableDays: 30, Term: "1y"}))
	b = Must(e.Backups.EnableBackupInstance(ctx, e.Caller, b.ID, commands.EnableInput{KMSInstance: in.ID, Alias: "bulk", TimeZone: "UTC"}))
	k := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "payments"))
	ct := Must(e.KMS.Encrypt(ctx, e.Caller, k.ID, "", domain.Plaintext("before the bulk")))
	appendKeys(t, e, in, bulk)
	Must(e.KMS.RotateKey(ctx, e.Caller, k.ID, ""))
	e.Advance(10 * time.Minute)
	e.CaughtUp()

	large := 0
	for _, cp := range e.CheckpointEvents(b.ID) {
		if cp.Next-cp.From > 8192 {
			large++
		}
	}
	if large != 1 {
		t.Fatalf("%d checkpoints of more than 8,192 events, want 1", large)
	}
	const day = "2026-05-01"
	check := func(what string, id domain.BackupID, day string) {
		t.Helper()
		if got := tabItems(t, e, id, day, backupdata.IncrementalKeys); len(got) != bulk+1 {
			t.Fatalf("%s: %d keys among the day's new keys, want %d", what, len(got), bulk+1)
		}
		if got := tabItems(t, e, id, day, backupdata.RotatedKeys); len(got) != 1 || got[0].ID != string(k.ID) || got[0].Versions != 2 {
			t.Fatalf("%s: rotated keys %+v", what, got)
		}
		if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, id)); len(rep.Findings) != 0 {
			t.Fatalf("%s: verify finds %+v", what, rep.Findings)
		}
	}
	check("the backup", b.ID, day)
	e.Restart()
	check("the backup after a restart", b.ID, day)

	file, key := e.download(b.ID, day)
	up := Must(e.upload(e.Caller, file, key, "bulk day"))
	check("the upload", up.ID, "")
	if n := sameDay(t, e, b.ID, day, up.ID); n < bulk {
		t.Fatalf("the upload's lists hold %d items", n)
	}

	to := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "eu-central-1", KeyQuota: domain.MaxQuota}))
	res := Must(restore(t, e, RestoreReq{From: up.ID, All: true, ToInstance: to.ID}))
	if !res.Applied || res.Restored != bulk+1 || len(res.Validation) != 0 {
		t.Fatalf("restore of the uploaded day: %+v", res)
	}
	pt, _ := Must2(e.KMS.Decrypt(ctx, e.Caller, ct.String(), "eu-central-1"))
	if string(pt) != "before the bulk" {
		t.Fatal("the old ciphertext does not decrypt under the restored key")
	}
}
