package backup

import (
	"context"
	"errors"
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// crashingKeys stands for a process that dies after recording the end of
// a generation and before destroying its data key: the destruction never
// happens.
type crashingKeys struct{ commands.DataKeys }

func (crashingKeys) DestroyDataKey(context.Context, string) error {
	return domain.Errorf(domain.ErrUnavailable, "destroy data key", "", "", "the process died (test)")
}

// namedBlobs are the blobs of generation gen that backup id's stream
// names: its slices' and its bases' parts.
func (e *Engine) namedBlobs(id domain.BackupID, gen uint32) []string {
	e.t.Helper()
	var out []string
	for from := uint64(0); ; {
		page := Must(e.Store.ReadStream(context.Background(), domain.BackupStream(id), from, false, 1000))
		for _, ev := range page {
			from = ev.Revision + 1
			switch d := Must(ev.Decode()).(type) {
			case *domain.BackupCheckpointed:
				for _, p := range d.SliceParts() {
					if d.Generation == gen {
						out = append(out, p.Name)
					}
				}
			case *domain.BackupBaseStored:
				for _, p := range d.Parts {
					if d.Generation == gen {
						out = append(out, p.Name)
					}
				}
			}
		}
		if len(page) < 1000 {
			return out
		}
	}
}

// TestRestartDestroysWhatACrashLeft: a reset and an upload deleted whose
// events are recorded but whose data was never destroyed (the process
// died in between) are finished by the next start: the data keys and the
// blobs are gone, the instances stay reset and deleted.
func TestRestartDestroysWhatACrashLeft(t *testing.T) {
	ctx := context.Background()
	e, id, file, key := smallDay(t, 3)
	up := Must(e.upload(e.Caller, file, key, "kept a while"))
	refs := map[string][]string{}
	for _, b := range []domain.BackupID{id, up.ID} {
		ref := domain.DataRef(b, 0)
		refs[ref] = e.namedBlobs(b, 0)
		if len(refs[ref]) == 0 {
			t.Fatalf("%s holds no blob: the test needs some", b)
		}
		for _, n := range refs[ref] {
			if _, err := e.Store.GetBlob(ctx, ref, n); err != nil {
				t.Fatalf("blob %s/%s before the crash: %v", ref, n, err)
			}
		}
	}

	e.Storage.DataKeys = crashingKeys{e.Storage.DataKeys}
	if _, err := e.Backups.ResetBackupInstance(ctx, e.Caller, id, true); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("reset, dying before the destruction: %v", err)
	}
	if err := e.Files.DeleteUpload(ctx, e.Caller, up.ID); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("delete upload, dying before the destruction: %v", err)
	}
	for ref := range refs {
		if _, rev := Must2(e.Store.GetWrapped(ctx, ref)); rev == 0 {
			t.Fatalf("data key %s is gone before the restart: the test provokes nothing", ref)
		}
	}

	e.Restart()
	if _, err := e.Driver.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	for ref, names := range refs {
		if _, rev := Must2(e.Store.GetWrapped(ctx, ref)); rev != 0 {
			t.Errorf("data key %s survived the restart", ref)
		}
		for _, n := range names {
			if _, err := e.Store.GetBlob(ctx, ref, n); !errors.Is(err, domain.ErrNotFound) {
				t.Errorf("blob %s/%s after the restart: %v, want ErrNotFound", ref, n, err)
			}
		}
	}
	if b := Must(e.Backups.ShowBackupInstance(e.Caller, id)); b.State != domain.StateNotEnabled {
		t.Errorf("the reset instance is %s after the restart, want %s", b.State, domain.StateNotEnabled)
	}
	if _, err := e.Backups.ShowBackupInstance(e.Caller, up.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("the deleted upload after the restart: %v, want ErrNotFound", err)
	}
}
