package backupdata

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

// countingTxn is a memTxn that counts the look-ups of item rows and of the
// live index.
type countingTxn struct {
	memTxn
	ref  string
	gets int
}

func (c *countingTxn) Get(k []byte) ([]byte, bool, error) {
	p := base(c.ref)
	if bytes.HasPrefix(k, p) && len(k) > len(p) && (k[len(p)] == 'l' || k[len(p)] == 'i') {
		c.gets++
	}
	return c.memTxn.Get(k)
}

// prefetchingTxn is a countingTxn that reads many keys at once
// (projections.MultiGetter), remembering the keys it was asked for.
type prefetchingTxn struct {
	countingTxn
	asked [][]byte
}

func (p *prefetchingTxn) GetMany(keys [][]byte) ([][]byte, []bool, error) {
	values, found := make([][]byte, len(keys)), make([]bool, len(keys))
	for i, k := range keys {
		p.asked = append(p.asked, k)
		var err error
		if values[i], found[i], err = p.memTxn.Get(k); err != nil {
			return nil, nil, err
		}
	}
	return values, found, nil
}

// TestCheckpointReadsEachChangedItemOnce: a checkpoint reads each item it
// changes in one look-up (the live index holds the item's current row);
// a live index of the earlier layout (the fromSeq alone) still applies,
// reading the row apart, and gives the same read model. Over a store that
// reads many keys at once, the checkpoint asks for the live entries of
// all its items at once before it applies its slice, looks none up apart,
// and writes the same.
func TestCheckpointReadsEachChangedItemOnce(t *testing.T) {
	const keys, secrets = 20, 5
	g := newGeneration(t, time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC), keys, secrets)
	at, ref, kv, backup, event, must := g.at, g.ref, g.kv, g.backup, kmsEvent, g.must

	// Checkpoint 2: five keys rotated (one twice), one deleted, one
	// created, a secret rotated under another key.
	var slice []domain.Event
	kms := domain.KMSStream("kms_1")
	change := func(d domain.EventData) {
		r := uint64(100 + len(slice))
		slice = append(slice, event(kms, r, at.Add(time.Duration(r)*time.Second), d))
	}
	for i := range 5 {
		change(&domain.KeyRotated{Key: domain.KeyID(fmt.Sprintf("key_%05d", i)), Version: 2, Material: domain.Sealed("m")})
	}
	change(&domain.KeyRotated{Key: "key_00000", Version: 3, Material: domain.Sealed("m")})
	change(&domain.KeyDeleted{Key: "key_00005"})
	change(&domain.KeyCreated{Key: "key_99999", Description: "new", Spec: domain.KeySpecAES256, Material: domain.Sealed("m")})
	change(&domain.SecretRotated{Name: secretName(keys), Version: 2, Key: "key_00002", Value: []byte("v")})
	const changed = 8 // items the slice touches
	cp2 := backup(&domain.BackupCheckpointed{Seq: 2, At: at.Add(time.Hour), Day: "2026-05-01", From: 100, Next: 100 + uint64(len(slice))})
	data := Data{Slice: func(fn func(*domain.Event) error) error {
		for i := range slice {
			if err := fn(&slice[i]); err != nil {
				return err
			}
		}
		return nil
	}}

	// applyCounting applies checkpoint 2 over a copy of kv and returns the
	// store after it and the look-ups it made.
	applyCounting := func(kv map[string][]byte) (map[string][]byte, int) {
		txn := &countingTxn{memTxn: memTxn{kv: map[string][]byte{}}, ref: ref}
		for k, v := range kv {
			txn.kv[k] = v
		}
		must(Apply(txn, cp2, data))
		return txn.kv, txn.gets
	}
	after, gets := applyCounting(kv)
	if gets != changed {
		t.Errorf("checkpoint 2 made %d look-ups of rows and live index for %d items, want one each", gets, changed)
	}

	// The same over a store that reads many keys at once.
	pre := &prefetchingTxn{countingTxn: countingTxn{memTxn: memTxn{kv: map[string][]byte{}}, ref: ref}}
	for k, v := range kv {
		pre.kv[k] = v
	}
	must(Apply(pre, cp2, data))
	if pre.gets != 0 || len(pre.asked) != changed {
		t.Errorf("over a store that reads many keys at once: %d keys asked at once and %d looked up apart, want %d and 0", len(pre.asked), pre.gets, changed)
	}
	if d := cmp.Diff(after, pre.kv); d != "" {
		t.Errorf("the store after a checkpoint that read ahead differs (-one at a time +at once):\n%s", d)
	}

	// The same over a live index of the earlier layout.
	old := map[string][]byte{}
	live := string(append(base(ref), 'l'))
	for k, v := range kv {
		if len(k) > len(live) && k[:len(live)] == live {
			v = v[:8]
		}
		old[k] = v
	}
	afterOld, gets := applyCounting(old)
	if gets != 2*(changed-1)+1 {
		t.Errorf("over the earlier live index: %d look-ups for %d items, want two each (one for the new one)", gets, changed)
	}
	view := func(kv map[string][]byte) (out []any) {
		r := &memTxn{kv: kv}
		for seq := uint64(1); seq <= 2; seq++ {
			s, err := Checkpoint(r, ref, seq)
			must(err)
			out = append(out, s)
			must(StateAt(r, ref, seq, func(it Item) error {
				out = append(out, it)
				return nil
			}))
		}
		for _, tab := range []Tab{IncrementalKeys, RotatedKeys, IncrementalSecrets, RotatedSecrets, Deleted} {
			p, err := List(r, ref, "2026-05-01", tab, "", 100)
			must(err)
			out = append(out, p)
		}
		return out
	}
	if d := cmp.Diff(view(after), view(afterOld)); d != "" {
		t.Fatalf("read model over the earlier live index differs (-new +earlier):\n%s", d)
	}
	// Checkpoint 2 rewrote the live entries of the items it changed in
	// the new layout, with the row they point at.
	for k, v := range afterOld {
		if len(k) > len(live) && k[:len(live)] == live && len(v) > 8 {
			kind, item := k[len(live)], k[len(live)+1:]
			if row := afterOld[string(rowKey(ref, kind, item, bytesSeq(v)))]; !bytes.Equal(row, v[8:]) {
				t.Errorf("live entry of %s holds another row than its row record", item)
			}
		}
	}
}

func bytesSeq(v []byte) uint64 {
	var s uint64
	for _, b := range v[:8] {
		s = s<<8 | uint64(b)
	}
	return s
}

// generation is a backup instance's first generation, over kv: created,
// enabled, its first checkpoint held by a base of keys keys (key_00000
// on) and secrets secrets (secretName), all of one version.
type generation struct {
	t   *testing.T
	id  domain.BackupID
	ref string
	at  time.Time
	kv  map[string][]byte
	rev uint64
}

func newGeneration(t *testing.T, at time.Time, keys, secrets int) *generation {
	t.Helper()
	id := domain.BackupID("bkp_01KQHDZ8E0B47E4R1Q458Z14HD")
	g := &generation{t: t, id: id, ref: domain.DataRef(id, 0), at: at, kv: map[string][]byte{}}
	g.must(apply(t, g.kv, g.backup(&domain.BackupCreated{Backup: id, Kind: domain.BackupProvisioned, Region: "r", ViewableDays: 7}), Data{}))
	g.must(apply(t, g.kv, g.backup(&domain.BackupEnabled{KMSInstance: "kms_1", Alias: "a", TimeZone: "UTC"}), Data{}))
	g.must(apply(t, g.kv, g.backup(&domain.BackupCheckpointed{Seq: 1, Full: true, At: at, Day: "2026-05-01", Next: 100, InBase: true}), Data{}))
	items := func(fn func(*BaseItem) error) error {
		for i := range keys + secrets {
			it := &BaseItem{Kind: KindKey, ID: fmt.Sprintf("key_%05d", i), CreatedAt: at.Add(-time.Hour), ChangedAt: at.Add(-time.Minute),
				Description: "d", Versions: 1}
			if i >= keys {
				it.Kind, it.ID, it.Description, it.KeyID = KindSecret, secretName(i), "", "key_00001"
			}
			if err := fn(it); err != nil {
				return err
			}
		}
		return nil
	}
	n := uint64(keys + secrets)
	g.must(apply(t, g.kv, g.backup(&domain.BackupBaseStored{Seq: 1, At: at, Next: 100, Items: n, Versions: n}), Data{Base: items}))
	return g
}

// backup makes the next event of the backup's stream.
func (g *generation) backup(d domain.EventData) domain.Event {
	g.rev++
	return kmsEvent(domain.BackupStream(g.id), g.rev-1, g.at, d)
}

func (g *generation) must(err error) {
	g.t.Helper()
	if err != nil {
		g.t.Fatal(err)
	}
}

// kmsEvent is an event of stream at revision r.
func kmsEvent(stream string, r uint64, at time.Time, d domain.EventData) domain.Event {
	return domain.Event{Stream: stream, Revision: r, Type: d.EventType(),
		Schema: domain.SchemaVersion, OccurredAt: at, Account: "acct_1", Data: domain.EncodeData(d)}
}

func secretName(i int) string { return fmt.Sprintf("s%05d", i) }
