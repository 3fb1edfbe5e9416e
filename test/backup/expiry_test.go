package backup

import (
	"context"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// termBackup creates a KMS instance and a provisioned backup instance of a
// one-month term bound to it, in UTC.
func termBackup(t *testing.T, e *Engine) (*domain.Instance, *domain.Backup) {
	t.Helper()
	ctx := context.Background()
	in := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "cn-hangzhou"}))
	b := Must(e.Backups.CreateBackupInstance(ctx, e.Caller, commands.CreateBackupInput{Region: "cn-hangzhou", ViewableDays: 30, Term: "1mo"}))
	b = Must(e.Backups.EnableBackupInstance(ctx, e.Caller, b.ID, commands.EnableInput{KMSInstance: in.ID, Alias: "prod", TimeZone: "UTC"}))
	return in, b
}

// noCheckpointFrom fails when a checkpoint covers an instant at or after
// the expiry.
func noCheckpointFrom(t *testing.T, cps []*domain.BackupCheckpointed, expiry time.Time) {
	t.Helper()
	for _, c := range cps {
		if !c.At.Before(expiry) {
			t.Fatalf("checkpoint %d at %s, at or after the expiry %s", c.Seq, c.At.Format(time.RFC3339), expiry.Format(time.RFC3339))
		}
	}
}

// TestNoCheckpointAtTheExpiryInstant: an incremental that falls due exactly
// at the expiry is not taken: the instance expires instead.
func TestNoCheckpointAtTheExpiryInstant(t *testing.T) {
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	e := NewEngine(t, start)
	_, b := termBackup(t, e)
	expiry := time.Date(2026, 6, 1, 9, 30, 0, 0, time.UTC)
	if !b.ExpiresAt.Equal(expiry) {
		t.Fatalf("expires at %s, want %s", b.ExpiresAt, expiry)
	}
	// Down until half an hour before the expiry (no month of incrementals),
	// then on the 5-minute grid that meets the expiry instant.
	e.Close()
	e.Clock.Set(expiry.Add(-30 * time.Minute))
	e.open()
	Must(e.Driver.Start(context.Background()))
	e.Advance(time.Hour)
	cps := e.CheckpointEvents(b.ID)
	chainOK(t, cps)
	noCheckpointFrom(t, cps, expiry)
	if last := cps[len(cps)-1]; !last.At.Equal(expiry.Add(-5 * time.Minute)) {
		t.Fatalf("last checkpoint at %s, want the incremental 5 minutes before the expiry", last.At)
	}
	if got := Must(e.Backups.ShowBackupInstance(e.Caller, b.ID)); got.State != domain.StateExpired || !got.ExpiredAt.Equal(expiry) {
		t.Fatalf("state %s expired at %s, want expired at %s", got.State, got.ExpiredAt, expiry)
	}
}

// TestExpiredDuringDowntime: an engine that was down when the term ended
// records the expiry and takes no catch-up checkpoint after it; renewing
// then takes exactly one catch-up checkpoint, at the renewal.
func TestExpiredDuringDowntime(t *testing.T) {
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	e := NewEngine(t, start)
	_, b := termBackup(t, e)
	expiry := b.ExpiresAt
	e.Close()
	back := time.Date(2026, 6, 3, 8, 0, 0, 0, time.UTC)
	e.Clock.Set(back)
	e.open()
	Must(e.Driver.Start(context.Background()))
	cps := e.CheckpointEvents(b.ID)
	noCheckpointFrom(t, cps, expiry)
	if got := Must(e.Backups.ShowBackupInstance(e.Caller, b.ID)); got.State != domain.StateExpired {
		t.Fatalf("state %s after the downtime, want expired", got.State)
	}

	// Renewal: one checkpoint at the renewal instant covers the gap.
	Must(e.Backups.RenewBackupInstance(context.Background(), e.Caller, b.ID, "1mo"))
	e.Advance(time.Minute)
	after := e.CheckpointEvents(b.ID)
	chainOK(t, after)
	if len(after) != len(cps)+1 {
		t.Fatalf("%d checkpoints after the renewal, want exactly one more than %d", len(after), len(cps))
	}
	if c := after[len(after)-1]; !c.At.Equal(back) || !c.Full || c.Day != "2026-06-03" {
		t.Fatalf("catch-up checkpoint %+v, want the day's full at the renewal %s", c, back)
	}
}
