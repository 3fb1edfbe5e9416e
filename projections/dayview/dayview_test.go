package dayview

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

// memState is a sorted key-value map: a Writer, and a Cursor over it.
type memState struct {
	kv map[string][]byte
}

func newMemState() *memState { return &memState{kv: map[string][]byte{}} }

func (m *memState) Set(k, v []byte) error { m.kv[string(k)] = bytes.Clone(v); return nil }

func (m *memState) DeleteRange(start, end []byte) error {
	for k := range m.kv {
		if k >= string(start) && k < string(end) {
			delete(m.kv, k)
		}
	}
	return nil
}

func (m *memState) cursor() *memCursor {
	keys := make([]string, 0, len(m.kv))
	for k := range m.kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return &memCursor{m: m, keys: keys}
}

type memCursor struct {
	m    *memState
	keys []string
	i    int
}

func (c *memCursor) Valid() bool            { return c.i < len(c.keys) }
func (c *memCursor) Key() []byte            { return []byte(c.keys[c.i]) }
func (c *memCursor) Value() ([]byte, error) { return bytes.Clone(c.m.kv[c.keys[c.i]]), nil }
func (c *memCursor) Next() bool             { c.i++; return c.Valid() }

// items reads every item of m.
func (m *memState) items(t *testing.T) []Item {
	t.Helper()
	var out []Item
	r := NewItemReader(m.cursor())
	for {
		it, ok, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		cp := *it
		cp.Versions = nil
		for _, v := range it.Versions {
			v.Material, v.Value = bytes.Clone(v.Material), bytes.Clone(v.Value)
			cp.Versions = append(cp.Versions, v)
		}
		out = append(out, cp)
	}
}

func TestKeysSortAndParse(t *testing.T) {
	keys := [][]byte{
		RowKey(KindSecret, "a"), VersionKey(KindKey, "a0", 1), RowKey(KindKey, "a"), VersionKey(KindKey, "a", 2),
		DeletedKey(KindKey, "a"), VersionKey(KindKey, "a", 1), VersionKey(KindKey, "a", 256), RowKey(KindKey, "a0"),
	}
	slices.SortFunc(keys, bytes.Compare)
	var got []string
	for _, k := range keys {
		r, err := ParseKey(k)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%c %s %c %d", r.Kind, r.ID, r.Tag, r.Version))
	}
	want := []string{"k a d 0", "k a r 0", "k a v 1", "k a v 2", "k a v 256", "k a0 r 0", "k a0 v 1", "s a r 0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("order (-want +got):\n%s", diff)
	}
	for _, k := range keys {
		if bytes.Compare(k, ItemStart(KindKey, "a")) >= 0 && bytes.Compare(k, ItemEnd(KindKey, "a")) < 0 {
			r, _ := ParseKey(k)
			if string(r.ID) != "a" || r.Kind != KindKey {
				t.Fatalf("%q falls in key a's range", k)
			}
		}
	}
	for _, bad := range [][]byte{nil, []byte("k"), []byte("x\x00r"), []byte("kab\x00x"), []byte("k\x00r"), []byte("ka\x00v12"),
		[]byte("ka\x00r1"), append(RowKey(KindKey, "a"), 0)} {
		if _, err := ParseKey(bad); !domain.IsCorruption(err) {
			t.Fatalf("ParseKey(%q) = %v, want a corruption", bad, err)
		}
	}
}

// history builds KMS events (as a backup holds them) over a few items.
type history struct {
	rng    *rand.Rand
	at     time.Time
	events []domain.Event
	live   map[string]uint32 // "k/ID" -> versions
}

func (h *history) event(d domain.EventData) {
	h.at = h.at.Add(time.Duration(1+h.rng.IntN(90)) * time.Minute)
	var id domain.EventID
	for i := range id {
		id[i] = byte(h.rng.Uint32())
	}
	h.events = append(h.events, domain.Event{ID: id, Stream: "kms-kms_1", Revision: uint64(len(h.events)), Type: d.EventType(),
		Schema: domain.SchemaVersion, OccurredAt: h.at, Account: "acct_1", Region: "cn-hangzhou", Instance: "kms_1",
		Data: domain.EncodeData(d)})
}

func (h *history) step() {
	names := []string{"a", "b", "a0", "key_01", "key_02"}
	name := names[h.rng.IntN(len(names))]
	secret := h.rng.IntN(3) == 0
	k := "k/" + name
	if secret {
		k = "s/" + name
	}
	n, live := h.live[k]
	material := fmt.Appendf(nil, "sealed %d", len(h.events))
	switch {
	case !live && h.rng.IntN(6) == 0:
		// Restored with several versions.
		if secret {
			h.event(&domain.SecretRestored{Name: name, Key: "key_01", Versions: []domain.RestoredSecretVersion{
				{Version: 1, Key: "key_01", Value: []byte("r1"), CreatedAt: h.at}, {Version: 2, Key: "key_02", Value: []byte("r2"), CreatedAt: h.at}}})
		} else {
			h.event(&domain.KeyRestored{Key: domain.KeyID(name), Description: "restored", Versions: []domain.RestoredKeyVersion{
				{Version: 1, Material: material, CreatedAt: h.at.Add(-time.Hour)}, {Version: 2, Material: material, CreatedAt: h.at}}})
		}
		h.live[k] = 2
	case !live && secret:
		h.event(&domain.SecretCreated{Name: name, Key: "key_01", Value: material})
		h.live[k] = 1
	case !live:
		h.event(&domain.KeyCreated{Key: domain.KeyID(name), Description: "d " + name, Material: material})
		h.live[k] = 1
	case h.rng.IntN(3) == 0:
		if secret {
			h.event(&domain.SecretDeleted{Name: name})
		} else {
			h.event(&domain.KeyDeleted{Key: domain.KeyID(name)})
		}
		delete(h.live, k)
	case secret:
		h.event(&domain.SecretRotated{Name: name, Version: n + 1, Key: "key_02", Value: material})
		h.live[k] = n + 1
	default:
		h.event(&domain.KeyRotated{Key: domain.KeyID(name), Version: n + 1, Material: material})
		h.live[k] = n + 1
	}
}

// naive computes a state from the events with plain maps: at an instant
// (the events before `from`, then those in [from, to) when whole is false)
// or the whole day [from, to) (items as they last stood within it).
func naive(events []domain.Event, from, to time.Time, whole bool) map[string]string {
	type item struct {
		desc     string
		created  time.Time
		deleted  time.Time
		versions []string
	}
	state := map[string]*item{}
	for _, e := range events {
		if !e.OccurredAt.Before(to) {
			break
		}
		inDay := whole && !e.OccurredAt.Before(from)
		c, ok, _ := ChangeOf(&e)
		if !ok {
			continue
		}
		key := string(c.Kind) + "/" + string(c.ID)
		d, err := e.Decode()
		if err != nil {
			panic(err)
		}
		ver := func(n uint32, at time.Time, s string) string {
			return fmt.Sprintf("%d@%s:%s", n, at.Format(time.TimeOnly), s)
		}
		switch d := d.(type) {
		case *domain.KeyCreated:
			state[key] = &item{desc: d.Description, created: e.OccurredAt, versions: []string{ver(1, e.OccurredAt, string(d.Material))}}
		case *domain.SecretCreated:
			state[key] = &item{created: e.OccurredAt, versions: []string{ver(1, e.OccurredAt, string(d.Key)+"/"+string(d.Value))}}
		case *domain.KeyRotated:
			state[key].versions = append(state[key].versions, ver(d.Version, e.OccurredAt, string(d.Material)))
		case *domain.SecretRotated:
			state[key].versions = append(state[key].versions, ver(d.Version, e.OccurredAt, string(d.Key)+"/"+string(d.Value)))
		case *domain.KeyDeleted, *domain.SecretDeleted:
			if inDay {
				state[key].deleted = e.OccurredAt
			} else {
				delete(state, key)
			}
		case *domain.KeyRestored:
			it := &item{desc: d.Description, created: e.OccurredAt}
			for _, v := range d.Versions {
				it.versions = append(it.versions, ver(v.Version, v.CreatedAt, string(v.Material)))
			}
			state[key] = it
		case *domain.SecretRestored:
			it := &item{created: e.OccurredAt}
			for _, v := range d.Versions {
				it.versions = append(it.versions, ver(v.Version, v.CreatedAt, string(v.Key)+"/"+string(v.Value)))
			}
			state[key] = it
		}
	}
	out := map[string]string{}
	for k, it := range state {
		out[k] = fmt.Sprintf("%q created %s deleted %s %v", it.desc, it.created.Format(time.TimeOnly), it.deleted.Format(time.TimeOnly), it.versions)
	}
	return out
}

// flat is the form naive gives, of a state read back.
func flat(items []Item) map[string]string {
	out := map[string]string{}
	for _, it := range items {
		var vs []string
		for _, v := range it.Versions {
			s := string(v.Material)
			if it.Kind == KindSecret {
				s = string(v.KeyID) + "/" + string(v.Value)
			}
			vs = append(vs, fmt.Sprintf("%d@%s:%s", v.Version, v.CreatedAt.Format(time.TimeOnly), s))
		}
		out[string(it.Kind)+"/"+it.ID] = fmt.Sprintf("%q created %s deleted %s %v", it.Row.Description,
			it.Row.CreatedAt.Format(time.TimeOnly), it.DeletedAt.Format(time.TimeOnly), vs)
	}
	return out
}

// replay applies the events before `to`: those before `from` at an
// instant, those after in mode m.
func replay(t *testing.T, events []domain.Event, from, to time.Time, m Mode) *memState {
	t.Helper()
	st := newMemState()
	for i := range events {
		e := &events[i]
		if !e.OccurredAt.Before(to) {
			break
		}
		c, ok, err := ChangeOf(e)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		mode := Instant
		if !e.OccurredAt.Before(from) {
			mode = m
		}
		if err := c.Apply(st, mode); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// TestApplyMatchesNaiveState: over random histories, the state replayed
// with blind writes equals the state computed naively from the log, at any
// instant and for any whole day (from any starting instant).
func TestApplyMatchesNaiveState(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for round := range 30 {
		rng := rand.New(rand.NewPCG(seed, uint64(round)))
		h := &history{rng: rng, at: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), live: map[string]uint32{}}
		for range 60 {
			h.step()
		}
		end := h.at.Add(time.Hour)
		for range 10 {
			from := h.events[0].OccurredAt.Add(time.Duration(rng.Int64N(int64(end.Sub(h.events[0].OccurredAt)))))
			to := from.Add(time.Duration(rng.IntN(12*60)) * time.Minute)
			if diff := cmp.Diff(naive(h.events, from, to, false), flat(replay(t, h.events, from, to, Instant).items(t))); diff != "" {
				t.Fatalf("seed %d round %d, instant %s: (-naive +replayed)\n%s", seed, round, to, diff)
			}
			if diff := cmp.Diff(naive(h.events, from, to, true), flat(replay(t, h.events, from, to, WholeDay).items(t))); diff != "" {
				t.Fatalf("seed %d round %d, day [%s, %s): (-naive +replayed)\n%s", seed, round, from, to, diff)
			}
		}
	}
}

// TestChangeOf: what an event changes, and what is no change.
func TestChangeOf(t *testing.T) {
	e := domain.Event{Type: domain.TypeInstanceCreated, Data: domain.EncodeData(&domain.InstanceCreated{Instance: "kms_1", Region: "r"})}
	if _, ok, err := ChangeOf(&e); ok || err != nil {
		t.Fatalf("an instance's creation: %v %v", ok, err)
	}
	e = domain.Event{Type: domain.TypeKeyRotated, Schema: domain.SchemaVersion, Data: []byte{1}}
	if _, _, err := ChangeOf(&e); !domain.IsCorruption(err) {
		t.Fatalf("a payload that does not decode: %v", err)
	}
	e = domain.Event{Type: domain.TypeKeyRotated, Schema: domain.SchemaVersion, Data: domain.EncodeData(&domain.KeyRotated{Key: "key_1", Version: 0})}
	c, ok, err := ChangeOf(&e)
	if !ok || err != nil || c.Kind != KindKey || string(c.ID) != "key_1" {
		t.Fatalf("a rotation: %+v %v %v", c, ok, err)
	}
	if err := c.Apply(newMemState(), Instant); !domain.IsCorruption(err) {
		t.Fatalf("version 0: %v", err)
	}
	e.Data = append(e.Data, 0)
	if _, _, err := ChangeOf(&e); !domain.IsCorruption(err) {
		t.Fatalf("a trailing byte: %v", err)
	}
	e.Data, e.Schema = e.Data[:len(e.Data)-1], 2
	if _, _, err := ChangeOf(&e); !domain.IsCorruption(err) {
		t.Fatalf("schema 2: %v", err)
	}
}

// TestItemReaderRefusesDamage: records out of place are corruption.
func TestItemReaderRefusesDamage(t *testing.T) {
	good := func() *memState {
		m := newMemState()
		_ = m.Set(RowKey(KindKey, "a"), encodeRow(&Row{Description: "x"}))
		_ = m.Set(VersionKey(KindKey, "a", 1), encodeVersion(KindKey, &Version{Material: []byte("m")}))
		_ = m.Set(VersionKey(KindKey, "a", 2), encodeVersion(KindKey, &Version{Material: []byte("m")}))
		return m
	}
	if n := len(good().items(t)); n != 1 {
		t.Fatalf("%d items", n)
	}
	cases := map[string]func(m *memState){
		"no row":         func(m *memState) { delete(m.kv, string(RowKey(KindKey, "a"))) },
		"version gap":    func(m *memState) { delete(m.kv, string(VersionKey(KindKey, "a", 1))) },
		"no version":     func(m *memState) { _ = m.Set(RowKey(KindKey, "b"), encodeRow(&Row{})) },
		"bad row":        func(m *memState) { m.kv[string(RowKey(KindKey, "a"))] = []byte{9} },
		"bad version":    func(m *memState) { m.kv[string(VersionKey(KindKey, "a", 2))] = []byte{1, 0, 1} },
		"bad key":        func(m *memState) { m.kv["k\x01"] = []byte{1} },
		"bad deleted-at": func(m *memState) { m.kv[string(DeletedKey(KindKey, "a"))] = []byte{1, 0, 0} },
	}
	for what, damage := range cases {
		m := good()
		damage(m)
		r := NewItemReader(m.cursor())
		var err error
		for {
			var ok bool
			if _, ok, err = r.Next(); err != nil || !ok {
				break
			}
		}
		if !domain.IsCorruption(err) {
			t.Errorf("%s: %v, want a corruption", what, err)
		}
	}
}

// TestDigest: equal states digest alike whatever wrote them; any field
// changed changes the digest.
func TestDigest(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 2))
	h := &history{rng: rng, at: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), live: map[string]uint32{}}
	for range 80 {
		h.step()
	}
	end := h.at.Add(time.Hour)
	items := replay(t, h.events, end, end, Instant).items(t)
	if len(items) == 0 {
		t.Fatal("test set-up: an empty state")
	}
	digest := func(items []Item) [32]byte {
		d := NewDigest()
		for i := range items {
			d.Add(&items[i])
		}
		s, n, _ := d.Sum()
		if n != uint64(len(items)) {
			t.Fatalf("%d items counted of %d", n, len(items))
		}
		return s
	}
	want := digest(items)
	if got := digest(replay(t, h.events, end, end, Instant).items(t)); got != want {
		t.Fatal("the same state digests differently")
	}
	edits := []func(it *Item){
		func(it *Item) { it.ID += "x" },
		func(it *Item) { it.Row.Description += "x" },
		func(it *Item) { it.Row.CreatedAt = it.Row.CreatedAt.Add(1) },
		func(it *Item) { it.DeletedAt = it.Row.CreatedAt },
		func(it *Item) { it.Versions = it.Versions[:len(it.Versions)-1] },
		func(it *Item) { it.Versions[0].CreatedAt = it.Versions[0].CreatedAt.Add(1) },
		func(it *Item) { it.Versions[0].SealedBy[3]++ },
		func(it *Item) { it.Versions[0].Material = append(bytes.Clone(it.Versions[0].Material), 1) },
		func(it *Item) { it.Versions[0].Value = append(bytes.Clone(it.Versions[0].Value), 1) },
	}
	for i, edit := range edits {
		changed := slices.Clone(items)
		at := rng.IntN(len(changed))
		it := changed[at]
		it.Versions = slices.Clone(it.Versions)
		edit(&it)
		changed[at] = it
		if digest(changed) == want {
			t.Errorf("edit %d leaves the digest unchanged", i)
		}
	}
}
