package pebblestore

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// A cursor answers as Get from the snapshot it was opened on, whatever the
// order of the keys asked for, and reads nothing outside its prefix.
func TestCursorReadsAsGet(t *testing.T) {
	s := MustOpenProjections(t, "projections", vfs.NewMem(), nil)
	const n = 300
	write := func(seq uint64, fn func(tx projections.Txn) error) {
		t.Helper()
		if err := s.Update("p", seq, fn); err != nil {
			t.Fatal(err)
		}
	}
	write(1, func(tx projections.Txn) error {
		for i := range n {
			if i%3 != 0 { // every third key absent
				if err := tx.Set(fmt.Appendf(nil, "k/%04d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
					return err
				}
			}
		}
		// Neighbours outside the prefix.
		if err := tx.Set([]byte("j/0001"), []byte("j")); err != nil {
			return err
		}
		return tx.Set([]byte("l/0001"), []byte("l"))
	})
	var want [n]struct {
		v  string
		ok bool
	}
	for i := range n {
		v, ok, err := s.Get(fmt.Appendf(nil, "k/%04d", i))
		if err != nil {
			t.Fatal(err)
		}
		want[i].v, want[i].ok = string(v), ok
	}
	c, err := projections.NewCursor(s, []byte("k/"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*cursor); !ok {
		t.Fatalf("NewCursor on the Pebble read models gave %T, not its cursor", c)
	}
	// Written after the cursor opened: the cursor does not see it.
	write(2, func(tx projections.Txn) error {
		if err := tx.Set([]byte("k/0000"), []byte("late")); err != nil {
			return err
		}
		return tx.Delete([]byte("k/0001"))
	})
	order := []struct {
		name string
		at   func(i int) int
	}{
		{"increasing", func(i int) int { return i }},
		{"decreasing", func(i int) int { return n - 1 - i }},
		{"scattered", func(i int) int { return (i * 7) % n }},
		{"increasing again", func(i int) int { return i }},
	}
	for _, o := range order {
		for i := range n {
			j := o.at(i)
			v, ok, err := c.Get(fmt.Appendf(nil, "k/%04d", j))
			if err != nil {
				t.Fatalf("%s: %v", o.name, err)
			}
			if ok != want[j].ok || string(v) != want[j].v {
				t.Errorf("%s: k/%04d: cursor %q %v, Get before the late writes %q %v", o.name, j, v, ok, want[j].v, want[j].ok)
			}
		}
	}
	for _, k := range []string{"j/0001", "l/0001", "k/", "k/9999"} {
		if v, ok, err := c.Get([]byte(k)); err != nil || ok {
			t.Errorf("cursor over k/ read %s: %q %v %v, want absent", k, v, ok, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := c.Get([]byte("k/0002")); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("Get after Close: %v, want ErrFailedPrecondition", err)
	}
	// A new cursor sees the late writes.
	c, err = s.Cursor([]byte("k/"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, ok, _ := c.Get([]byte("k/0000")); !ok || string(v) != "late" {
		t.Errorf("new cursor: k/0000 %q %v, want late", v, ok)
	}
	if _, ok, _ := c.Get([]byte("k/0001")); ok {
		t.Error("new cursor: k/0001 present, want deleted")
	}
}

// Closing the store closes the cursors still open (Pebble refuses to close
// with iterators open): their next Get fails as any call after Close, and
// holding one does not keep Close waiting.
func TestCloseClosesOpenCursors(t *testing.T) {
	s, err := OpenProjections("projections", Options{FS: vfs.NewMem()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update("p", 1, func(tx projections.Txn) error { return tx.Set([]byte("k/1"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	c, err := s.Cursor([]byte("k/"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Get([]byte("k/1")); err != nil || !ok {
		t.Fatalf("Get: %v %v", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close with a cursor open: %v", err)
	}
	if _, _, err := c.Get([]byte("k/1")); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("Get after the store closed: %v, want ErrUnavailable", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("cursor Close after the store's: %v", err)
	}
	if _, err := s.Cursor([]byte("k/")); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("Cursor after Close: %v, want ErrUnavailable", err)
	}
}
