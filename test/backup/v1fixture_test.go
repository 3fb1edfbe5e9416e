package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// v1Fixture describes testdata/v1-datadir.tar.gz: a data directory written
// by the code of the first generation of backups (slices of codec v1 in one
// blob per checkpoint, no bases, a backupdata projection holding every
// version), and what that code answered about it, for the migration test.
type v1Fixture struct {
	Master   string // hex
	Account  domain.AccountID
	Now      time.Time // the clock when the directory was closed
	Instance domain.InstanceID
	Backup   domain.BackupID // enabled, Asia/Shanghai, with a catch-up after downtime
	Reset    domain.BackupID // reset once, enabled again (generation 1)
	Upload   domain.BackupID // an upload of one day of Backup
	Deleted  domain.KeyID    // a key deleted on a viewable day
	// Per backup ID: its days with data and, per day, what the lists, the
	// replay and the plan of a whole restore gave.
	Days map[domain.BackupID][]v1Day
}

type v1Day struct {
	Day         domain.Day
	Tabs        map[backupdata.Tab][]backupdata.Item
	Replay      string // Restores.Replay's digest of the day
	Checkpoints []commands.DayCheckpoint
	AtReplays   map[string]string // RFC 3339 checkpoint instant -> Replay's digest at it
	Plan        []string          // planItems of a whole restore
}

// TestWriteV1Fixture writes testdata/v1-datadir.tar.gz when
// KMSBACKUP_WRITE_V1_FIXTURE names the file to write. It was run once, on
// the code of the first generation (commit 4b3b428), to make the directory
// the migration test opens: run on later code it would write that code's
// formats instead.
func TestWriteV1Fixture(t *testing.T) {
	out := os.Getenv("KMSBACKUP_WRITE_V1_FIXTURE")
	if out == "" {
		t.Skip("set KMSBACKUP_WRITE_V1_FIXTURE to the file to write")
	}
	ctx := context.Background()
	dir := t.TempDir()
	master := make([]byte, 32)
	for i := range master {
		master[i] = byte(7*i + 1)
	}
	account := domain.AccountID("acct_01KMSBACKVP1F1XTVRE0000000")
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC) // 17:30 in Shanghai
	e := newEngineAt(t, dir, master, account, start)
	fx := v1Fixture{Master: hex.EncodeToString(master), Account: account, Days: map[domain.BackupID][]v1Day{}}

	in := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "cn-hangzhou"}))
	fx.Instance = in.ID
	k1 := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "payments"))
	k2 := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "orders"))
	k3 := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "gone before enabling"))
	Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: "db-password", Instance: in.ID, Key: k1.ID, Value: domain.Plaintext("v1")}))
	Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: "tmp", Instance: in.ID, Key: k1.ID, Value: domain.Plaintext("t")}))
	Must(e.KMS.RotateKey(ctx, e.Caller, k1.ID, ""))
	if err := e.KMS.DeleteSecret(ctx, e.Caller, "tmp", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.KMS.DeleteKey(ctx, e.Caller, k3.ID, ""); err != nil {
		t.Fatal(err)
	}
	e.Advance(time.Minute)
	b := Must(e.Backups.CreateBackupInstance(ctx, e.Caller, commands.CreateBackupInput{Region: "cn-hangzhou", ViewableDays: 30, Term: "1y"}))
	b = Must(e.Backups.EnableBackupInstance(ctx, e.Caller, b.ID, commands.EnableInput{KMSInstance: in.ID, Alias: "prod", TimeZone: "Asia/Shanghai"}))
	fx.Backup = b.ID

	e.Advance(12 * time.Minute)
	Must(e.KMS.RotateKey(ctx, e.Caller, k2.ID, ""))
	Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: "api-token", Instance: in.ID, Key: k2.ID, Value: domain.Plaintext("s3cret")}))
	Must(e.KMS.RotateSecret(ctx, e.Caller, "db-password", "", domain.Plaintext("v2")))
	e.Advance(7 * time.Hour) // past midnight in Shanghai: the full of 2026-05-02
	k4 := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "short-lived"))
	e.Advance(3 * time.Minute)
	if err := e.KMS.DeleteKey(ctx, e.Caller, k4.ID, ""); err != nil {
		t.Fatal(err)
	}
	fx.Deleted = k4.ID
	Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: "rotating", Instance: in.ID, Key: k1.ID, Value: domain.Plaintext("r1")}))
	e.Advance(20 * time.Minute)
	if err := e.KMS.DeleteSecret(ctx, e.Caller, "rotating", ""); err != nil {
		t.Fatal(err)
	}
	Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: "rotating", Instance: in.ID, Key: k2.ID, Value: domain.Plaintext("r2")}))
	Must(e.KMS.RotateKey(ctx, e.Caller, k1.ID, ""))
	// To 23:57 of 2026-05-02 in Shanghai (15:57Z); a change, then the
	// engine is down over midnight: the catch-up full at 00:33 holds it.
	e.Advance(time.Date(2026, 5, 2, 15, 57, 0, 0, time.UTC).Sub(e.Clock.Now()))
	Must(e.KMS.RotateSecret(ctx, e.Caller, "api-token", "", domain.Plaintext("s3cret-2")))
	e.DownUntil(time.Date(2026, 5, 2, 16, 33, 0, 0, time.UTC))
	Must(e.KMS.RotateKey(ctx, e.Caller, k2.ID, ""))
	e.Advance(26 * time.Hour)

	// A second backup instance, reset once and enabled again.
	in2 := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "cn-hangzhou"}))
	k5 := Must(e.KMS.CreateKey(ctx, e.Caller, in2.ID, "second"))
	r := Must(e.Backups.CreateBackupInstance(ctx, e.Caller, commands.CreateBackupInput{Region: "cn-hangzhou", ViewableDays: 30, Term: "1y"}))
	Must(e.Backups.EnableBackupInstance(ctx, e.Caller, r.ID, commands.EnableInput{KMSInstance: in2.ID, Alias: "second", TimeZone: "UTC"}))
	e.Advance(11 * time.Minute)
	Must(e.Backups.ResetBackupInstance(ctx, e.Caller, r.ID, true))
	Must(e.KMS.RotateKey(ctx, e.Caller, k5.ID, ""))
	Must(e.Backups.EnableBackupInstance(ctx, e.Caller, r.ID, commands.EnableInput{KMSInstance: in2.ID, Alias: "second again", TimeZone: "UTC"}))
	fx.Reset = r.ID
	e.Advance(2 * time.Hour)

	// An upload of the day with the deletion.
	file, key := e.download(b.ID, "2026-05-02")
	up := Must(e.upload(e.Caller, file, key, "prod, 2 May"))
	fx.Upload = up.ID
	e.Advance(30 * time.Minute)

	for _, id := range []domain.BackupID{fx.Backup, fx.Reset, fx.Upload} {
		if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, id)); len(rep.Findings) > 0 {
			t.Fatalf("verify %s: %+v", id, rep.Findings)
		}
		fx.Days[id] = v1Days(t, e, id)
	}
	fx.Now = e.Clock.Now()
	e.Close()

	raw, err := json.MarshalIndent(fx, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fixture.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeTarGz(out, dir); err != nil {
		t.Fatal(err)
	}
}

// v1Days records what e answers about every day of backup id with data.
func v1Days(t *testing.T, e *Engine, id domain.BackupID) []v1Day {
	t.Helper()
	ctx := context.Background()
	b := Must(e.Backups.ShowBackupInstance(e.Caller, id))
	var days []domain.Day
	if b.Kind == domain.BackupUpload {
		days = []domain.Day{b.UploadDay}
	} else {
		days = Must(e.Days.ListViewableDays(e.Caller, id))
	}
	var out []v1Day
	for _, d := range days {
		day := string(d)
		if b.Kind == domain.BackupUpload {
			day = ""
		}
		cps := Must(e.Days.ListDayCheckpoints(e.Caller, id, day))
		if len(cps) == 0 {
			continue
		}
		v := v1Day{Day: d, Tabs: map[backupdata.Tab][]backupdata.Item{}, Checkpoints: cps, AtReplays: map[string]string{}}
		for _, tab := range backupdata.Tabs {
			v.Tabs[tab] = tabItems(t, e, id, day, tab)
		}
		v.Replay = Must(e.Restores.Replay(ctx, e.Caller, id, d, time.Time{})).Digest
		for _, cp := range cps {
			at := cp.At.Format(time.RFC3339)
			v.AtReplays[at] = Must(e.Restores.Replay(ctx, e.Caller, id, d, cp.At)).Digest
		}
		target := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "eu-central-1"}))
		v.Plan = planItems(t, e, RestoreReq{From: id, Day: day, All: true, ToInstance: target.ID})
		out = append(out, v)
	}
	return out
}

// writeTarGz writes the files under dir to a gzipped tar at out.
func writeTarGz(out, dir string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o600, Size: info.Size(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
