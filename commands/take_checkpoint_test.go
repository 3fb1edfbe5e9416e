package commands_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kmsbackup/kmsbackup/cmd/engine"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// secretValue is the plaintext of the given secrets: no blob may hold it.
const secretValue = "correct horse battery staple"

// checkpointWorld is an instance backed up at useCaseStart (its first
// checkpoint, base 0, holds key k1), then changed at 09:31 (k1 rotated, k2
// created, a secret created under k2) and at 09:36 (k3 created): the
// incremental due at 09:35 is to copy the 09:31 changes and not k3.
type checkpointWorld struct {
	f    *useCases
	in   *domain.Instance
	id   domain.BackupID
	prev *domain.BackupCheckpointed // the first checkpoint
	due  domain.Due                 // the incremental due at 09:35
}

func newCheckpointWorld(t *testing.T) *checkpointWorld {
	f := newUseCases(t, engine.Options{})
	in := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
	k1 := f.MustKey(t, in.ID)
	id := f.MustBackedUp(t, in)
	f.clock.Advance(time.Minute)
	f.MustRotateKey(t, k1)
	k2 := f.MustKey(t, in.ID)
	f.MustSecret(t, in.ID, k2, "db-password", secretValue)
	f.clock.Advance(5 * time.Minute)
	f.MustKey(t, in.ID)
	return &checkpointWorld{f: f, in: in, id: id, prev: f.MustCheckpoints(t, id)[0],
		due: domain.Due{At: useCaseStart.Add(5 * time.Minute)}}
}

// TestTakeCheckpointCopiesTheEventsSinceThePrevious: an incremental appends
// one checkpoint to the backup's stream, at the revision it decided on,
// chained to the previous one, covering the KMS revisions from the first
// not backed up to the last that occurred at or before its instant; its
// slice parts hold exactly those events, each as the log holds it but for
// its key material, which is resealed under the backup's data key (the
// same key material, and not the source's ciphertext); no blob holds key
// material or a secret value in plaintext.
//
// With parts of one event each, the same.
func TestTakeCheckpointCopiesTheEventsSinceThePrevious(t *testing.T) {
	inParts(t, 3, testTakeCheckpointCopies)
}

// inParts runs test with parts of the engine's size (expecting one), and
// with a part per event or item (expecting n).
func inParts(t *testing.T, n int, test func(t *testing.T, partBytes, parts int)) {
	t.Run("in one part", func(t *testing.T) { test(t, 0, 1) })
	t.Run("in a part per record", func(t *testing.T) { test(t, 1, n) })
}

func testTakeCheckpointCopies(t *testing.T, partBytes, parts int) {
	w := newCheckpointWorld(t)
	f, ctx := w.f, context.Background()
	f.cutPartsAt(partBytes)
	kms := f.MustStream(t, domain.KMSStream(w.in.ID))
	next := uint64(len(kms) - 1) // k3, created after the instant due
	backupHead := uint64(len(f.MustStream(t, domain.BackupStream(w.id))) - 1)
	m := f.mark()

	c, err := f.checkpoints.TakeCheckpoint(ctx, w.id, w.due)
	if err != nil {
		t.Fatal(err)
	}

	appended := f.appendsSince(m, "")
	if len(appended) != 1 || appended[0].Stream != domain.BackupStream(w.id) || appended[0].Expected != fmt.Sprint("revision ", backupHead) ||
		len(appended[0].Events) != 1 || appended[0].Events[0].Type != domain.TypeBackupCheckpointed || !appended[0].Written {
		t.Fatalf("appends: %+v; want one append of one BackupCheckpointed to %s at revision %d", appended, domain.BackupStream(w.id), backupHead)
	}
	recorded := MustDecode(t, appended[0].Events)[0].(*domain.BackupCheckpointed)
	if diff := cmp.Diff(c, recorded); diff != "" {
		t.Errorf("returned and recorded checkpoints differ (-returned +recorded):\n%s", diff)
	}
	want := &domain.BackupCheckpointed{Generation: 0, Seq: 2, Full: false, At: w.due.At, Day: "2026-05-01",
		From: w.prev.Next, Next: next, PrevDigest: w.prev.Digest}
	if diff := cmp.Diff(want, recorded, cmpopts.IgnoreFields(domain.BackupCheckpointed{}, "Parts", "Digest")); diff != "" {
		t.Errorf("checkpoint (-want +got):\n%s", diff)
	}
	if recorded.Digest != domain.CheckpointDigest(w.id, recorded) {
		t.Error("the checkpoint's digest is not the digest of its fields")
	}

	// The blobs stored are the slice's parts, and nothing else.
	stored := f.blobsSince(m)
	var names, partNames []string
	for _, b := range stored {
		if b.Ref != domain.DataRef(w.id, 0) {
			t.Errorf("blob %s stored under %s, not the backup's data ref", b.Name, b.Ref)
		}
		names = append(names, b.Name)
	}
	for _, p := range recorded.Parts {
		partNames = append(partNames, p.Name)
	}
	if diff := cmp.Diff(partNames, names); diff != "" || len(names) != parts {
		t.Errorf("blobs stored (-parts +stored), want %d:\n%s", parts, diff)
	}
	for i, p := range recorded.Parts {
		if (i == 0 && p.From != recorded.From) || (i > 0 && p.From != recorded.Parts[i-1].Next) ||
			(i == len(recorded.Parts)-1 && p.Next != recorded.Next) || p.Events != p.Next-p.From {
			t.Errorf("part %d covers [%d, %d) with %d events, in a slice of [%d, %d): %+v", i, p.From, p.Next, p.Events, recorded.From, recorded.Next, recorded.Parts)
		}
	}

	// The slice: exactly the KMS events [From, Next), in order.
	slice := f.MustSliceEvents(t, w.id, recorded)
	source := kms[recorded.From:recorded.Next]
	envelopeOnly := cmpopts.IgnoreFields(domain.Event{}, "Data", "Position")
	if diff := cmp.Diff(source, slice, envelopeOnly); diff != "" {
		t.Fatalf("slice events (-KMS stream +slice):\n%s", diff)
	}
	noMaterial := cmpopts.IgnoreFields(domain.KeyCreated{}, "Material")
	noRotated := cmpopts.IgnoreFields(domain.KeyRotated{}, "Material")
	if diff := cmp.Diff(MustDecode(t, source), MustDecode(t, slice), noMaterial, noRotated); diff != "" {
		t.Errorf("slice event data (-KMS stream +slice):\n%s", diff)
	}
	for i := range source {
		srcSealed, sliceSealed := materialsOf(t, source[i]), materialsOf(t, slice[i])
		if len(srcSealed) != len(sliceSealed) {
			t.Fatalf("event %s: %d sealed materials in the log, %d in the slice", source[i].ID, len(srcSealed), len(sliceSealed))
		}
		for j := range srcSealed {
			pt := must(f.keys.Open(ctx, string(w.in.ID), srcSealed[j], domain.AssociatedData(source[i].Account, source[i].Stream, source[i].ID)))(t)
			copied := must(f.keys.Open(ctx, domain.DataRef(w.id, 0), sliceSealed[j],
				commands.BackupAAD(f.caller.Account, domain.DataRef(w.id, 0), slice[i].ID)))(t)
			if !bytes.Equal(pt, copied) { // never printed: key material
				t.Errorf("event %s: the slice's key material differs from the log's", source[i].ID)
			}
		}
	}
	secrets := secretsOf(t, f, source)
	if len(secrets) != 1+2*2 { // the rotation's and k2's material
		t.Fatalf("%d secrets to look for, want 5", len(secrets))
	}
	for _, b := range stored {
		assertNoneHolds(t, "blob "+b.Name, b.Data, secrets)
	}
}

// materialsOf returns the sealed key material an event carries.
func materialsOf(tb testing.TB, e domain.Event) []domain.Sealed {
	tb.Helper()
	var out []domain.Sealed
	for _, m := range domain.KeyMaterials(must(e.Decode())(tb)) {
		out = append(out, *m)
	}
	return out
}

// secretsOf is what must never be found in what a use case writes for
// events of a KMS instance: the plaintext secret value of the given
// secrets, and each event's key material, in plaintext and as the
// instance sealed it (a copy reseals it under its own data key).
func secretsOf(tb testing.TB, f *useCases, events []domain.Event) [][]byte {
	tb.Helper()
	out := [][]byte{[]byte(secretValue)}
	for _, e := range events {
		for _, s := range materialsOf(tb, e) {
			pt := must(f.keys.Open(context.Background(), string(e.Instance), s, domain.AssociatedData(e.Account, e.Stream, e.ID)))(tb)
			out = append(out, pt, s)
		}
	}
	return out
}

// assertNoneHolds fails the test when data holds one of secrets (printing
// neither).
func assertNoneHolds(tb testing.TB, what string, data []byte, secrets [][]byte) {
	tb.Helper()
	for i, s := range secrets {
		if bytes.Contains(data, s) {
			tb.Errorf("%s holds secret %d of the test (key material, a secret value, or the source's ciphertext)", what, i)
		}
	}
}

// TestTakeCheckpointRetried: a checkpoint asked for again after it was
// taken (a scheduler planning from an older view, a retry after a lost
// reply), or one from before it, appends nothing and stores nothing: it is
// refused as a lost race (domain.ErrWrongExpectedRevision, naming the
// backup), which the scheduler counts as done.
func TestTakeCheckpointRetried(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   time.Duration // after useCaseStart
	}{
		{"the same checkpoint", 5 * time.Minute},
		{"an earlier one", 2 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newCheckpointWorld(t)
			f := w.f
			f.MustCheckpoint(t, w.id, w.due)
			before := f.MustStream(t, domain.BackupStream(w.id))
			m := f.mark()

			c, err := f.checkpoints.TakeCheckpoint(context.Background(), w.id, domain.Due{At: useCaseStart.Add(tc.at)})

			var de *domain.Error
			if c != nil || !errors.Is(err, domain.ErrWrongExpectedRevision) || !errors.As(err, &de) || de.Op != "take backup" || de.Item != string(w.id) {
				t.Fatalf("retry: %+v, %v; want ErrWrongExpectedRevision of take backup %s", c, err, w.id)
			}
			if a, b := f.appendsSince(m, ""), f.blobsSince(m); len(a) != 0 || len(b) != 0 {
				t.Fatalf("the retry appended %d times and stored %d blobs, want none", len(a), len(b))
			}
			if diff := cmp.Diff(before, f.MustStream(t, domain.BackupStream(w.id))); diff != "" {
				t.Fatalf("the backup's stream changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestTakeCheckpointWithNothingToCopy: when the KMS instance recorded
// nothing since the previous checkpoint, the checkpoint is still appended
// (the schedule moves on, and the chain says that nothing happened): it
// covers no revision (From == Next), has no slice, and stores no blob.
func TestTakeCheckpointWithNothingToCopy(t *testing.T) {
	f := newUseCases(t, engine.Options{})
	in := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
	f.MustKey(t, in.ID)
	id := f.MustBackedUp(t, in)
	prev := f.MustCheckpoints(t, id)[0]
	f.clock.Advance(5 * time.Minute)
	m := f.mark()

	c, err := f.checkpoints.TakeCheckpoint(context.Background(), id, domain.Due{At: f.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}

	want := &domain.BackupCheckpointed{Seq: 2, At: f.clock.Now(), Day: "2026-05-01", From: prev.Next, Next: prev.Next, PrevDigest: prev.Digest}
	want.Digest = domain.CheckpointDigest(id, want)
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("checkpoint (-want +got):\n%s", diff)
	}
	appended := f.appendsSince(m, "")
	if len(appended) != 1 || len(appended[0].Events) != 1 || appended[0].Stream != domain.BackupStream(id) {
		t.Fatalf("appends: %+v; want the checkpoint alone", appended)
	}
	if diff := cmp.Diff(want, MustDecode(t, appended[0].Events)[0]); diff != "" {
		t.Errorf("recorded checkpoint (-want +got):\n%s", diff)
	}
	if b := f.blobsSince(m); len(b) != 0 {
		t.Errorf("%d blobs stored, want none", len(b))
	}
}

// TestTakeCheckpointAfterTheSourceIsReleased: once the backup recorded
// that its KMS instance is released (BackupSourceReleased), a checkpoint
// copies nothing more, though the instance's stream holds events it never
// backed up: it covers no revision, stores no blob, and never opens the
// instance's data key (destroyed here, as a release destroys it).
func TestTakeCheckpointAfterTheSourceIsReleased(t *testing.T) {
	f := newUseCases(t, engine.Options{})
	ctx := context.Background()
	in := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
	f.MustKey(t, in.ID)
	id := f.MustBackedUp(t, in)
	prev := f.MustCheckpoints(t, id)[0]
	f.clock.Advance(time.Minute)
	f.MustKey(t, in.ID) // never backed up
	end := uint64(len(f.MustStream(t, domain.KMSStream(in.ID))))
	f.MustAppend(t, domain.BackupStream(id), in, &domain.BackupSourceReleased{Instance: in.ID, Next: prev.Next, End: end})
	if err := f.keys.DestroyDataKey(ctx, string(in.ID)); err != nil {
		t.Fatal(err)
	}
	f.clock.Set(time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC))
	m := f.mark()

	c, err := f.checkpoints.TakeCheckpoint(ctx, id, domain.Due{At: f.clock.Now(), Full: true})
	if err != nil {
		t.Fatal(err)
	}

	want := &domain.BackupCheckpointed{Seq: 2, Full: true, At: f.clock.Now(), Day: "2026-05-02", From: prev.Next, Next: prev.Next, PrevDigest: prev.Digest}
	want.Digest = domain.CheckpointDigest(id, want)
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("checkpoint (-want +got):\n%s", diff)
	}
	if a := f.appendsSince(m, ""); len(a) != 1 || len(a[0].Events) != 1 {
		t.Errorf("appends: %+v; want the checkpoint alone", a)
	}
	if b := f.blobsSince(m); len(b) != 0 {
		t.Errorf("%d blobs stored, want none", len(b))
	}
}

// TestTakeCheckpointFirstIsBaseZero: the first checkpoint of a backup
// holds no slice: the history of the instance from before enabling is not
// viewable, so its state is stored as base 0 (a deleted key is not in
// it), and the checkpoint (InBase, every revision) and its
// BackupBaseStored are appended together in one append; the base's parts
// are the only blobs stored, and hold no key material or secret value in
// plaintext. With parts of one item each, the same.
func TestTakeCheckpointFirstIsBaseZero(t *testing.T) {
	inParts(t, 2, testTakeCheckpointBaseZero)
}

func testTakeCheckpointBaseZero(t *testing.T, partBytes, parts int) {
	f := newUseCases(t, engine.Options{})
	f.cutPartsAt(partBytes)
	ctx := context.Background()
	in := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
	k1 := f.MustKey(t, in.ID)
	f.MustRotateKey(t, k1)
	f.MustSecret(t, in.ID, k1, "db-password", secretValue)
	f.MustDeleteKey(t, f.MustKey(t, in.ID))
	kms := f.MustStream(t, domain.KMSStream(in.ID))
	id := f.MustEnabled(t, in, f.clock.Now().AddDate(1, 0, 0))
	m := f.mark()

	c, err := f.checkpoints.TakeCheckpoint(ctx, id, domain.Due{At: f.clock.Now(), Full: true})
	if err != nil {
		t.Fatal(err)
	}

	want := &domain.BackupCheckpointed{Seq: 1, Full: true, At: f.clock.Now(), Day: "2026-05-01", From: 0, Next: uint64(len(kms)), InBase: true}
	want.Digest = domain.CheckpointDigest(id, want)
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("checkpoint (-want +got):\n%s", diff)
	}
	appended := f.appendsSince(m, "")
	if len(appended) != 1 || appended[0].Stream != domain.BackupStream(id) || appended[0].Expected != "revision 1" {
		t.Fatalf("appends: %+v; want one to %s at revision 1", appended, domain.BackupStream(id))
	}
	data := MustDecode(t, appended[0].Events)
	if len(data) != 2 {
		t.Fatalf("appended %d events, want the checkpoint and its base", len(data))
	}
	if diff := cmp.Diff(want, data[0]); diff != "" {
		t.Errorf("recorded checkpoint (-want +got):\n%s", diff)
	}
	base, ok := data[1].(*domain.BackupBaseStored)
	if !ok {
		t.Fatalf("second event: %T, want BackupBaseStored", data[1])
	}
	wantBase := &domain.BackupBaseStored{Seq: 1, At: want.At, Next: want.Next, Items: 2, Versions: 3, CheckpointDigest: want.Digest}
	if diff := cmp.Diff(wantBase, base, cmpopts.IgnoreFields(domain.BackupBaseStored{}, "Parts", "StateDigest", "Digest")); diff != "" {
		t.Errorf("base (-want +got):\n%s", diff)
	}
	if base.Digest != domain.BaseDigest(id, base) {
		t.Error("the base's digest is not the digest of its fields")
	}
	stored := f.blobsSince(m)
	var names, partNames []string
	for _, b := range stored {
		names = append(names, b.Ref+" "+b.Name)
	}
	for _, p := range base.Parts {
		partNames = append(partNames, domain.DataRef(id, 0)+" "+p.Name)
	}
	if diff := cmp.Diff(partNames, names); diff != "" || len(names) != parts {
		t.Errorf("blobs stored (-base parts +stored), want %d:\n%s", parts, diff)
	}
	secrets := secretsOf(t, f, kms)
	if len(secrets) != 1+2*3 {
		t.Fatalf("%d secrets to look for, want 7", len(secrets))
	}
	for _, b := range stored {
		assertNoneHolds(t, "blob "+b.Name, b.Data, secrets)
	}
}

// TestTakeCheckpointThatFails: a checkpoint that fails after storing
// blobs leaves in the blob store exactly the blobs the backup's stream
// names: those of a checkpoint certainly not recorded (its append refused,
// as when another engine took it first; a part that could not be stored)
// are deleted, and those of one that may be recorded (its append written
// and the reply lost, or the wait for the read models after it ended) are
// kept, since deleting them would lose what the recorded checkpoint holds.
func TestTakeCheckpointThatFails(t *testing.T) {
	refused := func(stream string) error {
		return domain.Errorf(domain.ErrWrongExpectedRevision, "append", stream, "", "another writer appended first (injected)")
	}
	lost := func(stream string) error {
		return domain.Errorf(domain.ErrUnavailable, "append", stream, "", "no reply (injected)")
	}
	for _, tc := range []struct {
		name     string
		first    bool               // the first checkpoint (base 0), else an incremental
		append   func(string) error // the error of the checkpoint's append
		written  bool               // the append is written all the same
		failPut  int                // the put that fails (0: none)
		sentinel error
	}{
		{"the first, its append refused", true, refused, false, 0, domain.ErrWrongExpectedRevision},
		{"the first, its reply lost", true, lost, true, 0, domain.ErrUnavailable},
		{"the first, a part not stored", true, nil, false, 2, domain.ErrUnavailable},
		{"an incremental, its append refused", false, refused, false, 0, domain.ErrWrongExpectedRevision},
		{"an incremental, its reply lost", false, lost, true, 0, domain.ErrUnavailable},
		{"an incremental, a part not stored", false, nil, false, 3, domain.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newUseCases(t, engine.Options{})
			f.cutPartsAt(1) // several parts, so that some are stored before one fails
			ctx := context.Background()
			in := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
			k1 := f.MustKey(t, in.ID)
			f.MustSecret(t, in.ID, k1, "db-password", secretValue)
			var id domain.BackupID
			due := domain.Due{At: f.clock.Now(), Full: true}
			if tc.first {
				id = f.MustEnabled(t, in, f.clock.Now().AddDate(1, 0, 0))
			} else {
				id = f.MustBackedUp(t, in)
				f.clock.Advance(time.Minute)
				f.MustRotateKey(t, k1)
				f.MustKey(t, in.ID)
				f.MustKey(t, in.ID)
				f.clock.Advance(4 * time.Minute)
				due = domain.Due{At: f.clock.Now()}
			}
			if tc.append != nil {
				f.log.setFault(func(stream string, n int) (error, bool) {
					if stream == domain.BackupStream(id) {
						return tc.append(stream), tc.written
					}
					return nil, false
				})
			}
			if tc.failPut > 0 {
				f.blobs.setFault(func(n int) error {
					if n == tc.failPut {
						return domain.Errorf(domain.ErrUnavailable, "put blob", "", "", "the store failed (injected)")
					}
					return nil
				})
			}
			m := f.mark()

			_, err := f.checkpoints.TakeCheckpoint(ctx, id, due)

			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("take checkpoint: %v; want %v", err, tc.sentinel)
			}
			f.log.setFault(nil)
			f.settle(t)
			named, stored := f.MustNamedBlobs(t, id), f.blobsSince(m)
			f.assertKeptIfNamed(t, stored, named)
			for _, b := range stored {
				if named[b.Name] != tc.written {
					t.Errorf("blob %s named by the backup's stream: %v, want %v (the checkpoint is recorded)", b.Name, named[b.Name], tc.written)
				}
			}
		})
	}
}
