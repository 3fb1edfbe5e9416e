package domain_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

// applyAt applies d to b as the next event of its stream, at instant at.
func applyAt(b *domain.Backup, at time.Time, d domain.EventData) {
	b.Apply(domain.Event{Revision: b.Revision + 1, Account: b.Account, OccurredAt: at}, d)
}

// checkpointAt takes b's checkpoint due, covering up to revision next.
func checkpointAt(t *testing.T, b *domain.Backup, due domain.Due, next uint64) *domain.BackupCheckpointed {
	t.Helper()
	c, err := b.Checkpoint(due, time.UTC, next, []domain.SlicePart{{Name: "blob", Digest: [32]byte{1}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	applyAt(b, due.At, c)
	return c
}

// boundBackup is a provisioned backup instance of kms, enabled at t0 with its
// first full covering revisions [0, 3).
func boundBackup(t *testing.T, kms domain.InstanceID) *domain.Backup {
	t.Helper()
	b := backupWith(t, provisioned(10))
	applyAt(b, t0, &domain.BackupEnabled{KMSInstance: kms, Alias: "prod", TimeZone: "UTC"})
	checkpointAt(t, b, domain.Due{At: t0, Full: true}, 3)
	return b
}

func TestMarkSourceReleased(t *testing.T) {
	kms := domain.NewInstanceID(id(1))
	released := &domain.Instance{ID: kms, Account: acct, Region: "cn-hangzhou", Released: true, Revision: 4}
	live := &domain.Instance{ID: kms, Account: acct, Region: "cn-hangzhou", Revision: 4}
	otherOne := &domain.Instance{ID: domain.NewInstanceID(id(2)), Account: acct, Region: "cn-hangzhou", Released: true, Revision: 9}

	enabled := boundBackup(t, kms)
	expired := boundBackup(t, kms)
	applyAt(expired, expired.ExpiresAt, &domain.BackupExpired{})
	marked := boundBackup(t, kms)
	applyAt(marked, t0.Add(time.Hour), &domain.BackupSourceReleased{Instance: kms, Next: 3, End: 5})
	reset := boundBackup(t, kms)
	applyAt(reset, t0.Add(time.Hour), &domain.BackupReset{})

	cases := []struct {
		name  string
		given *domain.Backup
		in    *domain.Instance
		want  *domain.BackupSourceReleased
	}{
		// An enabled instance has taken its final checkpoint (up to 3 here,
		// so revisions 3 and 4 are reported lost).
		{"enabled, bound, released", enabled, released, &domain.BackupSourceReleased{Instance: kms, Next: 3, End: 5}},
		// An expired one stopped at its expiry: the rest is never backed up.
		{"expired, bound, released", expired, released, &domain.BackupSourceReleased{Instance: kms, Next: 3, End: 5}},
		{"the KMS instance is live", enabled, live, nil},
		{"another KMS instance", enabled, otherOne, nil},
		{"recorded already", marked, released, nil},
		{"not bound any more", reset, released, nil},
		{"no instance", enabled, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := c.given.MarkSourceReleased(c.in)
			if ok != (c.want != nil) {
				t.Fatalf("decided %v (%+v), want %v", ok, got, c.want != nil)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Fatalf("event (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSourceReleasedKeepsDailyFullsOnly: once its KMS instance is released,
// a backup instance copies nothing more and takes only the daily full, so
// that the last state stays viewable and restorable every day.
func TestSourceReleasedKeepsDailyFullsOnly(t *testing.T) {
	kms := domain.NewInstanceID(id(1))
	b := boundBackup(t, kms)
	relAt := t0.Add(10 * time.Minute)
	applyAt(b, relAt, &domain.BackupSourceReleased{Instance: kms, Next: 3, End: 4})
	if !b.SourceReleased.Recorded() || b.SourceReleased.NeverBackedUp() != 1 || !b.SourceReleased.At.Equal(relAt) {
		t.Fatalf("source released: %+v", b.SourceReleased)
	}
	// A copy of anything more is refused; an empty checkpoint is not.
	due, ok := b.NextCheckpoint(time.UTC)
	if !ok || !due.Full || !due.At.Equal(time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("next checkpoint %+v %v, want the full of 2026-05-02", due, ok)
	}
	if _, err := b.Checkpoint(due, time.UTC, 4, []domain.SlicePart{{Name: "blob", Digest: [32]byte{1}}}, false); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("a copy after the release: %v", err)
	}
	fulls, incs := runSchedule(t, b, time.UTC, time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC))
	if incs != 0 || len(fulls) != 3 || !fulls[2].Equal(time.Date(2026, 5, 4, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("fulls %v, %d incrementals; want the fulls of 2, 3 and 4 May only", fulls, incs)
	}
	if b.NextRevision != 3 {
		t.Fatalf("covers up to %d, want 3", b.NextRevision)
	}
	// A reset unbinds: the record goes with the binding.
	applyAt(b, time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC), &domain.BackupReset{})
	if b.SourceReleased.Recorded() {
		t.Fatal("a reset kept the released source")
	}
}

// TestRenewalCatchesUpOnce: renewed two days after it expired, an instance
// takes one catch-up checkpoint at the renewal (the full of that day), not
// every checkpoint of the expired days.
func TestRenewalCatchesUpOnce(t *testing.T) {
	b := boundBackup(t, "kms_x")
	runSchedule(t, b, time.UTC, b.ExpiresAt)
	applyAt(b, b.ExpiresAt, &domain.BackupExpired{})
	renewedAt := b.ExpiresAt.Add(48*time.Hour + 7*time.Minute)
	r, err := b.Renew(domain.Term{Months: 1}, renewedAt)
	if err != nil {
		t.Fatal(err)
	}
	applyAt(b, renewedAt, r)
	due, ok := b.NextCheckpoint(time.UTC)
	if !ok || !due.At.Equal(renewedAt) || !due.Full {
		t.Fatalf("after renewal: next checkpoint %+v, want the full at the renewal %s", due, renewedAt)
	}
	checkpointAt(t, b, due, b.NextRevision+2)
	due, _ = b.NextCheckpoint(time.UTC)
	if due.Full || !due.At.Equal(renewedAt.Add(domain.IncrementalEvery)) {
		t.Fatalf("then %+v, want an incremental 5 minutes later", due)
	}
	// Renewed the same day it expired: the catch-up is an incremental.
	b2 := boundBackup(t, "kms_x")
	runSchedule(t, b2, time.UTC, b2.ExpiresAt)
	applyAt(b2, b2.ExpiresAt, &domain.BackupExpired{})
	applyAt(b2, b2.ExpiresAt.Add(time.Hour), &domain.BackupRenewed{ExpiresAt: b2.ExpiresAt.AddDate(0, 1, 0)})
	if due, _ := b2.NextCheckpoint(time.UTC); due.Full || !due.At.Equal(b2.ResumedAt) {
		t.Fatalf("renewed within the day: %+v", due)
	}
}

func TestFailingIsRecordedOncePerReason(t *testing.T) {
	b := boundBackup(t, "kms_x")
	at := t0.Add(5 * time.Minute)
	reason := "take backup: store slice: put blob bkp_x/0 slice-2-01KQHDZ8E047ZJ5VY4H4AEDV2J: disk full at 2026-05-01T12:05:00Z"

	// Given a healthy instance, when its work fails, then it starts failing.
	f, ok := b.Fail("incremental", reason, at, 1)
	if !ok || f.Since != at || f.Attempts != 1 || f.Reason != reason || f.Work != "incremental" {
		t.Fatalf("first failure: %+v %v", f, ok)
	}
	applyAt(b, at, f)
	if !b.Failing.Active() || b.Failing.Reason != reason {
		t.Fatalf("failing: %+v", b.Failing)
	}
	// When it fails again the same way (another generated ID, another
	// instant in the message), then nothing is recorded.
	again := "take backup: store slice: put blob bkp_x/0 slice-2-01KQHE1SVZ0T4DBGFTXQFK0H9R: disk full at 2026-05-01T12:05:10.5Z"
	if f, ok := b.Fail("incremental", again, at.Add(10*time.Second), 2); ok {
		t.Fatalf("the same failure recorded again: %+v", f)
	}
	// When it fails for another reason, then that is recorded, since the
	// first failure.
	f, ok = b.Fail("incremental", "open key material: envelope: no data key", at.Add(time.Minute), 5)
	if !ok || f.Since != at || f.Attempts != 5 {
		t.Fatalf("another reason: %+v %v", f, ok)
	}
	applyAt(b, at.Add(time.Minute), f)
	// When a checkpoint succeeds, then it is no longer failing.
	checkpointAt(t, b, domain.Due{At: at.Add(2 * time.Minute)}, 3)
	if b.Failing.Active() {
		t.Fatalf("still failing after a checkpoint: %+v", b.Failing)
	}
	// A new failure starts a new run, with its own since.
	if f, ok := b.Fail("incremental", reason, at.Add(time.Hour), 1); !ok || !f.Since.Equal(at.Add(time.Hour)) {
		t.Fatalf("a new run: %+v %v", f, ok)
	}
	// Expiry, reset and the release of the source end a failure too.
	for _, end := range []domain.EventData{&domain.BackupExpired{}, &domain.BackupReset{},
		&domain.BackupSourceReleased{Instance: "kms_x", Next: 3, End: 3}} {
		c := boundBackup(t, "kms_x")
		f, _ := c.Fail("full", reason, t0, 1)
		applyAt(c, t0, f)
		applyAt(c, t0.Add(time.Minute), end)
		if c.Failing.Active() {
			t.Errorf("%s left it failing", end.EventType())
		}
	}
}

func TestCleanReason(t *testing.T) {
	if got := domain.CleanReason("a\nb\tc\x00d\xff "); got != "a b c d?" {
		t.Errorf("CleanReason = %q", got)
	}
	long := strings.Repeat("é", domain.MaxFailureReason)
	got := domain.CleanReason(long)
	if len(got) > domain.MaxFailureReason || !strings.HasSuffix(got, "...") || !strings.HasPrefix(got, "éé") {
		t.Errorf("long reason: %d bytes, ends %q", len(got), got[len(got)-5:])
	}
	if !domain.SameFailure("x 01KQHDZ8E047ZJ5VY4H4AEDV2J", "x 01KQHE1SVZ0T4DBGFTXQFK0H9R") || domain.SameFailure("x a", "x b") {
		t.Error("SameFailure")
	}
}

// TestDestroyEndedOnce: every ended generation (reset, released) is to be
// destroyed until BackupDataDestroyed records it; a record of fewer
// generations (appended from an older view) leaves the newer ones to do.
func TestDestroyEndedOnce(t *testing.T) {
	at := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	b := boundBackup(t, "kms_1")
	if d, ok := b.DestroyEnded(); ok {
		t.Fatalf("generation 0 in use: %+v, want nothing to destroy", d)
	}
	applyAt(b, at, &domain.BackupReset{})
	applyAt(b, at, &domain.BackupEnabled{KMSInstance: "kms_1"})
	applyAt(b, at, &domain.BackupReset{})
	d, ok := b.DestroyEnded()
	if !ok || d.Generation != 2 || b.DestroyedBelow != 0 {
		t.Fatalf("after two resets: %+v %v (destroyed below %d), want generations 0 and 1 to destroy", d, ok, b.DestroyedBelow)
	}
	applyAt(b, at, &domain.BackupDataDestroyed{Generation: 1})
	if d, ok := b.DestroyEnded(); !ok || b.DestroyedBelow != 1 || d.Generation != 2 {
		t.Fatalf("generation 0 recorded destroyed: %+v %v (below %d), want generation 1 left", d, ok, b.DestroyedBelow)
	}
	applyAt(b, at, &domain.BackupDataDestroyed{Generation: 2})
	applyAt(b, at, &domain.BackupDataDestroyed{Generation: 1}) // an older view, late
	if d, ok := b.DestroyEnded(); ok || b.DestroyedBelow != 2 {
		t.Fatalf("all recorded destroyed: %+v %v (below %d), want nothing left", d, ok, b.DestroyedBelow)
	}
	applyAt(b, at, &domain.BackupDataDestroyed{Generation: 9}) // beyond the generations: ignored
	if b.DestroyedBelow != 2 {
		t.Fatalf("a record beyond the generation moved DestroyedBelow to %d", b.DestroyedBelow)
	}
}
