package pebblestore

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/projections"
)

// TestTxnGetManyReadsAsGet: a transaction's GetMany answers what Get
// answers for every key, present or absent: read from the database on
// several goroutines while the transaction has written nothing, and
// through its batch (its own writes and deletions seen) once it has.
func TestTxnGetManyReadsAsGet(t *testing.T) {
	s := MustOpenProjections(t, "projections", vfs.NewMem(), nil)
	const n = 200
	err := s.Update("p", 1, func(tx projections.Txn) error {
		for i := range n {
			if i%3 != 0 { // every third key absent
				if err := tx.Set(fmt.Appendf(nil, "k/%04d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "k/%04d", (i*7)%n) // not in order
	}
	check := func(tx projections.Txn, when string) {
		t.Helper()
		values, found, err := tx.(projections.MultiGetter).GetMany(keys)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		for i, k := range keys {
			v, ok, err := tx.Get(k)
			if err != nil {
				t.Fatal(err)
			}
			if ok != found[i] || string(v) != string(values[i]) {
				t.Errorf("%s: %s: GetMany %q %v, Get %q %v", when, k, values[i], found[i], v, ok)
			}
		}
	}
	err = s.Update("p", 2, func(tx projections.Txn) error {
		check(tx, "before any write")
		if err := tx.Set([]byte("k/0000"), []byte("new")); err != nil {
			return err
		}
		if err := tx.Delete([]byte("k/0001")); err != nil {
			return err
		}
		check(tx, "after a write and a deletion")
		if v, found, err := tx.(projections.MultiGetter).GetMany([][]byte{[]byte("k/0000"), []byte("k/0001")}); err != nil ||
			string(v[0]) != "new" || !found[0] || found[1] {
			t.Errorf("the transaction's own writes: %q %v %v", v, found, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
