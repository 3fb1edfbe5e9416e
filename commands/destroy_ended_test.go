package commands_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/cmd/engine"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// A reset or a release whose event is written but whose reply is lost
// leaves the generation's data key and blobs: a retry finds nothing to do.
// The next start (CatchUp) destroys them and records it, once.
func TestCatchUpDestroysTheDataOfEndedGenerations(t *testing.T) {
	ctx := context.Background()
	lost := domain.Errorf(domain.ErrUnavailable, "append", "", "", "the reply was lost")
	for _, tc := range []struct {
		name string
		end  func(f *useCases, id domain.BackupID) error
	}{
		{"reset", func(f *useCases, id domain.BackupID) error {
			_, err := f.backups.ResetBackupInstance(ctx, f.caller, id, true)
			return err
		}},
		{"release", func(f *useCases, id domain.BackupID) error {
			b := must(f.backups.ShowBackupInstance(f.caller, id))(t)
			f.clock.Set(b.ExpiresAt.Add(domain.ReleaseAfterExpiry))
			return f.backups.ReleaseBackupInstance(ctx, id, f.clock.Now())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newUseCases(t, engine.Options{})
			in := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
			f.MustKey(t, in.ID)
			id := f.MustEnabled(t, in, f.clock.Now().Add(48*time.Hour))
			f.MustCheckpoint(t, id, domain.Due{At: f.clock.Now(), Full: true})
			if tc.name == "release" {
				f.clock.Advance(48 * time.Hour)
				f.MustAppend(t, domain.BackupStream(id), in, &domain.BackupExpired{})
			}
			ref := domain.DataRef(id, 0)
			blobs := f.blobs.stored()
			if len(blobs) == 0 {
				t.Fatal("the checkpoint stored no blob: the test needs some")
			}

			stream := domain.BackupStream(id)
			f.log.setFault(func(s string, n int) (error, bool) {
				if s == stream && n == 1 {
					return lost, true // written, the reply lost
				}
				return nil, false
			})
			if err := tc.end(f, id); !errors.Is(err, domain.ErrUnavailable) {
				t.Fatalf("%s with its reply lost: %v, want ErrUnavailable", tc.name, err)
			}
			f.log.setFault(nil)
			f.settle(t)
			if _, rev := must2(f.log.Store.GetWrapped(ctx, ref))(t); rev == 0 {
				t.Fatal("the data key is gone before the catch-up: the test provokes nothing")
			}

			m := f.mark()
			if _, err := f.schedule.CatchUp(ctx, f.clock.Now()); err != nil {
				t.Fatal(err)
			}
			if _, rev := must2(f.log.Store.GetWrapped(ctx, ref))(t); rev != 0 {
				t.Error("the ended generation's data key is still stored after the catch-up")
			}
			for _, b := range blobs {
				if _, err := f.blobs.GetBlob(ctx, b.Ref, b.Name); !errors.Is(err, domain.ErrNotFound) {
					t.Errorf("blob %s of the ended generation: %v, want ErrNotFound", b.Name, err)
				}
			}
			got := f.appendsSince(m, stream)
			if len(got) != 1 || len(got[0].Events) != 1 || got[0].Events[0].Type != domain.TypeDataDestroyed {
				t.Fatalf("the catch-up appended %v to the backup stream, want one BackupDataDestroyed", got)
			}

			// Done once: the next start has nothing to do.
			m = f.mark()
			if _, err := f.schedule.CatchUp(ctx, f.clock.Now()); err != nil {
				t.Fatal(err)
			}
			if got := f.appendsSince(m, stream); len(got) != 0 {
				t.Errorf("a second catch-up appended %d times to the backup stream, want none", len(got))
			}
		})
	}
}

// must2(call())(tb) is call's two values, or fails the test with call's
// error.
func must2[A, B any](a A, b B, err error) func(tb testing.TB) (A, B) {
	return func(tb testing.TB) (A, B) {
		tb.Helper()
		if err != nil {
			tb.Fatalf("unexpected error: %v", err)
		}
		return a, b
	}
}

// failingKeys fails every destruction of a data key while failing is set.
type failingKeys struct {
	commands.DataKeys
	failing atomic.Bool
}

func (k *failingKeys) DestroyDataKey(ctx context.Context, ref string) error {
	if k.failing.Load() {
		return domain.Errorf(domain.ErrUnavailable, "destroy data key", ref, "", "the key store is down (injected)")
	}
	return k.DataKeys.DestroyDataKey(ctx, ref)
}

// A reset whose destruction fails (the key store down) is finished by the
// scheduler's next round in the same process, without a restart.
func TestRunDueRetriesAFailedDestruction(t *testing.T) {
	ctx := context.Background()
	f := newUseCases(t, engine.Options{})
	in := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
	f.MustKey(t, in.ID)
	id := f.MustBackedUp(t, in)
	ref := domain.DataRef(id, 0)
	keys := &failingKeys{DataKeys: f.backups.Storage.DataKeys}
	f.backups.Storage.DataKeys = keys
	keys.failing.Store(true)
	if _, err := f.backups.ResetBackupInstance(ctx, f.caller, id, true); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("reset with the key store down: %v, want ErrUnavailable", err)
	}
	if _, rev := must2(f.log.Store.GetWrapped(ctx, ref))(t); rev == 0 {
		t.Fatal("the data key is gone though its destruction failed: the test provokes nothing")
	}
	keys.failing.Store(false)

	m := f.mark()
	if _, err := f.schedule.RunDue(ctx, f.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if _, rev := must2(f.log.Store.GetWrapped(ctx, ref))(t); rev != 0 {
		t.Error("the reset generation's data key is still stored after the scheduler's round")
	}
	got := f.appendsSince(m, domain.BackupStream(id))
	if len(got) != 1 || got[0].Events[0].Type != domain.TypeDataDestroyed {
		t.Fatalf("the round appended %v to the backup stream, want one BackupDataDestroyed", got)
	}
	// Done: the next round does not look again.
	m = f.mark()
	if _, err := f.schedule.RunDue(ctx, f.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if got := f.appendsSince(m, ""); len(got) != 0 {
		t.Errorf("the next round appended %d times, want none", len(got))
	}
}
