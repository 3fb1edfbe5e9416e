package backup

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// randomHistory drives e through a random history of steps changes on a
// new KMS instance with an enabled backup: creations, rotations and
// deletions of keys and secrets, re-creations of deleted secret names,
// clock moves of minutes to days with the schedule running, and downtimes
// (the engine stopped while the clock moves, then caught up). It returns
// the instance, the backup and the history, for failure messages.
func randomHistory(t *testing.T, e *Engine, rng *rand.Rand, steps int) (*domain.Instance, *domain.Backup, []string) {
	t.Helper()
	ctx := context.Background()
	in, b := e.EnabledBackup([]string{"UTC", "Asia/Shanghai", "America/New_York"}[rng.IntN(3)])
	history := []string{fmt.Sprintf("start %s, zone %s", e.Clock.Now(), b.TimeZone)}
	var keys []domain.KeyID
	secrets := map[string]bool{}
	for step := range steps {
		switch op := rng.IntN(10); {
		case op < 3 || len(keys) == 0:
			k := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, fmt.Sprint("key ", step)))
			keys = append(keys, k.ID)
			history = append(history, "create key "+string(k.ID))
		case op < 5:
			k := keys[rng.IntN(len(keys))]
			Must(e.KMS.RotateKey(ctx, e.Caller, k, ""))
			history = append(history, "rotate key "+string(k))
		case op < 6:
			i := rng.IntN(len(keys))
			if e.KMS.DeleteKey(ctx, e.Caller, keys[i], "") == nil {
				history = append(history, "delete key "+string(keys[i]))
				keys = append(keys[:i], keys[i+1:]...)
			}
		case op < 8:
			name := fmt.Sprint("s", rng.IntN(6))
			if secrets[name] {
				Must(e.KMS.RotateSecret(ctx, e.Caller, name, "", domain.Plaintext(fmt.Sprint("v", step))))
				history = append(history, "rotate secret "+name)
			} else {
				Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: name, Instance: in.ID,
					Key: keys[rng.IntN(len(keys))], Value: domain.Plaintext(fmt.Sprint("v", step))}))
				secrets[name] = true
				history = append(history, "create secret "+name)
			}
		default:
			for name := range secrets {
				if e.KMS.DeleteSecret(ctx, e.Caller, name, "") == nil {
					delete(secrets, name)
					history = append(history, "delete secret "+name)
				}
				break
			}
		}
		switch rng.IntN(12) {
		case 0, 1, 2:
			d := time.Duration(1+rng.IntN(90)) * time.Minute
			if rng.IntN(6) == 0 {
				d = time.Duration(1+rng.IntN(36*60)) * time.Minute
			}
			e.Advance(d)
			history = append(history, fmt.Sprintf("advance %s to %s", d, e.Clock.Now()))
		case 3:
			// Down: missed checkpoints, then one catch-up.
			d := time.Duration(10+rng.IntN(30*60)) * time.Minute
			e.DownUntil(e.Clock.Now().Add(d))
			history = append(history, fmt.Sprintf("down %s, caught up at %s", d, e.Clock.Now()))
		}
	}
	e.Advance(10 * time.Minute)
	return in, Must(e.Backups.ShowBackupInstance(e.Caller, b.ID)), history
}

// seededHistory makes a random history (randomHistory) of steps changes
// on an engine that writes bases as the schedule goes (a small rebase
// threshold), from the -seed flag or a random seed, which it prints; on
// failure the test logs the seed and the history. stream tells tests
// apart that share a seed.
func seededHistory(t *testing.T, stream uint64, steps int) (*Engine, *rand.Rand, *domain.Instance, *domain.Backup) {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, stream))
	e := rebasingEngine(t, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(24*60))*time.Minute), 0.1, 6)
	in, b, history := randomHistory(t, e, rng, steps)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d; history:\n%s", seed, strings.Join(history, "\n"))
		}
	})
	return e, rng, in, b
}

// naiveItems computes from the KMS instance's log what a restore point
// holds: at an instant (every event at or before at), or a whole day
// [start, end) (the events before it at an instant, then every item as it
// last stood within it). The events of the backup's first checkpoint
// (revisions before enabled) are always at an instant: nothing deleted
// before enabling shows. Keys: description, creation and deletion times, and the digest of
// each version's material; secrets: each version's key and ciphertext.
func naiveItems(t *testing.T, e *Engine, in domain.InstanceID, enabled uint64, start, end time.Time, whole bool) map[string]string {
	t.Helper()
	ctx := context.Background()
	type item struct {
		desc             string
		created, deleted time.Time
		versions         []string
	}
	st := map[string]*item{}
	for from := uint64(0); ; {
		page := Must(e.Store.ReadStream(ctx, domain.KMSStream(in), from, false, 1000))
		for _, ev := range page {
			from = ev.Revision + 1
			inDay := whole && !ev.OccurredAt.Before(start) && ev.Revision >= enabled
			if whole && !ev.OccurredAt.Before(end) || !whole && ev.OccurredAt.After(end) {
				continue
			}
			version := func(m domain.Sealed) string {
				pt := Must(e.KMS.Sealer.Open(ctx, string(ev.Instance), m, domain.AssociatedData(ev.Account, ev.Stream, ev.ID)))
				d := commands.KeyVersionDigest(pt)
				pt.Wipe()
				return fmt.Sprintf("%x@%s", d[:6], ev.OccurredAt.Format(time.RFC3339))
			}
			switch d := Must(ev.Decode()).(type) {
			case *domain.KeyCreated:
				st["key/"+string(d.Key)] = &item{desc: d.Description, created: ev.OccurredAt, versions: []string{version(d.Material)}}
			case *domain.KeyRotated:
				it := st["key/"+string(d.Key)]
				it.versions = append(it.versions, version(d.Material))
			case *domain.SecretCreated:
				st["secret/"+d.Name] = &item{created: ev.OccurredAt, versions: []string{fmt.Sprintf("%s:%x@%s", d.Key, d.Value, ev.OccurredAt.Format(time.RFC3339))}}
			case *domain.SecretRotated:
				it := st["secret/"+d.Name]
				it.versions = append(it.versions, fmt.Sprintf("%s:%x@%s", d.Key, d.Value, ev.OccurredAt.Format(time.RFC3339)))
			case *domain.KeyDeleted, *domain.SecretDeleted:
				k := "key/"
				id := ""
				if kd, ok := d.(*domain.KeyDeleted); ok {
					id = string(kd.Key)
				} else {
					k, id = "secret/", d.(*domain.SecretDeleted).Name
				}
				if inDay {
					st[k+id].deleted = ev.OccurredAt
				} else {
					delete(st, k+id)
				}
			}
		}
		if len(page) < 1000 {
			break
		}
	}
	out := map[string]string{}
	for k, it := range st {
		out[k] = fmt.Sprintf("%q created %s deleted %s %s", it.desc, it.created.Format(time.RFC3339), it.deleted.Format(time.RFC3339), strings.Join(it.versions, " "))
	}
	return out
}

// sourceItems reads every item of a loaded restore point in the form
// naiveItems gives, opening key material under the backup's data key.
func sourceItems(t *testing.T, e *Engine, b *domain.Backup, src commands.RestoreSource) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	var last commands.ItemRef
	var versions uint64
	err := src.Each(ctx, commands.ItemRef{}, func(it *commands.BackedUpItem) error {
		ref := commands.ItemRef{Kind: it.Kind, ID: it.ID}
		if last != (commands.ItemRef{}) && !(last.Kind < ref.Kind || last.Kind == ref.Kind && last.ID < ref.ID) {
			return fmt.Errorf("%v after %v", ref, last)
		}
		last = ref
		var vs []string
		for i, v := range it.Versions {
			if v.Version != uint32(i)+1 {
				return fmt.Errorf("%s: version %d at %d", it.ID, v.Version, i)
			}
			if it.Kind == commands.ItemKindKey {
				pt, err := e.Restores.Sealer.Open(ctx, b.DataRef(), v.Material, commands.BackupAAD(b.Account, b.DataRef(), v.SealedBy))
				if err != nil {
					return err
				}
				d := commands.KeyVersionDigest(pt)
				pt.Wipe()
				vs = append(vs, fmt.Sprintf("%x@%s", d[:6], v.CreatedAt.Format(time.RFC3339)))
			} else {
				vs = append(vs, fmt.Sprintf("%s:%x@%s", v.KeyID, v.Value, v.CreatedAt.Format(time.RFC3339)))
			}
		}
		versions += uint64(len(vs))
		out[it.Kind+"/"+it.ID] = fmt.Sprintf("%q created %s deleted %s %s", it.Description, it.CreatedAt.Format(time.RFC3339),
			it.DeletedAt.Format(time.RFC3339), strings.Join(vs, " "))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keys, secrets, vers, err := src.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if keys+secrets != uint64(len(out)) || vers != versions {
		t.Fatalf("Counts: %d keys, %d secrets, %d versions; Each: %d items, %d versions", keys, secrets, vers, len(out), versions)
	}
	return out
}

// TestLoadEqualsReplay: over random histories with downtime, deletions and
// re-creations, and bases written as the schedule goes (a small rebase
// threshold), loading any instant (a checkpoint's or not) gives the state
// of replaying the log from the start to it, and loading a whole day gives
// every item as it last stood within the day, computed naively from the
// log; loading through an older base and more slices gives what the
// newest base and fewer give; a load restricted to some items gives those
// items as the whole load does.
func TestLoadEqualsReplay(t *testing.T) {
	e, rng, in, b := seededHistory(t, 11, 150)
	ctx := context.Background()
	bases := e.baseRecords(b.ID)
	t.Logf("%d bases, at checkpoints %v", len(bases), func() (out []uint64) {
		for _, x := range bases {
			out = append(out, x.Seq)
		}
		return out
	}())
	cps := e.CheckpointEvents(b.ID)
	loc := Must(time.LoadLocation(b.TimeZone))
	enabled := cps[0].Next
	first, last := cps[0].At, cps[len(cps)-1].At
	for round := range 12 {
		// An instant of the backup's span, on a checkpoint or not.
		at := first.Add(time.Duration(rng.Int64N(int64(last.Sub(first)) + 1))).Truncate(time.Second)
		if round%4 == 0 {
			at = cps[rng.IntN(len(cps))].At
		}
		day := domain.DayOf(at, loc)
		src := Must(e.Days.Open(ctx, b, commands.RestorePoint{Day: day, At: at}, nil))
		want := naiveItems(t, e, in.ID, enabled, at, at, false)
		loaded := sourceItems(t, e, b, src)
		if diff := cmp.Diff(want, loaded); diff != "" {
			t.Fatalf("instant %s: (-log +loaded)\n%s", at, diff)
		}
		_ = src.Close()

		whole := Must(e.Days.Open(ctx, b, commands.RestorePoint{Day: day}, nil))
		all := sourceItems(t, e, b, whole)
		want = naiveItems(t, e, in.ID, enabled, day.Start(loc), day.Next().Start(loc), true)
		if diff := cmp.Diff(want, all); diff != "" {
			t.Fatalf("day %s: (-log +loaded)\n%s", day, diff)
		}

		// Through an older base and more slices.
		if len(bases) > 1 {
			e.Days.BaseLimit = bases[rng.IntN(len(bases)-1)].Seq
			older := Must(e.Days.Open(ctx, b, commands.RestorePoint{Day: day, At: at}, nil))
			if diff := cmp.Diff(loaded, sourceItems(t, e, b, older)); diff != "" {
				t.Fatalf("instant %s through the base of checkpoint %d: (-newest base +older)\n%s", at, e.Days.BaseLimit, diff)
			}
			_ = older.Close()
			older = Must(e.Days.Open(ctx, b, commands.RestorePoint{Day: day}, nil))
			if diff := cmp.Diff(all, sourceItems(t, e, b, older)); diff != "" {
				t.Fatalf("day %s through the base of checkpoint %d: (-newest base +older)\n%s", day, e.Days.BaseLimit, diff)
			}
			_ = older.Close()
			e.Days.BaseLimit = 0
		}
		// Some items alone, one the day does not hold.
		var only []commands.ItemRef
		for k := range all {
			if rng.IntN(3) == 0 {
				kind, id, _ := strings.Cut(k, "/")
				only = append(only, commands.ItemRef{Kind: kind, ID: id})
			}
		}
		only = append(only, commands.ItemRef{Kind: commands.ItemKindSecret, ID: "never"})
		some := Must(e.Days.Open(ctx, b, commands.RestorePoint{Day: day}, only))
		got := sourceItems(t, e, b, some)
		for _, r := range only {
			k := r.Kind + "/" + r.ID
			it, ok, err := some.Lookup(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if want, in := all[k]; ok != in || got[k] != want {
				t.Fatalf("day %s, %s alone: %q (Lookup %v), want %q", day, k, got[k], ok, want)
			}
			if ok && (it.ID != r.ID || it.Kind != r.Kind) {
				t.Fatalf("Lookup(%v) = %s %s", r, it.Kind, it.ID)
			}
		}
		if len(got) > len(only) {
			t.Fatalf("day %s: %d items loaded for %d asked", day, len(got), len(only))
		}
		_ = some.Close()
		_ = whole.Close()
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID)); len(rep.Findings) > 0 {
		t.Fatalf("verify: %+v", rep.Findings)
	}
}

// TestSourceReads: Each from a given item, ErrStop, Lookup of items held
// and not held in any order, a closed source, and the points Open refuses.
func TestSourceReads(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	e := NewEngine(t, start)
	in, b := e.EnabledBackup("UTC")
	var keys []string
	for i := range 5 {
		keys = append(keys, string(Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, fmt.Sprint("k", i))).ID))
	}
	Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: "s", Instance: in.ID, Key: domain.KeyID(keys[0]), Value: domain.Plaintext("v")}))
	e.Advance(6 * time.Minute)
	b = Must(e.Backups.ShowBackupInstance(e.Caller, b.ID))
	src := Must(e.Days.Open(ctx, b, commands.RestorePoint{Day: "2026-05-01"}, nil))
	if at, seq := src.Covered(); seq != 2 || !at.Equal(start.Add(5*time.Minute)) {
		t.Fatalf("Covered = %s, %d", at, seq)
	}
	var seen []string
	collect := func(after commands.ItemRef, stopAt int) []string {
		seen = nil
		err := src.Each(ctx, after, func(it *commands.BackedUpItem) error {
			seen = append(seen, it.ID)
			if len(seen) == stopAt {
				return commands.ErrStop
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return seen
	}
	all := collect(commands.ItemRef{}, 0)
	if len(all) != 6 || all[5] != "s" {
		t.Fatalf("Each: %v", all)
	}
	if got := collect(commands.ItemRef{Kind: commands.ItemKindKey, ID: all[1]}, 0); !cmp.Equal(got, all[2:]) {
		t.Fatalf("Each after %s: %v", all[1], got)
	}
	if got := collect(commands.ItemRef{Kind: commands.ItemKindKey, ID: all[4]}, 0); !cmp.Equal(got, []string{"s"}) {
		t.Fatalf("Each after the last key: %v", got)
	}
	if got := collect(commands.ItemRef{}, 2); len(got) != 2 {
		t.Fatalf("Each stopped after 2: %v", got)
	}
	boom := errors.New("boom")
	if err := src.Each(ctx, commands.ItemRef{}, func(*commands.BackedUpItem) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Each returns %v, want the callback's error", err)
	}
	if _, ok, err := src.Lookup(ctx, commands.ItemRef{Kind: commands.ItemKindSecret, ID: keys[0]}); ok || err != nil {
		t.Fatalf("Lookup of a key ID as a secret: %v %v", ok, err)
	}
	// Look-ups share one iterator: in any order, during Each, and of IDs
	// before, between (a prefix of one held) and after those held.
	want := map[string]int{} // ID: versions
	if err := src.Each(ctx, commands.ItemRef{}, func(it *commands.BackedUpItem) error {
		want[it.ID] = len(it.Versions)
		ref := commands.ItemRef{Kind: commands.ItemKindKey, ID: keys[len(keys)-1]}
		if got, ok, err := src.Lookup(ctx, ref); err != nil || !ok || got.ID != ref.ID {
			t.Fatalf("Lookup(%v) during Each: %v %v %v", ref, got, ok, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := len(all) - 1; i >= 0; i-- {
		ref := commands.ItemRef{Kind: commands.ItemKindKey, ID: all[i]}
		if all[i] == "s" {
			ref.Kind = commands.ItemKindSecret
		}
		got, ok, err := src.Lookup(ctx, ref)
		if err != nil || !ok || got.ID != ref.ID || got.Kind != ref.Kind || len(got.Versions) != want[ref.ID] {
			t.Fatalf("Lookup(%v) = %+v, %v, %v; Each read %d versions", ref, got, ok, err, want[ref.ID])
		}
	}
	for _, ref := range []commands.ItemRef{
		{Kind: commands.ItemKindKey, ID: ""}, {Kind: commands.ItemKindKey, ID: keys[0][:len(keys[0])-1]},
		{Kind: commands.ItemKindKey, ID: keys[0] + "0"}, {Kind: commands.ItemKindSecret, ID: "r"},
		{Kind: commands.ItemKindSecret, ID: "s0"}, {Kind: commands.ItemKindSecret, ID: "zz"},
	} {
		if got, ok, err := src.Lookup(ctx, ref); ok || err != nil {
			t.Fatalf("Lookup(%v) of an item not held: %+v, %v, %v", ref, got, ok, err)
		}
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := src.Each(ctx, commands.ItemRef{}, func(*commands.BackedUpItem) error { return nil }); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("Each after Close: %v", err)
	}
	if _, err := e.Days.Open(ctx, b, commands.RestorePoint{Day: "2026-05-01", At: start.Add(-time.Minute)}, nil); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("an instant before the first checkpoint: %v", err)
	}
	if _, err := e.Days.Open(ctx, b, commands.RestorePoint{Day: "2026-05-02", At: start}, nil); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("an instant of another day: %v", err)
	}
}
