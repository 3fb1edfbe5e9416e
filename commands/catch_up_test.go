package commands_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kmsbackup/kmsbackup/cmd/engine"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// TestCatchUp: an engine that was down while checkpoints fell due takes
// one checkpoint per backup instance when it starts, at the instant it
// starts, never a back-fill of what it missed: an incremental covering
// everything since the last checkpoint when the day's full was taken, the
// day's full when it was not; an instance whose term ended meanwhile
// expires at its own instant and takes no checkpoint. Caught up, a second
// call finds nothing to do and appends nothing.
func TestCatchUp(t *testing.T) {
	expires := useCaseStart.AddDate(0, 1, 0) // 2026-06-01T09:30:00Z
	for _, tc := range []struct {
		name  string
		until time.Time
		want  func(prev *domain.BackupCheckpointed, next uint64, until time.Time) domain.EventData
		audit []string // the actions of the audit records appended
	}{
		{"down for an hour and a half", time.Date(2026, 5, 1, 11, 2, 30, 0, time.UTC),
			func(prev *domain.BackupCheckpointed, next uint64, until time.Time) domain.EventData {
				return &domain.BackupCheckpointed{Seq: 2, At: until, Day: "2026-05-01", From: prev.Next, Next: next, PrevDigest: prev.Digest}
			}, nil},
		{"down for two days", time.Date(2026, 5, 3, 10, 0, 0, 0, time.UTC),
			func(prev *domain.BackupCheckpointed, next uint64, until time.Time) domain.EventData {
				return &domain.BackupCheckpointed{Seq: 2, Full: true, At: until, Day: "2026-05-03", From: prev.Next, Next: next, PrevDigest: prev.Digest}
			}, nil},
		{"down past the end of the term", expires.AddDate(0, 0, 9),
			func(*domain.BackupCheckpointed, uint64, time.Time) domain.EventData { return &domain.BackupExpired{} },
			[]string{"expire-backup-instance"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newUseCases(t, engine.Options{})
			ctx := context.Background()
			in := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
			id := f.MustEnabled(t, in, expires)
			prev := f.MustCheckpoint(t, id, domain.Due{At: f.clock.Now(), Full: true})
			f.clock.Advance(time.Minute)
			f.MustKey(t, in.ID)
			next := uint64(len(f.MustStream(t, domain.KMSStream(in.ID))))
			f.clock.Set(tc.until)
			m := f.mark()

			n, err := f.schedule.CatchUp(ctx, tc.until)
			if err != nil || n != 1 {
				t.Fatalf("catch up: %d done, %v; want 1 done", n, err)
			}

			appended := f.appendsSince(m, domain.BackupStreamPrefix)
			if len(appended) != 1 || appended[0].Stream != domain.BackupStream(id) || len(appended[0].Events) != 1 {
				t.Fatalf("appends: %+v; want one event appended to %s", appended, domain.BackupStream(id))
			}
			want := tc.want(prev, next, tc.until)
			if diff := cmp.Diff(want, MustDecode(t, appended[0].Events)[0], cmpopts.IgnoreFields(domain.BackupCheckpointed{}, "Parts", "Digest")); diff != "" {
				t.Errorf("appended (-want +got):\n%s", diff)
			}
			if _, expired := want.(*domain.BackupExpired); expired && !appended[0].Events[0].OccurredAt.Equal(expires) {
				t.Errorf("expired at %s, want at the end of its term, %s", appended[0].Events[0].OccurredAt, expires)
			}
			var audited []string
			for _, a := range f.appendsSince(m, "audit-") {
				for _, d := range MustDecode(t, a.Events) {
					if r := d.(*domain.Audited); r.Actor == "system" && r.Backup == id {
						audited = append(audited, r.Action)
					}
				}
			}
			if diff := cmp.Diff(tc.audit, audited); diff != "" {
				t.Errorf("audit records by the system (-want +got):\n%s", diff)
			}
			if a := f.appendsSince(m, ""); len(a) != 1+len(tc.audit) {
				t.Errorf("%d appends in all, want %d", len(a), 1+len(tc.audit))
			}

			m = f.mark()
			if n, err := f.schedule.CatchUp(ctx, tc.until); err != nil || n != 0 {
				t.Fatalf("second catch up: %d done, %v; want nothing done", n, err)
			}
			if a := f.appendsSince(m, ""); len(a) != 0 {
				t.Fatalf("the second catch up appended %+v", a)
			}
		})
	}
}
