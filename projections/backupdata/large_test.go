package backupdata

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// loadingTxn is a memTxn that tells whether it has written
// (projections.Unwritten), so that a large checkpoint is applied in parts,
// and scans from its keys kept sorted until it writes.
type loadingTxn struct {
	memTxn
	sorted []string
}

func (l *loadingTxn) Unwritten() bool { return len(l.ops) == 0 }

func (l *loadingTxn) Scan(prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	if len(l.ops) > 0 {
		return l.memTxn.Scan(prefix, start, fn)
	}
	if l.sorted == nil {
		l.sorted = slices.Sorted(maps.Keys(l.kv))
	}
	from := max(string(prefix), string(start))
	for _, k := range l.sorted[sort.SearchStrings(l.sorted, from):] {
		if !strings.HasPrefix(k, string(prefix)) {
			break
		}
		if more, err := fn([]byte(k), l.kv[k]); err != nil || !more {
			return err
		}
	}
	return nil
}

// TestLargeCheckpointInParts: a checkpoint of more than largeCheckpoint
// events, applied in parts through sorted loads, leaves the same read
// model, key for key, as applied whole in its transaction: rotations,
// deletions, creations, an item created and deleted within the slice, one
// deleted and created again, secrets rotated under another key, changes on
// the next day. Each load's runs are in key order and apart. Applied again
// after a failure in any load, or after every load but before its
// transaction commits, it gives the same again. In a transaction that has
// written already it asks for one of its own.
func TestLargeCheckpointInParts(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	const keys, secrets = 12_000, 3_000
	g := newGeneration(t, time.Date(2026, 5, 1, 23, 0, 0, 0, time.UTC), keys, secrets)
	at, ref, kv, backup, event, must := g.at, g.ref, g.kv, g.backup, kmsEvent, g.must
	key := func(i int) domain.KeyID { return domain.KeyID(fmt.Sprintf("key_%05d", i)) }

	// Checkpoint 2's slice, across midnight.
	var slice []domain.Event
	kms := domain.KMSStream("kms_1")
	change := func(d domain.EventData) {
		r := uint64(100 + len(slice))
		slice = append(slice, event(kms, r, at.Add(time.Duration(r)*100*time.Millisecond), d))
	}
	versions := map[domain.KeyID]uint32{}
	secretVersions := map[string]uint32{}
	deleted := map[domain.KeyID]bool{}
	for len(slice) < 3*largeCheckpoint {
		switch x := rng.IntN(100); {
		case x < 60:
			k := key(rng.IntN(keys))
			if deleted[k] {
				continue
			}
			versions[k]++
			change(&domain.KeyRotated{Key: k, Version: versions[k] + 1, Material: domain.Sealed("m")})
		case x < 75:
			name := secretName(keys + rng.IntN(secrets))
			secretVersions[name]++
			change(&domain.SecretRotated{Name: name, Version: secretVersions[name] + 1, Key: key(rng.IntN(10)), Value: []byte("v")})
		case x < 85:
			k := key(10 + rng.IntN(keys-10))
			if deleted[k] {
				continue
			}
			deleted[k] = true
			change(&domain.KeyDeleted{Key: k})
		default:
			k := domain.KeyID(fmt.Sprintf("new_%06d", len(slice)))
			change(&domain.KeyCreated{Key: k, Description: "new", Spec: domain.KeySpecAES256, Material: domain.Sealed("m")})
		}
	}
	change(&domain.KeyCreated{Key: "brief", Spec: domain.KeySpecAES256, Material: domain.Sealed("m")})
	change(&domain.KeyDeleted{Key: "brief"})
	change(&domain.KeyDeleted{Key: key(3)})
	change(&domain.KeyCreated{Key: key(3), Description: "again", Spec: domain.KeySpecAES256, Material: domain.Sealed("m")})
	cp2 := backup(&domain.BackupCheckpointed{Seq: 2, At: at.Add(2 * time.Hour), Day: "2026-05-02", From: 100, Next: 100 + uint64(len(slice))})
	walk := func(fn func(*domain.Event) error) error {
		for i := range slice {
			if err := fn(&slice[i]); err != nil {
				return err
			}
		}
		return nil
	}

	// Whole: a store that cannot load.
	whole := clone(kv)
	must(apply(t, whole, cp2, Data{Slice: walk}))

	// In parts, each load checked and written at once into the store.
	failAt := -1 // the load that fails after writing its runs
	loads := 0
	load := func(kv map[string][]byte) func(fn func(add projections.AddSorted) error) error {
		return func(fn func(add projections.AddSorted) error) error {
			loads++
			runs := map[int][]string{}
			err := fn(func(run int, k, v []byte) error {
				if keys := runs[run]; len(keys) > 0 && string(k) <= keys[len(keys)-1] {
					t.Fatalf("load %d, run %d: key %q after %q", loads, run, k, keys[len(keys)-1])
				}
				runs[run] = append(runs[run], string(k))
				if v == nil {
					delete(kv, string(k))
				} else {
					kv[string(k)] = append([]byte{}, v...)
				}
				return nil
			})
			for a, ka := range runs {
				for b, kb := range runs {
					if a < b && ka[0] <= kb[len(kb)-1] && kb[0] <= ka[len(ka)-1] {
						t.Fatalf("load %d: runs %d and %d overlap", loads, a, b)
					}
				}
			}
			if err == nil && loads == failAt {
				err = errors.New("the load fails")
			}
			return err
		}
	}
	inParts := func(kv map[string][]byte) error {
		txn := &loadingTxn{memTxn: memTxn{kv: clone(kv)}}
		if err := Apply(txn, cp2, Data{Slice: walk, Load: load(kv)}); err != nil {
			return err
		}
		for _, op := range txn.ops {
			op(kv)
		}
		return nil
	}
	parts := clone(kv)
	must(inParts(parts))
	if want := (len(slice) + partItems - 1) / partItems; loads != want {
		t.Fatalf("%d loads for %d events, want %d", loads, len(slice), want)
	}
	sameStore(t, "in parts", whole, parts)

	// A failure in each load, then the apply again.
	for fail := 1; fail <= loads; fail++ {
		store := clone(kv)
		failAt, loads = fail, 0
		if err := inParts(store); err == nil {
			t.Fatalf("load %d failed, the apply did not", fail)
		}
		failAt, loads = -1, 0
		must(inParts(store))
		sameStore(t, fmt.Sprintf("applied again after load %d failed", fail), whole, store)
	}
	// Every load written, the transaction lost; then again.
	store := clone(kv)
	txn := &loadingTxn{memTxn: memTxn{kv: clone(store)}}
	must(Apply(txn, cp2, Data{Slice: walk, Load: load(store)}))
	if _, partial := store[string(partialKey(ref, 2))]; !partial {
		t.Fatal("no partial marker among the loaded keys")
	}
	must(inParts(store))
	sameStore(t, "applied again after its transaction was lost", whole, store)

	// In a transaction that wrote before it.
	burst := &loadingTxn{memTxn: memTxn{kv: clone(kv)}}
	must(burst.Set([]byte("x"), []byte("y")))
	if err := Apply(burst, cp2, Data{Slice: walk, Load: load(clone(kv))}); !errors.Is(err, ErrOwnTransaction) {
		t.Fatalf("in a transaction that has written: %v, want ErrOwnTransaction", err)
	}
}

// sameStore fails the test when got holds other keys or values than want,
// naming a few.
func sameStore(t *testing.T, what string, want, got map[string][]byte) {
	t.Helper()
	if maps.EqualFunc(want, got, bytes.Equal) {
		return
	}
	var diff []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if v, ok := got[k]; !ok || !bytes.Equal(v, want[k]) {
			diff = append(diff, fmt.Sprintf("%q: %x, want %x", k, v, want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			diff = append(diff, fmt.Sprintf("%q: %x, want none", k, got[k]))
		}
	}
	t.Fatalf("%s, the store differs from the whole apply's at %d keys, first: %v", what, len(diff), diff[:min(len(diff), 5)])
}

func clone(kv map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(kv))
	for k, v := range kv {
		out[k] = append([]byte{}, v...)
	}
	return out
}
