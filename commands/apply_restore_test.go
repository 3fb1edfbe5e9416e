package commands_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/cmd/engine"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// applyWorld is an instance of cn-hangzhou with keys k0 to k6 (k0 with two
// versions) and secrets s0 under k0 and s1 under k1, backed up on
// 2026-05-01, and an empty target in eu-central-1; restores write batches
// of 3 items: [k0 k1 k2] [k3 k4 k5] [k6 s0 s1].
type applyWorld struct {
	f    *useCases
	src  *domain.Instance
	id   domain.BackupID
	keys []domain.KeyID
	to   domain.InstanceID
}

func newApplyWorld(t *testing.T) *applyWorld {
	f := newUseCases(t, engine.Options{RestoreBatch: 3})
	w := &applyWorld{f: f, src: f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})}
	for range 7 {
		w.keys = append(w.keys, f.MustKey(t, w.src.ID))
	}
	f.MustRotateKey(t, w.keys[0])
	f.MustSecret(t, w.src.ID, w.keys[0], "s0", secretValue)
	f.MustSecret(t, w.src.ID, w.keys[1], "s1", secretValue)
	w.id = f.MustBackedUp(t, w.src)
	w.to = f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "eu-central-1"}).ID
	return w
}

// all restores the whole of 2026-05-01 into the target.
func (w *applyWorld) all() commands.RestoreRequest {
	return commands.RestoreRequest{From: w.id, Point: commands.RestorePoint{Day: "2026-05-01"}, Selection: domain.SelectAll(), Target: w.to}
}

// rotateK0 rotates the target's k0 (once restored) as another writer
// would, appending at revision rev of the target's stream, and returns the
// log position of the rotation (0 when the append failed, reported).
func (w *applyWorld) rotateK0(t *testing.T, rev uint64) uint64 {
	t.Helper()
	f, ctx, target := w.f, context.Background(), domain.KMSStream(w.to)
	eid := domain.EventID(f.ids.NewULID())
	pt := make(domain.Plaintext, 32)
	sealed := must(f.keys.Seal(ctx, string(w.to), pt, domain.AssociatedData(f.caller.Account, target, eid)))(t)
	e := domain.Event{ID: eid, Stream: target, Type: domain.TypeKeyRotated, Schema: domain.SchemaVersion,
		OccurredAt: f.clock.Now(), Account: f.caller.Account, Region: "eu-central-1", Instance: w.to,
		Data: domain.EncodeData(&domain.KeyRotated{Key: w.keys[0], Version: 3, Material: sealed})}
	res, err := f.log.Store.Append(ctx, target, domain.ExpectRevision(rev), []domain.Event{e})
	if err != nil {
		t.Errorf("the other writer: %v", err)
		return 0
	}
	return res.LastPosition
}

// wantK0Mismatch checks that a restore's validation found k0, and k0
// alone, differing from the backup.
func (w *applyWorld) wantK0Mismatch(t *testing.T, res *commands.RestoreResult) {
	t.Helper()
	var got []string
	for _, v := range res.Validation {
		got = append(got, v.Code+" "+v.Item)
	}
	if diff := cmp.Diff([]string{commands.FindingVersionMismatch + " " + string(w.keys[0])}, got); diff != "" {
		t.Errorf("validation (-want +got):\n%s\nall: %+v", diff, res.Validation)
	}
}

// batches are the items of the batches a whole restore writes.
func (w *applyWorld) batches() [][]string {
	k := func(i int) string { return string(w.keys[i]) }
	return [][]string{{k(0), k(1), k(2)}, {k(3), k(4), k(5)}, {k(6), "s0", "s1"}}
}

// restoredIDs are the key IDs and secret names the events restore.
func restoredIDs(tb testing.TB, events []domain.Event) []string {
	tb.Helper()
	var out []string
	for _, d := range MustDecode(tb, events) {
		switch d := d.(type) {
		case *domain.KeyRestored:
			out = append(out, string(d.Key))
		case *domain.SecretRestored:
			out = append(out, d.Name)
		default:
			tb.Fatalf("a restore appended %T to the target", d)
		}
	}
	return out
}

// restoreAudits are the items of each restore audit record written since m.
func (f *useCases) restoreAudits(tb testing.TB, m sinceMark) [][]string {
	tb.Helper()
	var out [][]string
	for _, a := range f.appendsSince(m, "audit-") {
		if !a.Written {
			continue
		}
		for _, d := range MustDecode(tb, a.Events) {
			if r := d.(*domain.Audited); r.Action == "restore" {
				out = append(out, append(slices.Clone(r.Keys), r.Secrets...))
			}
		}
	}
	return out
}

// TestApplyRestoreWritesInBatches: a restore writes its items in atomic
// batches, keys before secrets: one append per batch to the target's
// stream, each at the revision the batch was decided on, each item with
// all its versions (a key's material resealed for the target, a secret's
// ciphertexts as they are) and where it came from; one audit record per
// batch listing its items; then the target validates against the backup.
func TestApplyRestoreWritesInBatches(t *testing.T) {
	w := newApplyWorld(t)
	f, ctx := w.f, context.Background()
	m := f.mark()

	res, err := f.restores.Restore(ctx, f.caller, w.all(), nil)
	if err != nil {
		t.Fatal(err)
	}

	if !res.Applied || res.Restored != 9 || res.AlreadyPresent != 0 || res.Batches != 3 || len(res.Validation) != 0 || len(res.Plan.Findings) != 0 {
		t.Fatalf("result: %+v", res)
	}
	for _, it := range res.Plan.Items {
		if it.Status != commands.StatusRestored {
			t.Errorf("%s %s: status %s, want restored", it.Kind, it.ID, it.Status)
		}
	}
	appended := f.appendsSince(m, domain.KMSStream(w.to))
	var got [][]string
	var expected []string
	for _, a := range appended {
		got = append(got, restoredIDs(t, a.Events))
		expected = append(expected, a.Expected)
	}
	if diff := cmp.Diff(w.batches(), got); diff != "" {
		t.Errorf("the items of each append to the target (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"revision 0", "revision 3", "revision 6"}, expected); diff != "" {
		t.Errorf("the expected revision of each append (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(w.batches(), f.restoreAudits(t, m)); diff != "" {
		t.Errorf("the items of each restore audit record (-want +got):\n%s", diff)
	}

	// Each item as the source holds it, from where it came.
	source := f.MustStream(t, domain.KMSStream(w.src.ID))
	target := f.MustStream(t, domain.KMSStream(w.to))
	want := versionsOf(t, f, source)
	gotVersions := versionsOf(t, f, target)
	if diff := cmp.Diff(want, gotVersions); diff != "" {
		t.Errorf("the items' versions, by digest of key material or by ciphertext (-source +target):\n%s", diff)
	}
	from := domain.RestoredFrom{Backup: w.id, Day: "2026-05-01", Seq: res.Plan.To, By: f.caller.String()}
	for _, d := range MustDecode(t, target[1:]) {
		var got domain.RestoredFrom
		switch d := d.(type) {
		case *domain.KeyRestored:
			got = d.From
		case *domain.SecretRestored:
			got = d.From
		}
		if got != from {
			t.Errorf("restored from %+v, want %+v", got, from)
		}
	}
	secrets := secretsOf(t, f, source)
	for _, e := range target[1:] {
		assertNoneHolds(t, "event "+e.ID.String(), e.Data, secrets)
	}
}

// versionsOf is what the events leave of each key and secret of their
// instance: for a key, the SHA-256 of each version's key material (opened
// under the instance's data key); for a secret, each version's key and
// ciphertext.
func versionsOf(tb testing.TB, f *useCases, events []domain.Event) map[string][]string {
	tb.Helper()
	ctx := context.Background()
	out := map[string][]string{}
	open := func(e domain.Event, s domain.Sealed) string {
		pt := must(f.keys.Open(ctx, string(e.Instance), s, domain.AssociatedData(e.Account, e.Stream, e.ID)))(tb)
		defer pt.Wipe()
		return fmt.Sprintf("%x", sha256.Sum256(pt))
	}
	for i, d := range MustDecode(tb, events) {
		e := events[i]
		switch d := d.(type) {
		case *domain.KeyCreated:
			out[string(d.Key)] = []string{open(e, d.Material)}
		case *domain.KeyRotated:
			out[string(d.Key)] = append(out[string(d.Key)], open(e, d.Material))
		case *domain.KeyRestored:
			for _, v := range d.Versions {
				out[string(d.Key)] = append(out[string(d.Key)], open(e, v.Material))
			}
		case *domain.SecretCreated:
			out[d.Name] = []string{string(d.Key) + " " + string(d.Value)}
		case *domain.SecretRotated:
			out[d.Name] = append(out[d.Name], string(d.Key)+" "+string(d.Value))
		case *domain.SecretRestored:
			for _, v := range d.Versions {
				out[d.Name] = append(out[d.Name], string(v.Key)+" "+string(v.Value))
			}
		}
	}
	return out
}

// TestApplyRestoreInterruptedThenRetried: a restore whose second batch
// fails (the log refuses it, or writes it and the reply is lost) stops
// with the log's error (domain.ErrUnavailable), saying how far it got and
// that a retry continues; the batches before stay written, each whole.
// Retried, it writes what is missing and skips what is there, identical:
// the target ends with every item once and validates. Every batch written
// has its audit record, the one whose reply was lost too (the record is in
// the batch's append).
func TestApplyRestoreInterruptedThenRetried(t *testing.T) {
	for _, tc := range []struct {
		name             string
		written          bool // the failing append is written
		wantAfterFailure int  // items in the target after the failure
		wantRetryAppends []string
	}{
		{"refused before it is written", false, 3, []string{"revision 3", "revision 6"}},
		{"written, its reply lost", true, 6, []string{"revision 6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newApplyWorld(t)
			f, ctx := w.f, context.Background()
			target := domain.KMSStream(w.to)
			f.log.setFault(func(stream string, n int) (error, bool) {
				if stream == target && n == 2 {
					return domain.Errorf(domain.ErrUnavailable, "append", stream, "", "the log failed (injected)"), tc.written
				}
				return nil, false
			})
			m := f.mark()

			res, err := f.restores.Restore(ctx, f.caller, w.all(), nil)

			if !errors.Is(err, domain.ErrUnavailable) || !strings.Contains(err.Error(), "restored so far: 3; retry to continue") {
				t.Fatalf("restore: %v; want ErrUnavailable saying 3 items were restored and to retry", err)
			}
			if res == nil || res.Applied || res.Restored != 3 {
				t.Fatalf("result: %+v; want 3 restored, not applied", res)
			}
			f.log.setFault(nil)
			f.settle(t)
			if got := restoredIDs(t, f.MustStream(t, target)[1:]); len(got) != tc.wantAfterFailure {
				t.Fatalf("after the failure the target holds %v, want %d items", got, tc.wantAfterFailure)
			}
			retried := f.mark()

			res, err = f.restores.Restore(ctx, f.caller, w.all(), nil)

			if err != nil || !res.Applied || res.Restored != 9-tc.wantAfterFailure || res.AlreadyPresent != tc.wantAfterFailure ||
				len(res.Validation) != 0 {
				t.Fatalf("retry: %v; %+v", err, res)
			}
			var expected []string
			for _, a := range f.appendsSince(retried, target) {
				expected = append(expected, a.Expected)
			}
			if diff := cmp.Diff(tc.wantRetryAppends, expected); diff != "" {
				t.Errorf("the retry's appends to the target, by expected revision (-want +got):\n%s", diff)
			}
			got := restoredIDs(t, f.MustStream(t, target)[1:])
			if diff := cmp.Diff(slices.Concat(w.batches()...), got); diff != "" {
				t.Errorf("items restored into the target, in order (-want +got):\n%s", diff)
			}
			audited := slices.Concat(f.restoreAudits(t, m)...)
			wantAudited := slices.Concat(w.batches()...)
			slices.Sort(audited)
			slices.Sort(wantAudited)
			if diff := cmp.Diff(wantAudited, audited); diff != "" {
				t.Errorf("items in restore audit records (-want +got):\n%s", diff)
			}
		})
	}
}

// TestApplyRestoreValidates: the validation after an apply compares the
// target with the backup as the target is then: a restored key that
// another writer rotated while the restore ran (its last batch lost the
// race, was decided again, and written) is reported as a version
// mismatch; the restore is applied.
func TestApplyRestoreValidates(t *testing.T) {
	w := newApplyWorld(t)
	f, ctx := w.f, context.Background()
	target := domain.KMSStream(w.to)
	f.log.setFault(func(stream string, n int) (error, bool) {
		if stream == target && n == 3 { // before the last batch: k0, restored by the first, rotated
			w.rotateK0(t, 6)
		}
		return nil, false
	})

	res, err := f.restores.Restore(ctx, f.caller, w.all(), nil)

	if err != nil || !res.Applied || res.Restored != 9 {
		t.Fatalf("restore: %v; %+v", err, res)
	}
	w.wantK0Mismatch(t, res)
	var expected []string
	for _, a := range f.log.appendsTo(target)[1:] { // after the target's creation
		expected = append(expected, a.Expected)
	}
	if diff := cmp.Diff([]string{"revision 0", "revision 3", "revision 6", "revision 7"}, expected); diff != "" {
		t.Errorf("appends to the target, by expected revision (-want +got):\n%s", diff)
	}
}

// TestApplyRestoreValidatesAgainAfterAnotherWriter: batches are validated
// as they land, while the apply goes on; when the target's revision at the
// end is not the one the last batch left (another writer rotated k0 after
// every batch was written, without a race), the whole point is validated
// again against the target as it is then, and k0 is a version mismatch.
func TestApplyRestoreValidatesAgainAfterAnotherWriter(t *testing.T) {
	w := newApplyWorld(t)
	f, ctx := w.f, context.Background()
	var phases []string
	progress := func(p commands.RestoreProgress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
		if p.Phase != commands.PhaseApply || p.Done != p.Total || p.Total == 0 {
			return
		}
		if pos := w.rotateK0(t, 9); pos > 0 {
			if err := f.kms.Applied.WaitFor(ctx, pos); err != nil {
				t.Errorf("wait for the read model: %v", err)
			}
		}
	}

	res, err := f.restores.Restore(ctx, f.caller, w.all(), progress)

	if err != nil || !res.Applied || res.Restored != 9 || res.Batches != 3 {
		t.Fatalf("restore: %v; %+v", err, res)
	}
	w.wantK0Mismatch(t, res)
	if diff := cmp.Diff([]string{commands.PhasePlan, commands.PhaseApply, commands.PhaseValidate}, phases); diff != "" {
		t.Errorf("phases reported (-want +got):\n%s", diff)
	}
}

// TestApplyRestoreDecidesABatchWhileTheReadModelAppliesTheOneBefore: the
// batches are pipelined. Restoring keys k0 and k1 and secret s under k1 in
// batches of one item, the read models are held from the append of [k1]
// on: the batch [s] is decided and appended from the revision [k1]'s
// append returned, its key known from the batch in flight, before the
// read model shows k1; then the restore ends complete and valid.
func TestApplyRestoreDecidesABatchWhileTheReadModelAppliesTheOneBefore(t *testing.T) {
	f := newUseCases(t, engine.Options{RestoreBatch: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
	k0, k1 := f.MustKey(t, src.ID), f.MustKey(t, src.ID)
	f.MustSecret(t, src.ID, k1, "s", secretValue)
	id := f.MustBackedUp(t, src)
	to := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "eu-central-1"}).ID
	target := domain.KMSStream(to)
	var release func()
	var sawK1 []error
	f.log.setFault(func(stream string, n int) (error, bool) {
		switch {
		case stream != target:
		case n == 2: // [k1]: the read models stop once they show [k0]
			head := must(f.log.Head(ctx))(t)
			if err := f.kms.Applied.WaitFor(ctx, head); err != nil {
				t.Errorf("wait for [k0]: %v", err)
			}
			release = f.log.holdSubscribers()
		case n == 3: // [s]: decided while the read model did not show k1
			_, err := f.kms.ShowKey(f.caller, k1, "eu-central-1")
			sawK1 = append(sawK1, err)
			release()
		}
		return nil, false
	})

	res, err := f.restores.Restore(ctx, f.caller, commands.RestoreRequest{From: id, Point: commands.RestorePoint{Day: "2026-05-01"},
		Selection: domain.SelectAll(), Target: to}, nil)

	if err != nil || !res.Applied || res.Restored != 3 || res.Batches != 3 || len(res.Validation) != 0 {
		t.Fatalf("restore: %v; %+v", err, res)
	}
	if len(sawK1) != 1 || !errors.Is(sawK1[0], domain.ErrNotFound) {
		t.Errorf("the read model when [s] was appended: %v, want k1 not found yet (and one append of [s])", sawK1)
	}
	if diff := cmp.Diff([]string{string(k0), string(k1), "s"}, restoredIDs(t, f.MustStream(t, target)[1:])); diff != "" {
		t.Errorf("items restored into the target, in order (-want +got):\n%s", diff)
	}
	var expected []string
	for _, a := range f.log.appendsTo(target)[1:] {
		expected = append(expected, a.Expected)
	}
	if diff := cmp.Diff([]string{"revision 0", "revision 1", "revision 2"}, expected); diff != "" {
		t.Errorf("appends to the target, by expected revision (-want +got):\n%s", diff)
	}
}

// TestApplyRestoreClaimsNamesUsedBefore: a restore claims its items' names
// expecting no reservation stream, and reads a name's stream only when the
// append finds one. Key k3 and secret s1 deleted from their instance (their
// names released) and restored into it: the first append of each batch is
// refused, the second claims the name after its release; the rest of the
// day is present and skipped.
func TestApplyRestoreClaimsNamesUsedBefore(t *testing.T) {
	w := newApplyWorld(t)
	f, ctx := w.f, context.Background()
	f.MustDeleteKey(t, w.keys[3])
	if err := f.kms.DeleteSecret(ctx, f.caller, "s1", ""); err != nil {
		t.Fatal(err)
	}
	m := f.mark()
	req := w.all()
	req.Target = w.src.ID

	res, err := f.restores.Restore(ctx, f.caller, req, nil)

	if err != nil || !res.Applied || res.Restored != 2 || res.AlreadyPresent != 7 || len(res.Validation) != 0 {
		t.Fatalf("restore: %v; %+v", err, res)
	}
	for _, n := range []struct{ kind, name string }{{domain.NameKindKey, string(w.keys[3])}, {domain.NameKindSecret, "s1"}} {
		stream := domain.NameStream(f.caller.Account, "cn-hangzhou", n.kind, n.name)
		var got []string
		for _, a := range f.appendsSince(m, stream) {
			got = append(got, fmt.Sprintf("%s written %v", a.Expected, a.Written))
		}
		if diff := cmp.Diff([]string{"no-stream written false", "revision 1 written true"}, got); diff != "" {
			t.Errorf("appends to the reservation of %s %s (-want +got):\n%s", n.kind, n.name, diff)
		}
		events := MustDecode(t, f.MustStream(t, stream))
		if c, ok := events[len(events)-1].(*domain.NameClaimed); !ok || c.Instance != w.src.ID {
			t.Errorf("%s %s: the reservation ends with %+v, want claimed by %s", n.kind, n.name, events[len(events)-1], w.src.ID)
		}
	}
}
