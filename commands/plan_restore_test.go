package commands_test

import (
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

// planWorld is an instance of cn-hangzhou with keys k1 (two versions) and
// k2, secret db-password under k1 and api-token under k2, backed up at
// useCaseStart (2026-05-01, UTC). The instance still holds them all.
type planWorld struct {
	f      *useCases
	src    *domain.Instance
	id     domain.BackupID
	k1, k2 domain.KeyID
}

func newPlanWorld(t *testing.T) *planWorld {
	f := newUseCases(t, engine.Options{})
	src := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
	w := &planWorld{f: f, src: src, k1: f.MustKey(t, src.ID), k2: f.MustKey(t, src.ID)}
	f.MustRotateKey(t, w.k1)
	f.MustSecret(t, src.ID, w.k1, "db-password", secretValue)
	f.MustSecret(t, src.ID, w.k2, "api-token", secretValue)
	w.id = f.MustBackedUp(t, src)
	return w
}

// MustSelect is the selection of keys and secrets (none of either: all).
func MustSelect(tb testing.TB, keys []domain.KeyID, secrets ...string) domain.RestoreSelection {
	tb.Helper()
	var ks []string
	for _, k := range keys {
		ks = append(ks, string(k))
	}
	return must(domain.ParseRestoreSelection(len(ks) == 0 && len(secrets) == 0, ks, secrets))(tb)
}

// TestPlanRestoreFindings: a plan checks every condition against the
// target and reports every failure as a finding, all at once, and writes
// nothing: the target's quotas, a key ID or secret name taken in the
// target's region, a secret whose key is neither in the target nor
// restored with it, a day that is not viewable, and a target that is not
// the caller's (reported exactly as one that does not exist).
func TestPlanRestoreFindings(t *testing.T) {
	type finding struct{ Code, Item string }
	// Targets: an instance of eu-central-1 (no item of the backup's there),
	// one with quotas of one key and one secret, one of the backup's
	// region (which holds every item), another account's, and none.
	const (
		elsewhere = iota
		small
		sameRegion
		otherAccount
		missing
	)
	all := func(*testing.T, *planWorld) domain.RestoreSelection { return domain.SelectAll() }
	for _, tc := range []struct {
		name   string
		target int
		sel    func(*testing.T, *planWorld) domain.RestoreSelection
		day    domain.Day
		want   func(w *planWorld, to domain.InstanceID) []finding
		// asMissing: the finding is exactly that of an instance that does
		// not exist.
		asMissing bool
	}{
		{name: "nothing in the way", target: elsewhere, sel: all, day: "2026-05-01",
			want: func(*planWorld, domain.InstanceID) []finding { return nil }},
		{name: "quotas", target: small, sel: all, day: "2026-05-01",
			want: func(_ *planWorld, to domain.InstanceID) []finding {
				return []finding{{commands.FindingKeyQuota, string(to)}, {commands.FindingSecretQuota, string(to)}}
			}},
		{name: "conflicts in the target's region", target: sameRegion, sel: all, day: "2026-05-01",
			want: func(w *planWorld, _ domain.InstanceID) []finding {
				return []finding{{commands.FindingKeyExists, string(w.k1)}, {commands.FindingKeyExists, string(w.k2)},
					{commands.FindingSecretExists, "api-token"}, {commands.FindingSecretExists, "db-password"}}
			}},
		{name: "a secret without its key", target: elsewhere, day: "2026-05-01",
			sel: func(t *testing.T, _ *planWorld) domain.RestoreSelection { return MustSelect(t, nil, "db-password") },
			want: func(*planWorld, domain.InstanceID) []finding {
				return []finding{{commands.FindingSecretKeyMissing, "db-password"}}
			}},
		{name: "a secret with its key", target: elsewhere, day: "2026-05-01",
			sel: func(t *testing.T, w *planWorld) domain.RestoreSelection {
				return MustSelect(t, []domain.KeyID{w.k1}, "db-password")
			},
			want: func(*planWorld, domain.InstanceID) []finding { return nil }},
		{name: "an item not in the backup", target: elsewhere, day: "2026-05-01",
			sel: func(t *testing.T, _ *planWorld) domain.RestoreSelection { return MustSelect(t, nil, "no-such-secret") },
			want: func(*planWorld, domain.InstanceID) []finding {
				return []finding{{commands.FindingItemNotInBackup, "no-such-secret"}}
			}},
		{name: "a day before the backup was enabled", target: elsewhere, sel: all, day: "2026-04-30",
			want: func(*planWorld, domain.InstanceID) []finding {
				return []finding{{commands.FindingDayNotViewable, "2026-04-30"}}
			}},
		{name: "another account's instance", target: otherAccount, sel: all, day: "2026-05-01", asMissing: true,
			want: func(_ *planWorld, to domain.InstanceID) []finding {
				return []finding{{commands.FindingTargetNotFound, string(to)}}
			}},
		{name: "an instance that does not exist", target: missing, sel: all, day: "2026-05-01", asMissing: true,
			want: func(_ *planWorld, to domain.InstanceID) []finding {
				return []finding{{commands.FindingTargetNotFound, string(to)}}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newPlanWorld(t)
			f := w.f
			var to domain.InstanceID
			switch tc.target {
			case elsewhere:
				to = f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "eu-central-1"}).ID
			case small:
				to = f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "eu-central-1", KeyQuota: 1, SecretQuota: 1}).ID
			case sameRegion:
				to = f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"}).ID
			case otherAccount:
				other := commands.Caller{Account: domain.NewAccountID(f.ids.NewULID())}
				to = f.MustInstance(t, other, commands.CreateInstanceInput{Region: "eu-central-1"}).ID
			case missing:
				to = domain.NewInstanceID(f.ids.NewULID())
			}
			m := f.mark()

			plan, err := f.restores.PlanRestore(context.Background(), f.caller,
				commands.RestoreRequest{From: w.id, Point: commands.RestorePoint{Day: tc.day}, Selection: tc.sel(t, w), Target: to}, nil)
			if err != nil {
				t.Fatal(err)
			}

			var got []finding
			for _, f := range plan.Findings {
				got = append(got, finding{f.Code, f.Item})
			}
			if diff := cmp.Diff(tc.want(w, to), got); diff != "" {
				t.Errorf("findings (-want +got):\n%s\nall: %+v", diff, plan.Findings)
			}
			if want := fmt.Sprintf("KMS instance %s not found", to); tc.asMissing && len(plan.Findings) == 1 && plan.Findings[0].Message != want {
				t.Errorf("finding message %q, want %q", plan.Findings[0].Message, want)
			}
			if plan.FindingCount() != len(plan.Findings) || plan.Backup != w.id || plan.Day != tc.day || plan.Target != to {
				t.Errorf("plan: %+v", plan)
			}
			if a, b := f.appendsSince(m, ""), f.blobsSince(m); len(a) != 0 || len(b) != 0 {
				t.Errorf("the plan appended %d times and stored %d blobs, want nothing written", len(a), len(b))
			}
		})
	}
}

// TestPlanRestoreItems: a plan lists the items of the point, keys first,
// with their versions, the key of each secret, and their status: planned,
// or present when the target holds them identical (a plan into the
// backup's own instance, where nothing changed, has nothing to do).
func TestPlanRestoreItems(t *testing.T) {
	w := newPlanWorld(t)
	f := w.f
	other := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "eu-central-1"})
	for _, tc := range []struct {
		name    string
		to      domain.InstanceID
		status  string
		present int
	}{
		{"into another region", other.ID, commands.StatusPlanned, 0},
		{"into the backup's own instance", w.src.ID, commands.StatusPresent, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := f.restores.PlanRestore(context.Background(), f.caller,
				commands.RestoreRequest{From: w.id, Point: commands.RestorePoint{Day: "2026-05-01"}, Selection: domain.SelectAll(), Target: tc.to}, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := []commands.RestoreItem{
				{Kind: "key", ID: string(w.k1), Versions: 2, Status: tc.status},
				{Kind: "key", ID: string(w.k2), Versions: 1, Status: tc.status},
				{Kind: "secret", ID: "api-token", Versions: 1, KeyID: string(w.k2), Status: tc.status},
				{Kind: "secret", ID: "db-password", Versions: 1, KeyID: string(w.k1), Status: tc.status},
			}
			if diff := cmp.Diff(want, plan.Items); diff != "" {
				t.Errorf("items (-want +got):\n%s", diff)
			}
			if plan.Keys != 2 || plan.Secrets != 2 || plan.Present != tc.present || len(plan.Findings) != 0 || plan.NothingToRestore() != (tc.present > 0) {
				t.Errorf("plan: %d keys, %d secrets, %d present, findings %+v", plan.Keys, plan.Secrets, plan.Present, plan.Findings)
			}
		})
	}
}

// TestPlanRestoreAtAnInstant: a plan at an instant T, between two
// checkpoints or at one, holds the state of every event that occurred at
// or before T: the newest base at or before T, then each slice event up to
// T, though the checkpoint that holds them was taken after T (and events
// of T itself, wherever they fell). An instant after the last checkpoint
// holds what the backup holds, as of that checkpoint.
//
// Day 1: key A created before enabling (base 0, 09:30); at 09:32 A rotated
// and B created (checkpoint 2, 09:35); at 09:36 C created, at 09:37 A
// rotated, at 09:38 B deleted (checkpoint 3, 09:40); at 23:00 D created.
// Day 2: the daily full (checkpoint 4, 00:00) and its base; at 00:03 A
// rotated (checkpoint 5, 00:05). Once the base of day 2 is stored, the
// slices before it are deleted: a plan at an instant of day 2 reads the
// base and the slice after it, nothing older.
func TestPlanRestoreAtAnInstant(t *testing.T) {
	f := newUseCases(t, engine.Options{})
	ctx := context.Background()
	src := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
	a := f.MustKey(t, src.ID)
	id := f.MustBackedUp(t, src)
	day1 := func(h, min, sec int) time.Time { return time.Date(2026, 5, 1, h, min, sec, 0, time.UTC) }
	day2 := func(h, min, sec int) time.Time { return time.Date(2026, 5, 2, h, min, sec, 0, time.UTC) }
	f.clock.Set(day1(9, 32, 0))
	f.MustRotateKey(t, a)
	b := f.MustKey(t, src.ID)
	f.clock.Set(day1(9, 35, 0))
	f.MustCheckpoint(t, id, domain.Due{At: f.clock.Now()})
	f.clock.Set(day1(9, 36, 0))
	c := f.MustKey(t, src.ID)
	f.clock.Set(day1(9, 37, 0))
	f.MustRotateKey(t, a)
	f.clock.Set(day1(9, 38, 0))
	f.MustDeleteKey(t, b)
	f.clock.Set(day1(9, 40, 0))
	f.MustCheckpoint(t, id, domain.Due{At: f.clock.Now()})
	f.clock.Set(day1(23, 0, 0))
	d := f.MustKey(t, src.ID)
	to := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "eu-central-1"}).ID

	key := func(k domain.KeyID, versions uint32) commands.RestoreItem {
		return commands.RestoreItem{Kind: "key", ID: string(k), Versions: versions, Status: commands.StatusPlanned}
	}
	type instant struct {
		at      time.Time
		want    []commands.RestoreItem
		covered time.Time // plan.At
		seq     uint64    // plan.To: the last checkpoint read
	}
	check := func(t *testing.T, tc instant) {
		t.Run(tc.at.Format("01-02T15:04:05"), func(t *testing.T) {
			plan, err := f.restores.PlanRestore(ctx, f.caller,
				commands.RestoreRequest{From: id, Point: commands.RestorePoint{At: tc.at}, Selection: domain.SelectAll(), Target: to}, nil)
			if err != nil {
				t.Fatal(err)
			}
			sorted := cmpopts.SortSlices(func(x, y commands.RestoreItem) bool { return x.ID < y.ID })
			if diff := cmp.Diff(tc.want, plan.Items, sorted); diff != "" {
				t.Errorf("items (-want +got):\n%s", diff)
			}
			if plan.Day != domain.DayOf(tc.at, time.UTC) || !plan.At.Equal(tc.covered) || plan.To != tc.seq || len(plan.Findings) != 0 {
				t.Errorf("plan: day %s, at %s, to checkpoint %d, findings %+v; want %s, %s, %d, none",
					plan.Day, plan.At, plan.To, plan.Findings, domain.DayOf(tc.at, time.UTC), tc.covered, tc.seq)
			}
		})
	}
	for _, tc := range []instant{
		{day1(9, 31, 0), []commands.RestoreItem{key(a, 1)}, day1(9, 31, 0), 2},
		{day1(9, 32, 0), []commands.RestoreItem{key(a, 2), key(b, 1)}, day1(9, 32, 0), 2},
		{day1(9, 35, 0), []commands.RestoreItem{key(a, 2), key(b, 1)}, day1(9, 35, 0), 3},
		{day1(9, 36, 30), []commands.RestoreItem{key(a, 2), key(b, 1), key(c, 1)}, day1(9, 36, 30), 3},
		{day1(9, 37, 0), []commands.RestoreItem{key(a, 3), key(b, 1), key(c, 1)}, day1(9, 37, 0), 3},
		{day1(9, 38, 0), []commands.RestoreItem{key(a, 3), key(c, 1)}, day1(9, 38, 0), 3},
		{day1(9, 45, 0), []commands.RestoreItem{key(a, 3), key(c, 1)}, day1(9, 40, 0), 3},
	} {
		check(t, tc)
	}

	f.clock.Set(day2(0, 0, 0))
	f.MustCheckpoint(t, id, domain.Due{At: f.clock.Now(), Full: true})
	f.MustRebase(t, id)
	f.clock.Set(day2(0, 3, 0))
	f.MustRotateKey(t, a)
	f.clock.Set(day2(0, 5, 0))
	f.MustCheckpoint(t, id, domain.Due{At: f.clock.Now()})
	for _, cp := range f.MustCheckpoints(t, id)[:4] {
		for _, p := range cp.SliceParts() {
			if err := f.blobs.DeleteBlob(ctx, domain.DataRef(id, 0), p.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []instant{
		{day2(0, 2, 0), []commands.RestoreItem{key(a, 3), key(c, 1), key(d, 1)}, day2(0, 2, 0), 5},
		{day2(0, 4, 0), []commands.RestoreItem{key(a, 4), key(c, 1), key(d, 1)}, day2(0, 4, 0), 5},
	} {
		check(t, tc)
	}
}

// TestPlanRestoreErrors: what a plan cannot even read is an error, with
// its sentinel (and, where the user can do something, a hint), not a
// finding: nothing selected, a backup the caller cannot see, an instant
// outside its day or before the backup's first checkpoint.
func TestPlanRestoreErrors(t *testing.T) {
	w := newPlanWorld(t)
	f := w.f
	to := f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "eu-central-1"}).ID
	other := commands.Caller{Account: domain.NewAccountID(f.ids.NewULID())}
	for _, tc := range []struct {
		name     string
		caller   commands.Caller
		point    commands.RestorePoint
		sel      domain.RestoreSelection
		sentinel error
		item     string
		hint     string
	}{
		{"nothing selected", f.caller, commands.RestorePoint{Day: "2026-05-01"}, domain.RestoreSelection{}, domain.ErrInvalidArgument, "", ""},
		{"another account's backup", other, commands.RestorePoint{Day: "2026-05-01"}, domain.SelectAll(), domain.ErrNotFound, string(w.id), ""},
		{"an instant outside its day", f.caller, commands.RestorePoint{Day: "2026-05-01", At: time.Date(2026, 5, 2, 9, 0, 0, 0, time.UTC)},
			domain.SelectAll(), domain.ErrInvalidArgument, "", ""},
		{"an instant before the first checkpoint", f.caller, commands.RestorePoint{At: useCaseStart.Add(-time.Minute)},
			domain.SelectAll(), domain.ErrFailedPrecondition, "2026-05-01T09:29:00Z", "choose a later time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := f.mark()
			plan, err := f.restores.PlanRestore(context.Background(), tc.caller,
				commands.RestoreRequest{From: w.id, Point: tc.point, Selection: tc.sel, Target: to}, nil)
			var de *domain.Error
			if plan != nil || !errors.Is(err, tc.sentinel) || !errors.As(err, &de) {
				t.Fatalf("plan: %+v, %v; want a *domain.Error wrapping %v", plan, err, tc.sentinel)
			}
			if de.Item != tc.item || de.Hint != tc.hint {
				t.Errorf("error item %q and hint %q, want %q and %q (%v)", de.Item, de.Hint, tc.item, tc.hint, err)
			}
			if a := f.appendsSince(m, ""); len(a) != 0 {
				t.Errorf("the plan appended %d times", len(a))
			}
		})
	}
}
