package commands_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/cmd/engine"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// TestRebaseBackupThatFails: a rebase whose append fails keeps the parts
// of its base exactly when the base may be recorded: refused (nothing
// appended), they are deleted; written with its reply lost, the base is
// recorded and its parts stay, readable, so that the read models apply it
// and restores load it. After a lost race it is decided again and stored.
func TestRebaseBackupThatFails(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fail     func(stream string, n int) (error, bool)
		sentinel error // nil: the rebase succeeds
		recorded bool
	}{
		{"its append refused", func(stream string, n int) (error, bool) {
			return domain.Errorf(domain.ErrInvalidArgument, "append", stream, "", "refused (injected)"), false
		}, domain.ErrInvalidArgument, false},
		{"its reply lost", func(stream string, n int) (error, bool) {
			return domain.Errorf(domain.ErrUnavailable, "append", stream, "", "no reply (injected)"), true
		}, domain.ErrUnavailable, true},
		{"a race lost, then won", func(stream string, n int) (error, bool) {
			if n == 1 {
				return domain.Errorf(domain.ErrWrongExpectedRevision, "append", stream, "", "another writer first (injected)"), false
			}
			return nil, false
		}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newUseCases(t, engine.Options{})
			f.cutPartsAt(1)
			ctx := context.Background()
			in := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
			id := f.MustBackedUp(t, in)
			f.clock.Advance(time.Minute)
			f.MustKey(t, in.ID)
			f.MustKey(t, in.ID)
			f.clock.Set(time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC))
			f.MustCheckpoint(t, id, domain.Due{At: f.clock.Now(), Full: true})
			f.rebaseAfterEveryFull()
			f.log.setFault(func(stream string, n int) (error, bool) {
				if stream == domain.BackupStream(id) {
					return tc.fail(stream, n)
				}
				return nil, false
			})
			m := f.mark()

			did, err := f.rebases.RebaseBackup(ctx, id)

			if (tc.sentinel == nil && (err != nil || !did)) || (tc.sentinel != nil && (did || !errors.Is(err, tc.sentinel))) {
				t.Fatalf("rebase: stored %v, %v; want %v", did, err, tc.sentinel)
			}
			f.log.setFault(nil)
			f.settle(t)
			var base *domain.BackupBaseStored
			for _, d := range MustDecode(t, f.MustStream(t, domain.BackupStream(id))) {
				if b, ok := d.(*domain.BackupBaseStored); ok && b.Seq == 2 {
					base = b
				}
			}
			if (base != nil) != tc.recorded {
				t.Fatalf("base of checkpoint 2 recorded: %v, want %v", base != nil, tc.recorded)
			}
			f.assertKeptIfNamed(t, f.blobsSince(m), f.MustNamedBlobs(t, id))
		})
	}
}
