package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// openV1Fixture unpacks testdata/v1-datadir.tar.gz (see TestWriteV1Fixture)
// into a fresh directory and returns what it describes and the directory.
func openV1Fixture(t *testing.T) (*v1Fixture, string) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "v1-datadir.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var fx v1Fixture
	raw, err := os.ReadFile(filepath.Join(dir, "fixture.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	return &fx, dir
}

// legacyKeys counts the keys the first version of the backup data read
// model left in the read models' database (closed).
func legacyKeys(t *testing.T, dir string) (keys int, position bool) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(dir, "projections"), &pebble.Options{ReadOnly: true, Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lower := append([]byte{'P'}, backupdata.LegacyPrefix...)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: append([]byte{'P'}, "bkd0"...)})
	if err != nil {
		t.Fatal(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		keys++
	}
	_ = it.Close()
	_, closer, err := db.Get(append([]byte{'Q'}, backupdata.LegacyName...))
	if err == nil {
		position = true
		_ = closer.Close()
	}
	return keys, position
}

// TestMigrateFirstGeneration: a data directory written by the first
// generation of backups (slices of codec v1, no bases, a read model with
// every version) keeps working: the read model is rebuilt under its new
// name and the old one dropped; every list, every checkpoint of every day,
// the replayed state of every day and checkpoint, and the plan of a whole
// restore are what the first generation answered; it verifies clean; a
// day downloads and uploads back; a key deleted restores; and checkpoints
// taken since, of the new codec, follow on.
func TestMigrateFirstGeneration(t *testing.T) {
	ctx := context.Background()
	fx, dir := openV1Fixture(t)
	if n, pos := legacyKeys(t, dir); n == 0 || !pos {
		t.Fatalf("the fixture holds %d keys of the first read model (position %v)", n, pos)
	}
	master, err := hex.DecodeString(fx.Master)
	if err != nil {
		t.Fatal(err)
	}
	e := newEngineAt(t, dir, master, fx.Account, fx.Now)
	check := func(stage string) {
		t.Helper()
		for _, id := range []domain.BackupID{fx.Backup, fx.Reset, fx.Upload} {
			b := Must(e.Backups.ShowBackupInstance(e.Caller, id))
			for _, want := range fx.Days[id] {
				day := string(want.Day)
				if b.Kind == domain.BackupUpload {
					day = ""
				}
				for _, tab := range backupdata.Tabs {
					got := tabItems(t, e, id, day, tab)
					old := want.Tabs[tab]
					for i := range old {
						if i < len(got) && old[i].CreateSeq == 0 {
							// The first read model marked an incarnation whose
							// versions a later one replaced; none is replaced now.
							got[i].CreateSeq = 0
						}
					}
					if diff := cmp.Diff(old, got); diff != "" {
						t.Fatalf("%s: %s day %s tab %s (-first generation +now):\n%s", stage, id, want.Day, tab, diff)
					}
				}
				// The first generation did not name the zone of a checkpoint.
				noZone := cmpopts.IgnoreFields(commands.DayCheckpoint{}, "Zone")
				if got := Must(e.Days.ListDayCheckpoints(e.Caller, id, day)); !cmp.Equal(want.Checkpoints, got, noZone) {
					t.Fatalf("%s: %s day %s checkpoints (-first +now):\n%s", stage, id, want.Day, cmp.Diff(want.Checkpoints, got, noZone))
				}
				if got := Must(e.Restores.Replay(ctx, e.Caller, id, want.Day, time.Time{})).Digest; got != want.Replay {
					t.Fatalf("%s: %s day %s replays to another state", stage, id, want.Day)
				}
				for i, cp := range want.Checkpoints {
					// Every checkpoint that holds events, and a sample of the others.
					at := cp.At.Format(time.RFC3339)
					if i > 0 && i%23 != 0 && want.AtReplays[at] == want.AtReplays[want.Checkpoints[i-1].At.Format(time.RFC3339)] {
						continue
					}
					if got := Must(e.Restores.Replay(ctx, e.Caller, id, want.Day, cp.At)).Digest; got != want.AtReplays[at] {
						t.Fatalf("%s: %s at %s replays to another state", stage, id, at)
					}
				}
				target := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "eu-central-1"}))
				wantPlan := want.Plan
				if (id == fx.Backup || id == fx.Upload) && want.Day == "2026-05-02" {
					// The first generation left out the day's last change,
					// api-token's rotation at 23:57, which the next day's
					// catch-up full recorded (and the day's file holds);
					// the loader reads it.
					wantPlan = slices.Clone(wantPlan)
					wantPlan[slices.Index(wantPlan, "secret api-token v1")] = "secret api-token v2"
				}
				if got := planItems(t, e, RestoreReq{From: id, Day: day, All: true, ToInstance: target.ID}); !cmp.Equal(wantPlan, got) {
					t.Fatalf("%s: %s day %s plan (-first +now):\n%s", stage, id, want.Day, cmp.Diff(wantPlan, got))
				}
			}
			if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, id)); len(rep.Findings) > 0 {
				t.Fatalf("%s: verify %s: %+v", stage, id, rep.Findings)
			}
		}
	}
	check("opened")

	// The deleted key of 2 May comes back with its version, and the day
	// downloads and uploads back.
	target := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "eu-central-1"}))
	res := Must(restore(t, e, RestoreReq{From: fx.Backup, Day: "2026-05-02",
		Keys: []string{string(fx.Deleted)}, ToInstance: target.ID}))
	if !res.Applied || res.Restored != 1 || len(res.Validation) > 0 {
		t.Fatalf("restore of the deleted key: %+v", res)
	}
	file, key := e.download(fx.Backup, "2026-05-02")
	up := Must(e.upload(e.Caller, file, key, "again"))
	sameDay(t, e, fx.Backup, "2026-05-02", up.ID)

	// The first read model is gone; what answers now survives a restart.
	e.Close()
	if n, pos := legacyKeys(t, dir); n != 0 || pos {
		t.Fatalf("the first read model is still there: %d keys, position %v", n, pos)
	}
	e.open()
	check("restarted")

	// Checkpoints of the new codec follow the old ones.
	in := Must(e.KMS.ShowInstance(e.Caller, fx.Instance))
	k := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "after the migration"))
	e.Advance(26 * time.Hour)
	cps := e.CheckpointEvents(fx.Backup)
	chainOK(t, cps)
	if last := cps[len(cps)-1]; last.From == last.Next && bytes.Equal(last.Digest[:], make([]byte, 32)) {
		t.Fatal("no checkpoint since")
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, fx.Backup)); len(rep.Findings) > 0 {
		t.Fatalf("verify after new checkpoints: %+v", rep.Findings)
	}
	day := string(domain.DayOf(e.Clock.Now(), Must(time.LoadLocation("Asia/Shanghai"))))
	whole := Must(planRestore(t, e, RestoreReq{From: fx.Backup, Day: day, All: true, ToInstance: target.ID}))
	found := false
	for _, it := range whole.Items {
		found = found || it.ID == string(k.ID)
	}
	if !found {
		t.Fatalf("the key created after the migration is not in the plan of %s", day)
	}
}

// quietPebble drops Pebble's messages.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)           {}
func (quietPebble) Errorf(string, ...any)          {}
func (quietPebble) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
