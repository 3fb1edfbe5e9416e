package backup

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// sourceReleasedEvents reads the BackupSourceReleased events of a backup.
func (e *Engine) sourceReleasedEvents(id domain.BackupID) []*domain.BackupSourceReleased {
	e.t.Helper()
	var out []*domain.BackupSourceReleased
	for _, ev := range Must(e.Store.ReadStream(context.Background(), domain.BackupStream(id), 0, false, 100000)) {
		if ev.Type == domain.TypeSourceReleased {
			out = append(out, Must(ev.Decode()).(*domain.BackupSourceReleased))
		}
	}
	return out
}

// provisioned1mo creates a KMS instance with a key and a secret of that
// name, and a provisioned backup instance with a 1-month term bound to it.
func (e *Engine) provisioned1mo(c commands.Caller, secret string) (*domain.Instance, *domain.Key, *domain.Backup) {
	e.t.Helper()
	return e.provisioned1moEnabledBefore(c, secret, 0)
}

// provisioned1moEnabledBefore is provisioned1mo, with the backup instance
// enabled only that long before its expiry (0: at once): the clock gets
// there without a month of checkpoints to take.
func (e *Engine) provisioned1moEnabledBefore(c commands.Caller, secret string, before time.Duration) (*domain.Instance, *domain.Key, *domain.Backup) {
	e.t.Helper()
	ctx := context.Background()
	in := Must(e.KMS.CreateInstance(ctx, c, commands.CreateInstanceInput{Region: "cn-hangzhou"}))
	k := Must(e.KMS.CreateKey(ctx, c, in.ID, "k1"))
	Must(e.KMS.CreateSecret(ctx, c, commands.CreateSecretInput{Name: secret, Instance: in.ID, Key: k.ID, Value: domain.Plaintext("v1")}))
	b := Must(e.Backups.CreateBackupInstance(ctx, c, commands.CreateBackupInput{Region: "cn-hangzhou", ViewableDays: 60, Term: "1mo"}))
	if before > 0 {
		e.Advance(b.ExpiresAt.Add(-before).Sub(e.Clock.Now()))
	}
	b = Must(e.Backups.EnableBackupInstance(ctx, c, b.ID, commands.EnableInput{KMSInstance: in.ID, Alias: "prod", TimeZone: "UTC"}))
	return in, k, b
}

// rotatedSinceLastCheckpoint is provisioned1mo 7 minutes on, with its key
// rotated since the last checkpoint (09:35).
func (e *Engine) rotatedSinceLastCheckpoint() (*domain.Instance, *domain.Key, *domain.Backup) {
	e.t.Helper()
	in, k1, b := e.provisioned1mo(e.Caller, "s1")
	e.Advance(7 * time.Minute)
	Must(e.KMS.RotateKey(context.Background(), e.Caller, k1.ID, ""))
	return in, k1, b
}

// restoreKeyAndSecret restores k1 and s1 of backup b's day into a fresh
// instance of another region and reads the secret back.
func (e *Engine) restoreKeyAndSecret(b domain.BackupID, day string, k domain.KeyID) {
	t := e.t
	t.Helper()
	ctx := context.Background()
	to := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "eu-central-1"}))
	res := Must(restore(t, e, RestoreReq{From: b, Day: day,
		Keys: []string{string(k)}, Secrets: []string{"s1"}, ToInstance: to.ID}))
	if !res.Applied || res.Restored != 2 || len(res.Validation) != 0 {
		t.Fatalf("restore from %s: applied %v, restored %d, findings %+v, validation %+v", day, res.Applied, res.Restored, res.Plan.Findings, res.Validation)
	}
	v := Must(e.KMS.GetSecretValue(ctx, e.Caller, "s1", "eu-central-1", 0))
	if string(v.Value) != "v1" {
		t.Fatal("the restored secret does not read back")
	}
}

// TestRenewedAfterItsKMSInstanceWasReleased is the case found from outside:
// a provisioned backup instance expires, its KMS instance is released, and
// the backup instance is renewed. Its next checkpoint used to open the
// events recorded after its expiry under the destroyed data key of the
// released instance, and failed, blocking every backup of every account.
// Now the release is recorded in the backup instance's stream; the renewed
// instance copies nothing more, keeps its data viewable and restorable, and
// says what it never backed up.
func TestRenewedAfterItsKMSInstanceWasReleased(t *testing.T) {
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	e := NewEngine(t, start)
	ctx := context.Background()
	in, k1, b := e.provisioned1moEnabledBefore(e.Caller, "s1", time.Hour) // enabled 2026-06-01T08:30Z
	e.Advance(2 * time.Hour)                                              // past the expiry at 09:30
	if got := Must(e.Backups.ShowBackupInstance(e.Caller, b.ID)); got.State != domain.StateExpired {
		t.Fatalf("state %s, want expired", got.State)
	}
	Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "after expiry"))
	e.Advance(24 * time.Hour)
	before := e.CheckpointEvents(b.ID)

	Must(e.KMS.ReleaseInstance(ctx, e.Caller, in.ID))
	marks := e.sourceReleasedEvents(b.ID)
	last := before[len(before)-1]
	if len(marks) != 1 || marks[0].Next != last.Next || marks[0].End != last.Next+2 {
		t.Fatalf("source released: %+v; the chain covers up to %d", marks, last.Next)
	}

	renewedAt := e.Clock.Now()
	Must(e.Backups.RenewBackupInstance(ctx, e.Caller, b.ID, "1mo"))
	e.Advance(48 * time.Hour) // used to fail: no data key

	got := Must(e.Backups.ShowBackupInstance(e.Caller, b.ID))
	if got.State != domain.StateEnabled || got.Failing.Active() {
		t.Fatalf("after renewal: state %s, failing %+v", got.State, got.Failing)
	}
	if sr := got.SourceReleased; !sr.Recorded() || sr.NeverBackedUp() != 2 || sr.Next != last.Next {
		t.Fatalf("source released %+v, want 2 events never backed up after revision %d", sr, last.Next)
	}
	// After the renewal: one catch-up full at it, then the full of each day,
	// none of them copying anything.
	after := e.CheckpointEvents(b.ID)[len(before):]
	want := []time.Time{renewedAt, time.Date(2026, 6, 3, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 4, 0, 0, 0, 0, time.UTC)}
	if len(after) != len(want) {
		t.Fatalf("%d checkpoints after the renewal, want %d: %+v", len(after), len(want), after)
	}
	for i, c := range after {
		if !c.Full || !c.At.Equal(want[i]) || c.From != last.Next || c.Next != last.Next || len(c.SliceParts()) > 0 {
			t.Fatalf("checkpoint %d after the renewal: %+v, want an empty full at %s", i, c, want[i])
		}
	}
	chainOK(t, e.CheckpointEvents(b.ID))
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID)); len(rep.Findings) != 0 {
		t.Fatalf("verify: %+v", rep.Findings)
	}
	// What it holds stays viewable and restorable: the first day, and a day
	// after the release.
	keys := Must(e.Days.ListDayData(e.Caller, b.ID, "2026-06-01", "full-keys", "", 100))
	if len(keys.Items) != 1 || keys.Items[0].ID != string(k1.ID) {
		t.Fatalf("full keys of 2026-06-01: %+v", keys.Items)
	}
	e.restoreKeyAndSecret(b.ID, "2026-06-03", k1.ID)
}

// TestReleaseOfAnEnabledBackupsInstance: released while its backup instance
// is enabled, a KMS instance is backed up to its last event first, then the
// backup instance records the release and from then on takes only its
// daily full, with nothing lost.
func TestReleaseOfAnEnabledBackupsInstance(t *testing.T) {
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	e := NewEngine(t, start)
	ctx := context.Background()
	in, k1, b := e.rotatedSinceLastCheckpoint()
	Must(e.KMS.ReleaseInstance(ctx, e.Caller, in.ID))
	released := e.Clock.Now()
	e.Advance(48 * time.Hour)

	got := Must(e.Backups.ShowBackupInstance(e.Caller, b.ID))
	end := Must(e.Store.ReadStream(ctx, domain.KMSStream(in.ID), 0, false, 1000))
	if sr := got.SourceReleased; !sr.Recorded() || sr.NeverBackedUp() != 0 || sr.End != uint64(len(end)) {
		t.Fatalf("source released %+v, want everything of its %d events backed up", sr, len(end))
	}
	cps := e.CheckpointEvents(b.ID)
	chainOK(t, cps)
	// Full at enable, the incremental at 09:35, the final checkpoint at the
	// release, then the fulls of 2 and 3 May only.
	var ats []time.Time
	for _, c := range cps {
		ats = append(ats, c.At)
	}
	want := []time.Time{start, start.Add(5 * time.Minute), released,
		time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 5, 3, 0, 0, 0, 0, time.UTC)}
	if len(ats) != len(want) {
		t.Fatalf("checkpoints at %v, want %v", ats, want)
	}
	for i := range want {
		if !ats[i].Equal(want[i]) {
			t.Fatalf("checkpoints at %v, want %v", ats, want)
		}
	}
	if cps[2].Next != uint64(len(end)) {
		t.Fatalf("the final checkpoint covers up to %d, want the whole stream (%d)", cps[2].Next, len(end))
	}
	// The rotation (version 2) made before the release is in the backup.
	keys := Must(e.Days.ListDayData(e.Caller, b.ID, "2026-05-03", "full-keys", "", 100))
	if len(keys.Items) != 1 || keys.Items[0].Versions != 2 {
		t.Fatalf("full keys of 2026-05-03: %+v", keys.Items)
	}
	e.restoreKeyAndSecret(b.ID, "2026-05-03", k1.ID)
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID)); len(rep.Findings) != 0 {
		t.Fatalf("verify: %+v", rep.Findings)
	}
}

// TestSourceReleaseFinishedAfterACrash: a crash between the KMS instance's
// release and the record of it in its backup instance is finished from the
// log when the engine starts again: the last checkpoint (the data key is
// still there) and the record, so that nothing is lost; the retried release
// then destroys the key.
func TestSourceReleaseFinishedAfterACrash(t *testing.T) {
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	e := NewEngine(t, start)
	ctx := context.Background()
	in, k1, b := e.rotatedSinceLastCheckpoint()
	crash := errors.New("crashed")
	e.KMS.BeforeShred = func(context.Context, *domain.Instance) error { return crash }
	if _, err := e.KMS.ReleaseInstance(ctx, e.Caller, in.ID); !errors.Is(err, crash) {
		t.Fatalf("release: %v", err)
	}
	e.Clock.Set(e.Clock.Now().Add(time.Minute))
	e.Restart()
	cpsBefore := len(e.CheckpointEvents(b.ID))
	// The scheduler's catch-up and two retried releases at once take the
	// last checkpoint once and record the release once.
	relIn := Must(e.KMS.ShowInstance(e.Caller, in.ID))
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { _, err := e.Driver.Start(ctx); errs <- err })
	for range 2 {
		wg.Go(func() { errs <- e.Backups.MarkSourceReleased(ctx, relIn) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.CheckpointEvents(b.ID)) - cpsBefore; n != 1 {
		t.Fatalf("%d checkpoints after the restart, want the one last checkpoint", n)
	}
	got := Must(e.Backups.ShowBackupInstance(e.Caller, b.ID))
	end := uint64(len(Must(e.Store.ReadStream(ctx, domain.KMSStream(in.ID), 0, false, 1000))))
	if sr := got.SourceReleased; !sr.Recorded() || sr.NeverBackedUp() != 0 || sr.End != end || got.NextRevision != end {
		t.Fatalf("after the restart: source released %+v, backed up to %d; want everything of %d events", sr, got.NextRevision, end)
	}
	// The retried release destroys the key (and says the instance is
	// released); the backup keeps working.
	if _, err := e.KMS.ReleaseInstance(ctx, e.Caller, in.ID); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("retried release: %v", err)
	}
	e.Advance(24 * time.Hour)
	e.restoreKeyAndSecret(b.ID, "2026-05-02", k1.ID)
	if n := len(e.sourceReleasedEvents(b.ID)); n != 1 {
		t.Fatalf("%d records of the release, want 1", n)
	}
}

// TestDataDirectoryFromBeforeTheRecord: data written before the release
// was recorded in backup streams (the KMS instance released and its data
// key destroyed, with no record in its backup instance) keeps working. An
// enabled backup instance that had taken its last checkpoint is recorded
// with nothing lost; one that was expired, then renewed, is recorded with
// what it misses, and neither ever opens the destroyed key.
func TestDataDirectoryFromBeforeTheRecord(t *testing.T) {
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	e := NewEngine(t, start)
	ctx := context.Background()
	// What the release did before: a last checkpoint of an enabled backup
	// instance, nothing for an expired one, then the key destroyed.
	e.KMS.BeforeShred = func(ctx context.Context, in *domain.Instance) error {
		id, ok := Must2(backupstate.BoundTo(e.Proj, in.ID))
		if b := Must(e.Backups.ShowBackupInstance(e.Caller, id)); ok && b.State == domain.StateEnabled {
			_, err := e.Checkpoints.TakeCheckpoint(ctx, id, domain.Due{At: e.Clock.Now()})
			return err
		}
		return nil
	}
	expiring, k1, renewed := e.provisioned1moEnabledBefore(e.Caller, "s1", time.Hour)
	e.Advance(2 * time.Hour)
	Must(e.KMS.CreateKey(ctx, e.Caller, expiring.ID, "after expiry"))
	enabledIn, _, enabled := e.provisioned1mo(e.Caller, "s2")
	Must(e.KMS.CreateKey(ctx, e.Caller, enabledIn.ID, "k2"))
	e.Advance(3 * time.Minute)
	Must(e.KMS.ReleaseInstance(ctx, e.Caller, expiring.ID))
	Must(e.KMS.ReleaseInstance(ctx, e.Caller, enabledIn.ID))
	if len(e.sourceReleasedEvents(renewed.ID))+len(e.sourceReleasedEvents(enabled.ID)) != 0 {
		t.Fatal("the old release recorded something")
	}

	Must(e.Backups.RenewBackupInstance(ctx, e.Caller, renewed.ID, "1mo"))

	// Today's engine on that data: the renewed instance is enabled again,
	// so it tries a last checkpoint, finds the key destroyed, and records
	// what it misses.
	e.Restart()
	if _, err := e.Driver.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.Advance(24 * time.Hour)
	for _, c := range []struct {
		id   domain.BackupID
		lost uint64
	}{{renewed.ID, 2}, {enabled.ID, 0}} {
		b := Must(e.Backups.ShowBackupInstance(e.Caller, c.id))
		if b.State != domain.StateEnabled || b.Failing.Active() || !b.SourceReleased.Recorded() || b.SourceReleased.NeverBackedUp() != c.lost {
			t.Fatalf("%s: state %s, failing %+v, source released %+v; want %d events never backed up", c.id, b.State, b.Failing, b.SourceReleased, c.lost)
		}
		chainOK(t, e.CheckpointEvents(c.id))
	}
	e.restoreKeyAndSecret(renewed.ID, "2026-06-02", k1.ID)
}
