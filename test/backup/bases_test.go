package backup

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/dayview"
)

// baseRecords reads a backup's BackupBaseStored events from the log.
func (e *Engine) baseRecords(id domain.BackupID) []*domain.BackupBaseStored {
	e.t.Helper()
	var out []*domain.BackupBaseStored
	for from := uint64(0); ; {
		page := Must(e.Store.ReadStream(context.Background(), domain.BackupStream(id), from, false, 1000))
		for _, ev := range page {
			from = ev.Revision + 1
			if ev.Type == domain.TypeBackupBaseStored {
				out = append(out, Must(ev.Decode()).(*domain.BackupBaseStored))
			}
		}
		if len(page) < 1000 {
			return out
		}
	}
}

// TestFirstCheckpointIsBase0: enabling a backup writes the instance's
// history as base 0, in parts that hold whole items and do not overlap,
// recorded with the first checkpoint (held by it, no slice); the first
// day lists it, restores from it, and it verifies clean.
func TestFirstCheckpointIsBase0(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	e := NewEngine(t, start)
	e.Storage.BasePartBytes = 1 << 10
	in := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "cn-hangzhou"}))
	var keys []domain.KeyID
	for i := range 40 {
		keys = append(keys, Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, fmt.Sprint("key ", i))).ID)
	}
	for _, k := range keys[:10] {
		Must(e.KMS.RotateKey(ctx, e.Caller, k, ""))
	}
	for i := range 5 {
		Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: fmt.Sprint("s", i), Instance: in.ID, Key: keys[i], Value: domain.Plaintext("v")}))
	}
	if err := e.KMS.DeleteKey(ctx, e.Caller, keys[39], ""); err != nil {
		t.Fatal(err)
	}
	b := Must(e.Backups.CreateBackupInstance(ctx, e.Caller, commands.CreateBackupInput{Region: "cn-hangzhou", ViewableDays: 30, Term: "1y"}))
	b = Must(e.Backups.EnableBackupInstance(ctx, e.Caller, b.ID, commands.EnableInput{KMSInstance: in.ID, Alias: "prod", TimeZone: "UTC"}))
	cps := e.CheckpointEvents(b.ID)
	bases := e.baseRecords(b.ID)
	if len(cps) != 1 || !cps[0].InBase || len(cps[0].SliceParts()) != 0 || len(bases) != 1 {
		t.Fatalf("first checkpoint %+v, bases %d", cps[0], len(bases))
	}
	base := bases[0]
	if base.Seq != 1 || base.Items != 39+5 || base.Versions != 39+10+5 || base.CheckpointDigest != cps[0].Digest || len(base.Parts) < 3 {
		t.Fatalf("base 0: seq %d, %d items, %d versions, %d parts", base.Seq, base.Items, base.Versions, len(base.Parts))
	}
	var items, versions uint64
	for i, p := range base.Parts {
		items, versions = items+p.Items, versions+p.Versions
		if bytes.Compare(p.First, p.Last) > 0 || (i > 0 && bytes.Compare(p.First, base.Parts[i-1].Last) <= 0) {
			t.Fatalf("part %d [%q, %q] overlaps or is out of order", i, p.First, p.Last)
		}
		if rec, err := dayview.ParseKey(p.First); err != nil || !rec.IsRow() {
			t.Fatalf("part %d starts at %q, not at an item's row", i, p.First)
		}
	}
	if items != base.Items || versions != base.Versions {
		t.Fatalf("the parts hold %d items and %d versions, the base %d and %d", items, versions, base.Items, base.Versions)
	}
	if b.Bases != 1 || b.BaseSeq != 1 || b.BaseRecords != base.Items+base.Versions {
		t.Fatalf("the backup instance shows base %d at %d of %d records", b.Bases, b.BaseSeq, b.BaseRecords)
	}

	day := "2026-05-01"
	if got := len(tabItems(t, e, b.ID, day, backupdata.FullKeys)); got != 39 {
		t.Fatalf("full keys: %d", got)
	}
	if got := tabItems(t, e, b.ID, day, backupdata.FullSecrets); len(got) != 5 || got[0].KeyID != string(keys[0]) {
		t.Fatalf("full secrets: %+v", got)
	}
	if got := tabItems(t, e, b.ID, day, backupdata.Deleted); len(got) != 0 {
		t.Fatalf("a key deleted before enabling is listed: %+v", got)
	}
	rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID))
	if len(rep.Findings) > 0 || rep.Sealed != 49 {
		t.Fatalf("verify: %d key versions opened, findings %+v", rep.Sealed, rep.Findings)
	}
	e.Advance(7 * time.Minute)
	target := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "eu-central-1"}))
	res := Must(restore(t, e, RestoreReq{From: b.ID, Day: day, All: true, ToInstance: target.ID}))
	if !res.Applied || res.Restored != 44 || len(res.Validation) > 0 {
		t.Fatalf("restore: %+v", res)
	}
	want := logState(t, e, in.ID, cps[0].Next)
	if got := instanceState(t, e, target.ID); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored %v, want %v", got, want)
	}

	// A part gone, or changed, is found.
	data := Must(e.Store.GetBlob(ctx, b.DataRef(), base.Parts[1].Name))
	if err := e.Store.DeleteBlob(ctx, b.DataRef(), base.Parts[1].Name); err != nil {
		t.Fatal(err)
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID)); !hasFinding(rep, commands.FindingMissingSlice, 1) {
		t.Fatalf("verify without a base part: %+v", rep.Findings)
	}
	data[len(data)/2] ^= 0x40
	if err := e.Store.PutBlob(ctx, b.DataRef(), base.Parts[1].Name, data); err != nil {
		t.Fatal(err)
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID)); !hasFinding(rep, commands.FindingChecksum, 1) {
		t.Fatalf("verify with a changed base part: %+v", rep.Findings)
	}
}

func hasFinding(rep *commands.VerifyReport, kind string, seq uint64) bool {
	for _, f := range rep.Findings {
		if f.Kind == kind && f.Seq == seq {
			return true
		}
	}
	return false
}
