package commands_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// uploadWorld is planWorld's backup with one more checkpoint (an
// incremental at 09:35 holding a rotation of k2), and its day 2026-05-01
// downloaded: the file and its data key.
type uploadWorld struct {
	*planWorld
	file []byte
	key  string
}

func newUploadWorld(t *testing.T) *uploadWorld {
	w := &uploadWorld{planWorld: newPlanWorld(t)}
	f := w.f
	f.clock.Advance(time.Minute)
	f.MustRotateKey(t, w.k2)
	f.clock.Advance(4 * time.Minute)
	f.MustCheckpoint(t, w.id, domain.Due{At: f.clock.Now()})
	var buf bytes.Buffer
	must(f.files.DownloadDay(context.Background(), f.caller, w.id, "2026-05-01", &buf, func(s commands.DownloadStart) error {
		w.key = s.DataKey
		return nil
	}))(t)
	w.file = buf.Bytes()
	return w
}

func (w *uploadWorld) open() (io.Reader, error) { return bytes.NewReader(w.file), nil }

// TestUploadBackupFile: a downloaded day uploaded again is recorded with
// one append that creates the upload's stream (its record and its
// checkpoints with their base), its data stored resealed under its own
// data key (no blob holds key material or a secret value in plaintext),
// and it restores the items the day held, as the backup it came from.
func TestUploadBackupFile(t *testing.T) {
	w := newUploadWorld(t)
	f, ctx := w.f, context.Background()
	m := f.mark()

	up, err := f.files.UploadBackupFile(ctx, f.caller, "from-may", w.key, w.open)
	if err != nil {
		t.Fatal(err)
	}

	if up.Kind != domain.BackupUpload || up.UploadDay != "2026-05-01" || up.Alias != "from-may" || up.Source != w.id || up.SourceInstance != w.src.ID {
		t.Errorf("upload: %+v", up)
	}
	appended := f.appendsSince(m, domain.BackupStreamPrefix)
	if len(appended) != 1 || appended[0].Stream != domain.BackupStream(up.ID) || appended[0].Expected != "no-stream" {
		t.Fatalf("appends to backup streams: %+v; want one creating %s", appended, domain.BackupStream(up.ID))
	}
	var types []string
	for _, e := range appended[0].Events {
		types = append(types, e.Type)
	}
	want := []string{domain.TypeBackupUploaded, domain.TypeBackupCheckpointed, domain.TypeBackupBaseStored, domain.TypeBackupCheckpointed}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("the upload's events (-want +got):\n%s", diff)
	}
	secrets := secretsOf(t, f, f.MustStream(t, domain.KMSStream(w.src.ID)))
	stored := f.blobsSince(m)
	if len(stored) == 0 {
		t.Fatal("the upload stored no blob")
	}
	for _, b := range stored {
		if b.Ref != domain.DataRef(up.ID, 0) {
			t.Errorf("blob %s stored under %s, not the upload's data ref", b.Name, b.Ref)
		}
		assertNoneHolds(t, "blob "+b.Name, b.Data, secrets)
	}

	to := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "eu-central-1"}).ID
	plan := func(from domain.BackupID) []commands.RestoreItem {
		p := must(f.restores.PlanRestore(ctx, f.caller, commands.RestoreRequest{From: from, Point: commands.RestorePoint{Day: "2026-05-01"},
			Selection: domain.SelectAll(), Target: to}, nil))(t)
		if len(p.Findings) != 0 {
			t.Errorf("plan from %s: findings %+v", from, p.Findings)
		}
		return p.Items
	}
	if diff := cmp.Diff(plan(w.id), plan(up.ID)); diff != "" {
		t.Errorf("items restored from the upload (-backup +upload):\n%s", diff)
	}
}

// TestUploadBackupFileThatFails: an upload whose append the log refuses
// leaves nothing behind (no blob, no data key, no stream); one whose
// append is written and its reply lost is recorded whole: its blobs and
// data key stay, so that the read models apply it and it restores.
func TestUploadBackupFileThatFails(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		written  bool
		sentinel error
	}{
		{"its append refused", domain.Errorf(domain.ErrWrongExpectedRevision, "append", "", "", "the stream exists (injected)"), false, domain.ErrWrongExpectedRevision},
		{"its reply lost", domain.Errorf(domain.ErrUnavailable, "append", "", "", "no reply (injected)"), true, domain.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newUploadWorld(t)
			f, ctx := w.f, context.Background()
			f.log.setFault(func(stream string, n int) (error, bool) {
				if strings.HasPrefix(stream, domain.BackupStreamPrefix) && stream != domain.BackupStream(w.id) {
					return tc.err, tc.written
				}
				return nil, false
			})
			m := f.mark()

			up, err := f.files.UploadBackupFile(ctx, f.caller, "from-may", w.key, w.open)

			if up != nil || !errors.Is(err, tc.sentinel) {
				t.Fatalf("upload: %+v, %v; want %v", up, err, tc.sentinel)
			}
			f.log.setFault(nil)
			f.settle(t)
			appended := f.appendsSince(m, domain.BackupStreamPrefix)
			if len(appended) != 1 {
				t.Fatalf("appends to backup streams: %+v", appended)
			}
			stream := appended[0].Stream
			id := domain.BackupID(strings.TrimPrefix(stream, domain.BackupStreamPrefix))
			if got := len(f.MustStream(t, stream)) > 0; got != tc.written {
				t.Fatalf("the upload's stream exists: %v, want %v", got, tc.written)
			}
			named := f.MustNamedBlobs(t, id)
			if len(named) == 0 == tc.written {
				t.Errorf("the upload's stream names %d blobs", len(named))
			}
			f.assertKeptIfNamed(t, f.blobsSince(m), named)
			_, err = f.keys.Seal(ctx, domain.DataRef(id, 0), domain.Plaintext("x"), nil)
			if tc.written != (err == nil) {
				t.Errorf("sealing under the upload's data key: %v; the key should exist: %v", err, tc.written)
			}
			if tc.written {
				to := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "eu-central-1"}).ID
				p := must(f.restores.PlanRestore(ctx, f.caller, commands.RestoreRequest{From: id, Selection: domain.SelectAll(), Target: to}, nil))(t)
				if p.Keys != 2 || p.Secrets != 2 || len(p.Findings) != 0 {
					t.Errorf("plan from the recorded upload: %d keys, %d secrets, findings %+v", p.Keys, p.Secrets, p.Findings)
				}
			}
		})
	}
}
