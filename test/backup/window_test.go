package backup

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// TestViewableWindowWorkedExample is SPEC.md section 5's example through the
// use cases: enabled on 2023-05-01 with 10 viewable days, on 2023-05-20 the
// data of 2023-05-05 is hidden; extending to 16 days reveals it; nothing
// before 2023-05-01 ever appears.
func TestViewableWindowWorkedExample(t *testing.T) {
	e := NewEngine(t, time.Date(2023, 5, 1, 8, 0, 0, 0, time.UTC))
	ctx := context.Background()
	in := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "cn-hangzhou"}))
	b := Must(e.Backups.CreateBackupInstance(ctx, e.Caller, commands.CreateBackupInput{Region: "cn-hangzhou", ViewableDays: 10, Term: "1y"}))
	Must(e.Backups.EnableBackupInstance(ctx, e.Caller, b.ID, commands.EnableInput{KMSInstance: in.ID, Alias: "example"}))
	e.Advance(4*24*time.Hour + time.Hour) // 2023-05-05 09:00
	Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "made on the 5th"))
	e.Advance(15 * 24 * time.Hour) // 2023-05-20
	if got := domain.DayOf(e.Clock.Now(), time.UTC); got != "2023-05-20" {
		t.Fatalf("today is %s", got)
	}
	list := func(day string) error {
		_, err := e.Days.ListDayData(e.Caller, b.ID, day, "incremental-keys", "", 10)
		return err
	}
	if err := list("2023-05-05"); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("2023-05-05 with 10 days: %v, want not viewable", err)
	}
	if err := list("2023-05-11"); err != nil {
		t.Fatalf("2023-05-11 with 10 days: %v", err)
	}
	Must(e.Backups.ExtendViewableDays(ctx, e.Caller, b.ID, 16))
	page := Must(e.Days.ListDayData(e.Caller, b.ID, "2023-05-05", "incremental-keys", "", 10))
	if len(page.Items) != 1 {
		t.Fatalf("2023-05-05 with 16 days lists %d keys, want the one made that day", len(page.Items))
	}
	Must(e.Backups.ExtendViewableDays(ctx, e.Caller, b.ID, 600))
	if err := list("2023-04-30"); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("2023-04-30 with 600 days: %v, want never viewable", err)
	}
}
