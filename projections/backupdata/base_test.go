package backupdata

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// memTxn is a projections.Txn over a map; ops records its writes, for a
// caller that commits them to another map.
type memTxn struct {
	kv  map[string][]byte
	ops []func(kv map[string][]byte)
}

var _ projections.Txn = (*memTxn)(nil)

func (m *memTxn) Get(k []byte) ([]byte, bool, error) {
	v, ok := m.kv[string(k)]
	return bytes.Clone(v), ok, nil
}

func (m *memTxn) Scan(prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	var keys []string
	for k := range m.kv {
		if bytes.HasPrefix([]byte(k), prefix) && k >= string(start) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		more, err := fn([]byte(k), m.kv[k])
		if err != nil || !more {
			return err
		}
	}
	return nil
}

func (m *memTxn) Set(k, v []byte) error {
	k, v = bytes.Clone(k), bytes.Clone(v)
	m.do(func(kv map[string][]byte) { kv[string(k)] = v })
	return nil
}

func (m *memTxn) Delete(k []byte) error {
	k = bytes.Clone(k)
	m.do(func(kv map[string][]byte) { delete(kv, string(k)) })
	return nil
}

func (m *memTxn) DeletePrefix(p []byte) error {
	p = bytes.Clone(p)
	m.do(func(kv map[string][]byte) {
		for k := range kv {
			if bytes.HasPrefix([]byte(k), p) {
				delete(kv, k)
			}
		}
	})
	return nil
}

func (m *memTxn) do(op func(kv map[string][]byte)) {
	op(m.kv)
	m.ops = append(m.ops, op)
}

// apply applies e in a transaction of its own over kv, committed only when
// it succeeds; stage commits at once.
func apply(t *testing.T, kv map[string][]byte, e domain.Event, data Data) error {
	t.Helper()
	txn := &memTxn{kv: map[string][]byte{}}
	for k, v := range kv {
		txn.kv[k] = v
	}
	if err := Apply(txn, e, data); err != nil {
		return err
	}
	for _, op := range txn.ops {
		op(kv)
	}
	return nil
}

// TestBaseHoldsFirstCheckpoint: the base of a generation's first
// checkpoint (held by it) becomes that checkpoint's rows and live index,
// written as two sorted runs through Load ahead of the event's own
// transaction,
// with its counts and digest in the meta and the summary; applied again
// after a failure between the chunks and the transaction, it gives the
// same read model.
func TestBaseHoldsFirstCheckpoint(t *testing.T) {
	at := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	id := domain.BackupID("bkp_01KQHDZ8E0B47E4R1Q458Z14HD")
	rev := uint64(0)
	event := func(d domain.EventData) domain.Event {
		e := domain.Event{Stream: domain.BackupStream(id), Revision: rev, Type: d.EventType(), Schema: domain.SchemaVersion,
			OccurredAt: at, Account: "acct_1", Data: domain.EncodeData(d)}
		rev++
		return e
	}
	kv := map[string][]byte{}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(apply(t, kv, event(&domain.BackupCreated{Backup: id, Kind: domain.BackupProvisioned, Region: "r", ViewableDays: 7}), Data{}))
	must(apply(t, kv, event(&domain.BackupEnabled{KMSInstance: "kms_1", Alias: "a", TimeZone: "UTC"}), Data{}))
	cp := &domain.BackupCheckpointed{Seq: 1, Full: true, At: at, Day: "2026-05-01", Next: 2000, InBase: true}
	must(apply(t, kv, event(cp), Data{}))

	const n = 1234
	items := func(fn func(*BaseItem) error) error {
		for i := range n {
			it := &BaseItem{Kind: KindKey, ID: fmt.Sprintf("key_%05d", i), CreatedAt: at.Add(-time.Hour), ChangedAt: at.Add(-time.Minute),
				Description: "d", Versions: uint32(1 + i%3)}
			if i >= 1000 {
				it.Kind, it.ID, it.Description, it.KeyID = KindSecret, fmt.Sprintf("s%04d", i), "", "key_00001"
			}
			if err := fn(it); err != nil {
				return err
			}
		}
		return nil
	}
	base := &domain.BackupBaseStored{Seq: 1, At: at, Next: 2000, Items: n, Versions: 2467}
	baseEvent := event(base)
	before := map[string][]byte{}
	for k, v := range kv {
		before[k] = v
	}
	loads := 0
	failing := errors.New("the transaction fails")
	// load checks what a store's Load asks (each run in key order, the
	// runs apart) and writes the runs at once, apart from the event's
	// transaction.
	load := func(fn func(add projections.AddSorted) error) error {
		loads++
		runs := map[int][]string{}
		err := fn(func(run int, key, value []byte) error {
			if keys := runs[run]; len(keys) > 0 && string(key) <= keys[len(keys)-1] {
				t.Fatalf("run %d: key %q after %q", run, key, keys[len(keys)-1])
			}
			runs[run] = append(runs[run], string(key))
			kv[string(key)] = append([]byte(nil), value...)
			return nil
		})
		if len(runs) != 2 || len(runs[runRows]) != n || len(runs[runLive]) != n {
			t.Fatalf("runs of %d, %d keys", len(runs[runRows]), len(runs[runLive]))
		}
		if rows, live := runs[runRows], runs[runLive]; rows[n-1] >= live[0] && live[n-1] >= rows[0] {
			t.Fatalf("the runs overlap: rows %q..%q, live %q..%q", rows[0], rows[n-1], live[0], live[n-1])
		}
		return err
	}
	err := apply(t, kv, baseEvent, Data{Load: func(fn func(add projections.AddSorted) error) error {
		if err := load(fn); err != nil {
			return err
		}
		return failing // after the runs are written
	}, Base: items})
	if !errors.Is(err, failing) || loads != 1 {
		t.Fatalf("first attempt: %v after %d loads", err, loads)
	}
	must(apply(t, kv, baseEvent, Data{Load: load, Base: items}))

	ref := domain.DataRef(id, 0)
	sum, err := Checkpoint(&memTxn{kv: kv}, ref, 1)
	must(err)
	if sum.LiveKeys != 1000 || sum.LiveSecrets != 234 || !sum.InBase {
		t.Fatalf("summary: %+v", sum)
	}
	var state []Item
	must(StateAt(&memTxn{kv: kv}, ref, 1, func(it Item) error {
		state = append(state, it)
		return nil
	}))
	if len(state) != n || StateDigest(state) != sum.StateDigest || state[1000].KeyID != "key_00001" || state[5].Versions != 3 {
		t.Fatalf("%d items in the state; digest ok %v", len(state), StateDigest(state) == sum.StateDigest)
	}
	bases, err := Bases(&memTxn{kv: kv}, ref)
	must(err)
	if len(bases) != 1 || bases[0].Seq != 1 || bases[0].Items != n {
		t.Fatalf("bases: %+v", bases)
	}
	// A base whose items are not those it records is corruption.
	other := *base
	other.Items = n + 1
	otherEvent := baseEvent
	otherEvent.Data = domain.EncodeData(&other)
	if err := apply(t, before, otherEvent, Data{Base: items}); !domain.IsCorruption(err) {
		t.Fatalf("a base of %d items recording %d: %v", n, n+1, err)
	}
}
