package projections

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

var backupSeed = flag.Uint64("backup.seed", 0, "run TestBackupDataRandomized with this seed only")

// TestBackupDataRandomized applies random histories of key and secret
// creates, rotates and deletes (IDs and names are reused, so items are
// deleted and created again, also within one checkpoint), cut into random
// checkpoints, and checks the backup data against a plain replay of the KMS
// events: the state at every checkpoint, its incrementally kept digest, the
// day tabs, the days, Diff and the stored versions. A failure prints the
// seed and the history; rerun one with -backup.seed.
func TestBackupDataRandomized(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8}
	if *backupSeed != 0 {
		seeds = []uint64{*backupSeed}
	} else {
		seeds = append(seeds, uint64(time.Now().UnixNano())) // a new one every run, printed on failure
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { randomBackupHistory(t, seed) })
	}
}

// model is the expected state: a plain replay of the KMS events.
type model struct {
	items map[string]*backupdata.Item // by kind + "/" + ID
}

func itemKey(kind, id string) string { return kind + "/" + id }

func (m *model) live(kind string) []*backupdata.Item {
	var out []*backupdata.Item
	for _, it := range m.items {
		if it.Kind == kind {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b *backupdata.Item) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (m *model) snapshot() []backupdata.Item {
	out := []backupdata.Item{}
	for _, kind := range []string{backupdata.KindKey, backupdata.KindSecret} {
		for _, it := range m.live(kind) {
			out = append(out, *it)
		}
	}
	return out
}

// dayChange is what the day index should hold for one item in one tab.
type dayChange struct {
	day  domain.Day
	tab  backupdata.Tab
	kind string
	id   string
}

func randomBackupHistory(t *testing.T, seed uint64) {
	w := newWorld(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d (rerun with -backup.seed=%d); history:\n%s", seed, seed, w.history())
		}
	})
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	zones := []string{"", "UTC", "Asia/Shanghai", "America/New_York", "Pacific/Chatham"}
	tz := zones[rng.IntN(len(zones))]
	// Enabled without a zone, an instance counts its days in its region's.
	loc := of(time.LoadLocation(tz)).must(t)
	if tz == "" {
		loc = of(time.LoadLocation(domain.RegionTimeZone(w.region))).must(t)
	}
	now := time.Date(2026, 3, 7, 20, 0, 0, 0, time.UTC) // the weekend of a daylight-saving change in New York
	tick := func() time.Time {
		if rng.IntN(4) == 0 {
			now = now.Add(time.Duration(rng.IntN(180)) * time.Minute)
		} else {
			now = now.Add(time.Duration(1+rng.IntN(120)) * time.Second)
		}
		return now
	}

	kms := domain.NewInstanceID(uid(2))
	bkp := domain.NewBackupID(uid(3))
	op := kmsOps{w, kms}
	w.kms(kms, tick(), of(domain.NewInstance(kms, w.region, 100, 100)).decided(t))
	var keyIDs []domain.KeyID
	for range 2 + rng.IntN(4) {
		keyIDs = append(keyIDs, w.nextKeyID())
	}
	names := []string{"a", "b", "c", "d", "e"}[:2+rng.IntN(4)]
	if rng.IntN(2) == 0 {
		names = append(names, string(keyIDs[0])) // a secret named like a key: one ID, two kinds in the deleted tab
	}

	m := &model{items: map[string]*backupdata.Item{}}
	seq := uint64(0)                            // checkpoints taken
	snapshots := map[uint64][]backupdata.Item{} // the expected state at each checkpoint
	days := map[domain.Day]*backupdata.DayInfo{}
	changes := map[dayChange]time.Time{} // last change per (day, tab, item)
	enabled := false

	step := func() {
		at := tick()
		var choices []func()
		note := func(tab backupdata.Tab, kind, id string) {
			if enabled {
				changes[dayChange{domain.DayOf(at, loc), tab, kind, id}] = at.UTC()
			}
		}
		liveKeys := m.live(backupdata.KindKey)
		liveSecrets := m.live(backupdata.KindSecret)
		for _, id := range keyIDs {
			if m.items[itemKey(backupdata.KindKey, string(id))] == nil {
				choices = append(choices, func() {
					desc := fmt.Sprintf("key %d", rng.IntN(3))
					op.createKey(at, id, desc)
					it := &backupdata.Item{Kind: backupdata.KindKey, ID: string(id), Versions: 1, CreatedAt: at.UTC(), ChangedAt: at.UTC(),
						Description: desc, CreateSeq: seq + 1}
					m.items[itemKey(it.Kind, it.ID)] = it
					note(backupdata.IncrementalKeys, it.Kind, it.ID)
				})
			}
		}
		for _, k := range liveKeys {
			choices = append(choices, func() {
				k.Versions++
				k.ChangedAt = at.UTC()
				op.rotateKey(at, domain.KeyID(k.ID), k.Versions)
				note(backupdata.RotatedKeys, k.Kind, k.ID)
			})
			used := false
			for _, s := range liveSecrets {
				used = used || s.KeyID == k.ID
			}
			if !used {
				choices = append(choices, func() {
					op.deleteKey(at, domain.KeyID(k.ID))
					delete(m.items, itemKey(k.Kind, k.ID))
					note(backupdata.Deleted, k.Kind, k.ID)
				})
			}
		}
		if len(liveKeys) > 0 {
			for _, name := range names {
				if m.items[itemKey(backupdata.KindSecret, name)] == nil {
					choices = append(choices, func() {
						key := liveKeys[rng.IntN(len(liveKeys))].ID
						op.createSecret(at, name, domain.KeyID(key))
						m.items[itemKey(backupdata.KindSecret, name)] = &backupdata.Item{Kind: backupdata.KindSecret, ID: name, Versions: 1,
							CreatedAt: at.UTC(), ChangedAt: at.UTC(), KeyID: key, CreateSeq: seq + 1}
						note(backupdata.IncrementalSecrets, backupdata.KindSecret, name)
					})
				}
			}
			for _, s := range liveSecrets {
				choices = append(choices, func() {
					s.Versions++
					s.ChangedAt = at.UTC()
					s.KeyID = liveKeys[rng.IntN(len(liveKeys))].ID
					op.rotateSecret(at, s.ID, s.Versions, domain.KeyID(s.KeyID))
					note(backupdata.RotatedSecrets, s.Kind, s.ID)
				})
			}
		}
		for _, s := range liveSecrets {
			choices = append(choices, func() {
				op.deleteSecret(at, s.ID)
				delete(m.items, itemKey(s.Kind, s.ID))
				note(backupdata.Deleted, s.Kind, s.ID)
			})
		}
		choices[rng.IntN(len(choices))]()
	}
	checkpoint := func(full bool) {
		at := tick()
		c := w.checkpoint(bkp, at, full)
		seq++
		if c.Seq != seq {
			t.Fatalf("checkpoint %d, want %d", c.Seq, seq)
		}
		snapshots[seq] = m.snapshot()
		d := days[c.Day]
		if d == nil {
			d = &backupdata.DayInfo{Day: c.Day}
			days[c.Day] = d
		}
		if full && d.FullSeq == 0 {
			d.FullSeq = seq
		}
		d.LastSeq = seq
	}

	// History before enabling, then the first full, then a random mix.
	for range rng.IntN(30) {
		step()
	}
	w.backup(bkp, tick(), of(domain.NewProvisionedBackup(bkp, w.region, 30, domain.Term{Months: 12}, now)).decided(t))
	w.backup(bkp, now, of(w.backups[bkp].Enable(&domain.Instance{ID: kms, Account: w.acct, Region: w.region}, "r", tz, "")).decided(t))
	checkpoint(true)
	enabled = true
	for range 100 + rng.IntN(200) {
		switch r := rng.IntN(100); {
		case r < 15:
			checkpoint(rng.IntN(5) == 0)
		case r < 17:
			checkpoint(false)
			checkpoint(false) // an empty slice
		default:
			step()
		}
	}
	checkpoint(false)

	st, ref := w.st, w.ref(bkp)
	t.Logf("seed %d: zone %q, %d events, %d checkpoints over %d days", seed, tz, w.pos, seq, len(days))
	if got := of(backupdata.LastSeq(st, ref)).must(t); got != seq {
		t.Fatalf("last seq %d, want %d", got, seq)
	}

	// The state and its digest at every checkpoint.
	for s := uint64(1); s <= seq; s++ {
		got := stateAt(t, st, ref, s)
		if got == nil {
			got = []backupdata.Item{}
		}
		if diff := cmp.Diff(snapshots[s], got); diff != "" {
			t.Fatalf("state at checkpoint %d differs from the replay (-want +got):\n%s", s, diff)
		}
		sum := of(backupdata.Checkpoint(st, ref, s)).must(t)
		if want := backupdata.StateDigest(snapshots[s]); sum.StateDigest != want {
			t.Fatalf("checkpoint %d: incremental digest %x, digest of the state %x", s, sum.StateDigest, want)
		}
	}

	// Days, and the full tabs of each.
	var wantDays []backupdata.DayInfo
	for _, d := range days {
		wantDays = append(wantDays, *d)
	}
	slices.SortFunc(wantDays, func(a, b backupdata.DayInfo) int { return strings.Compare(string(a.Day), string(b.Day)) })
	if diff := cmp.Diff(wantDays, of(backupdata.Days(st, ref)).must(t)); diff != "" {
		t.Fatalf("days (-want +got):\n%s", diff)
	}
	for _, d := range wantDays {
		at := d.FullSeq
		if at == 0 {
			at = d.LastSeq
		}
		for _, tab := range []backupdata.Tab{backupdata.FullKeys, backupdata.FullSecrets} {
			kind := backupdata.KindKey
			if tab == backupdata.FullSecrets {
				kind = backupdata.KindSecret
			}
			want := []backupdata.Item{}
			for _, it := range snapshots[at] {
				if it.Kind == kind {
					want = append(want, it)
				}
			}
			if diff := cmp.Diff(want, walk(t, st, ref, d.Day, tab, 1+rng.IntN(3))); diff != "" {
				t.Fatalf("%s %s (-want +got):\n%s", d.Day, tab, diff)
			}
		}
	}

	// The change tabs: every change of each day, and its last time.
	got := map[dayChange]time.Time{}
	for _, d := range wantDays {
		for _, tab := range backupdata.Tabs {
			if tab == backupdata.FullKeys || tab == backupdata.FullSecrets {
				continue
			}
			for _, it := range walk(t, st, ref, d.Day, tab, 1+rng.IntN(3)) {
				got[dayChange{d.Day, tab, it.Kind, it.ID}] = it.ChangedAt
			}
		}
	}
	if diff := cmp.Diff(changes, got); diff != "" {
		t.Fatalf("day tabs (-want +got):\n%s", diff)
	}

	// Diff between two days agrees with the states at their last checkpoints.
	for range 5 {
		a, b := wantDays[rng.IntN(len(wantDays))], wantDays[rng.IntN(len(wantDays))]
		if a.Day > b.Day {
			a, b = b, a
		}
		want := expectedDiff(snapshots[a.LastSeq], snapshots[b.LastSeq])
		if diff := cmp.Diff(want, of(backupdata.Diff(st, ref, a.Day, b.Day)).must(t)); diff != "" {
			t.Fatalf("diff %s %s (-want +got):\n%s", a.Day, b.Day, diff)
		}
	}
}

func expectedDiff(from, to []backupdata.Item) []backupdata.Change {
	before := map[string]backupdata.Item{}
	for _, it := range from {
		before[itemKey(it.Kind, it.ID)] = it
	}
	after := map[string]backupdata.Item{}
	for _, it := range to {
		after[itemKey(it.Kind, it.ID)] = it
	}
	var keys []string
	for k := range before {
		keys = append(keys, k)
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []backupdata.Change
	for _, k := range keys {
		a, inA := before[k]
		b, inB := after[k]
		switch {
		case !inA:
			out = append(out, backupdata.Change{Item: b, What: backupdata.ChangeCreated})
		case !inB:
			out = append(out, backupdata.Change{Item: a, What: backupdata.ChangeDeleted})
		case a.CreateSeq != b.CreateSeq:
			out = append(out, backupdata.Change{Item: a, What: backupdata.ChangeDeleted}, backupdata.Change{Item: b, What: backupdata.ChangeCreated})
		case a.Versions != b.Versions:
			out = append(out, backupdata.Change{Item: b, What: backupdata.ChangeRotated})
		}
	}
	return out
}
