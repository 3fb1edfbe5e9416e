package pebblestore

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/projections"
)

// compactAll compacts every key of db into the bottom level.
func compactAll(t *testing.T, db *pebble.DB) {
	t.Helper()
	if err := db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
}

// tablesIn returns how many tables each level of db holds.
func tablesIn(t *testing.T, db *pebble.DB) (perLevel [7]int) {
	t.Helper()
	levels, err := db.SSTables()
	if err != nil {
		t.Fatal(err)
	}
	for l, tables := range levels {
		perLevel[l] = len(tables)
	}
	return perLevel
}

// TestIngestsGoToTheBottom: a large blob and a projection's Load are
// ingested into the bottom level even when the range of their keys falls
// inside the bounds of a bottom-level table (keys of other refs on both
// sides), not into level 0 where a compaction would write them again; and
// they read back after a reopen, whose start-up check reads the tables the
// split left.
func TestIngestsGoToTheBottom(t *testing.T) {
	fs := vfs.NewMem()
	t.Run("blob", func(t *testing.T) {
		s := MustOpen(t, "db", fs)
		for _, ref := range []string{"bkp_A/1", "bkp_Z/1"} { // through the log
			mustPutBlob(t, s, ref, "small", blobData(1, 1000))
		}
		compactAll(t, s.db)
		if n := tablesIn(t, s.db); n[0] != 0 || n[6] == 0 {
			t.Fatalf("tables per level after the compaction: %v", n)
		}
		big := blobData(2, ingestBlobBytes+7)
		mustPutBlob(t, s, "bkp_M/1", "big", big)
		if n := tablesIn(t, s.db); n[0] != 0 {
			t.Fatalf("the ingested blob went to level 0: tables per level %v", n)
		}
		mustGetBlob(t, s, "bkp_M/1", "big", big)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = MustOpen(t, "db", fs)
		mustGetBlob(t, s, "bkp_M/1", "big", big)
		mustGetBlob(t, s, "bkp_A/1", "small", blobData(1, 1000))
		mustGetBlob(t, s, "bkp_Z/1", "small", blobData(1, 1000))
	})
	t.Run("projection load", func(t *testing.T) {
		p := MustOpenProjections(t, "projections", fs, nil)
		err := p.Update("base", 1, func(tx projections.Txn) error {
			for _, k := range []string{"a/1", "z/1"} {
				if err := tx.Set([]byte(k), []byte("v"+k)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		compactAll(t, p.db)
		const n = 1000
		err = p.Update("base", 2, func(projections.Txn) error {
			return p.Load("base", func(add projections.AddSorted) error {
				for i := range n {
					k := fmt.Appendf(nil, "m/%04d", i)
					if err := add(0, k, append([]byte("v"), k...)); err != nil {
						return err
					}
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := tablesIn(t, p.db); got[0] != 0 {
			t.Fatalf("the loaded table went to level 0: tables per level %v", got)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		p = MustOpenProjections(t, "projections", fs, nil)
		if got := scanKeys(t, p, "m/", ""); len(got) != n {
			t.Fatalf("after a reopen: %d loaded keys, want %d", len(got), n)
		}
		if got := scanKeys(t, p, "", ""); len(got) != n+2 {
			t.Fatalf("after a reopen: %d keys, want %d", len(got), n+2)
		}
	})
}
