package pebblestore

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// TestProjectionLoad: Load writes its runs as tables, from inside an
// Update of the same projection, readable with the Update's writes once
// it commits and after a reopen; keys out of order, a run out of range
// or fn failing write nothing and leave no file; the files of a load a
// crash interrupted are removed when the store opens.
func TestProjectionLoad(t *testing.T) {
	fs := vfs.NewMem()
	s := MustOpenProjections(t, "projections", fs, nil)
	const n = 5000
	rows := func(add projections.AddSorted) error {
		for i := range n {
			if err := add(0, fmt.Appendf(nil, "r/%05d", i), fmt.Appendf(nil, "vr/%05d", i)); err != nil {
				return err
			}
			if err := add(1, fmt.Appendf(nil, "l/%05d", i), fmt.Appendf(nil, "vl/%05d", i)); err != nil {
				return err
			}
		}
		return nil
	}
	err := s.Update("base", 3, func(tx projections.Txn) error {
		if err := s.Load("base", rows); err != nil {
			return err
		}
		return tx.Set([]byte("m/meta"), []byte("vm/meta"))
	})
	if err != nil {
		t.Fatalf("Update with a Load: %v", err)
	}
	check := func(s *Projections, what string) {
		t.Helper()
		for _, prefix := range []string{"r/", "l/"} {
			if got := scanKeys(t, s, prefix, ""); len(got) != n || got[0] != prefix+"00000" || got[n-1] != fmt.Sprintf("%s%05d", prefix, n-1) {
				t.Fatalf("%s: %d keys of %s", what, len(got), prefix)
			}
		}
		if got := scanKeys(t, s, "m/", ""); !slices.Equal(got, []string{"m/meta"}) {
			t.Fatalf("%s: the Update's own write: %v", what, got)
		}
		if p, err := s.Position("base"); err != nil || p != 3 {
			t.Fatalf("%s: position %d, %v", what, p, err)
		}
	}
	check(s, "loaded")
	if left := loadFiles(t, fs); len(left) > 0 {
		t.Fatalf("files left after an ingest: %v", left)
	}

	// Failures write nothing and leave nothing.
	boom := errors.New("boom")
	invalid := func(err error) bool { return errors.Is(err, domain.ErrInvalidArgument) }
	for _, c := range []struct {
		name string
		fn   func(add projections.AddSorted) error
		want func(error) bool
	}{
		{"keys out of order", func(add projections.AddSorted) error {
			if err := add(0, []byte("x/2"), []byte("v")); err != nil {
				return err
			}
			return add(0, []byte("x/1"), []byte("v"))
		}, invalid},
		{"a key twice", func(add projections.AddSorted) error {
			if err := add(2, []byte("x/1"), []byte("v")); err != nil {
				return err
			}
			return add(2, []byte("x/1"), []byte("v"))
		}, invalid},
		{"a run out of range", func(add projections.AddSorted) error {
			return add(maxLoadRuns, []byte("x/1"), []byte("v"))
		}, invalid},
		{"fn fails", func(add projections.AddSorted) error {
			if err := add(0, []byte("x/1"), []byte("v")); err != nil {
				return err
			}
			return boom
		}, func(err error) bool { return errors.Is(err, boom) }},
		{"runs that overlap", func(add projections.AddSorted) error {
			if err := add(0, []byte("x/1"), []byte("v")); err != nil {
				return err
			}
			if err := add(0, []byte("x/3"), []byte("v")); err != nil {
				return err
			}
			return add(1, []byte("x/2"), []byte("v"))
		}, invalid},
	} {
		if err := s.Load("base", c.fn); !c.want(err) {
			t.Errorf("%s: %v", c.name, err)
		}
		if got := scanKeys(t, s, "x/", ""); len(got) > 0 {
			t.Errorf("%s: wrote %v", c.name, got)
		}
		if left := loadFiles(t, fs); len(left) > 0 {
			t.Errorf("%s: files left: %v", c.name, left)
		}
	}

	// A load interrupted by a crash leaves its files; the next open
	// removes them, and what was ingested is read after the reopen.
	f, err := fs.Create(fs.PathJoin("projections", loadFilePrefix+"0123456789abcdef-0.sst"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = MustOpenProjections(t, "projections", fs, nil)
	if left := loadFiles(t, fs); len(left) > 0 {
		t.Fatalf("files of an interrupted load left after an open: %v", left)
	}
	check(s, "reopened")
}

// loadFiles lists the files of loads in the projections directory.
func loadFiles(t *testing.T, fs vfs.FS) []string {
	t.Helper()
	names, err := fs.List("projections")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, loadFilePrefix) {
			out = append(out, n)
		}
	}
	return out
}

// TestProjectionLoadDeletes: a nil value in a load deletes its key (an
// empty one is a value); an Update's transaction is Unwritten until it
// writes; an Update committed before a load (without a sync) survives a
// crash right after the load, as the loaded keys do.
func TestProjectionLoadDeletes(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := MustOpenProjections(t, "projections", fs, nil)
	err := s.Update("p", 1, func(tx projections.Txn) error {
		u, ok := tx.(projections.Unwritten)
		if !ok || !u.Unwritten() {
			t.Fatalf("a new transaction: Unwritten %v (implemented %v)", ok && u.Unwritten(), ok)
		}
		for _, k := range []string{"k/a", "k/b"} {
			if err := tx.Set([]byte(k), []byte("v")); err != nil {
				return err
			}
		}
		if u.Unwritten() {
			t.Fatal("Unwritten after two writes")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// An Update whose keys the load does not overlap (so that no flush
	// makes them durable), committed without a sync.
	if err := s.Update("p", 2, func(tx projections.Txn) error { return tx.Set([]byte("j/x"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	err = s.Update("p", 3, func(tx projections.Txn) error {
		return s.Load("p", func(add projections.AddSorted) error {
			for _, kv := range []struct {
				k string
				v []byte
			}{{"k/a", nil}, {"k/c", []byte("v")}, {"k/e", []byte{}}} {
				if err := add(0, []byte(kv.k), kv.v); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	pairs := func(r projections.Reader) []string {
		var out []string
		if err := r.Scan([]byte("k/"), nil, func(k, v []byte) (bool, error) {
			out = append(out, string(k)+"="+string(v))
			return true, nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := []string{"k/b=v", "k/c=v", "k/e="}
	if got := pairs(s); !slices.Equal(got, want) {
		t.Fatalf("after the load: %v, want %v", got, want)
	}
	clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	c := MustOpenProjections(t, "projections", clone, nil)
	if got := pairs(c); !slices.Equal(got, want) {
		t.Fatalf("after a crash right after the load: %v, want %v", got, want)
	}
	if _, ok, err := c.Get([]byte("j/x")); err != nil || !ok {
		t.Fatalf("after a crash right after the load, the Update before it is lost (%v)", err)
	}
}
