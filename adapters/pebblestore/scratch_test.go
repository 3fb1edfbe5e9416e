package pebblestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

func mustScratch(t *testing.T, s *Scratches) commands.Scratch {
	t.Helper()
	sc, err := s.OpenScratch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sc.Close() })
	return sc
}

// contents reads every key and value of a scratch.
func contents(t *testing.T, sc commands.Scratch, lower, upper []byte) []string {
	t.Helper()
	it, err := sc.NewIter(lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.Value()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%s", it.Key(), v))
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestScratchWritesAndReads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "scratch")
	// What an earlier process left is removed.
	if err := os.MkdirAll(filepath.Join(dir, "left-behind"), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := NewScratches(dir, ScratchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "left-behind")); !os.IsNotExist(err) {
		t.Fatalf("a scratch directory of an earlier process is still there: %v", err)
	}
	sc := mustScratch(t, s)
	for i := range 5000 { // more than one batch
		if err := sc.Set(fmt.Appendf(nil, "k%05d", i), bytes.Repeat([]byte{'v'}, 300)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sc.DeleteRange([]byte("k00010"), []byte("k04990")); err != nil {
		t.Fatal(err)
	}
	if err := sc.Set([]byte("k00020"), []byte("again")); err != nil {
		t.Fatal(err)
	}
	if err := sc.Flush(); err != nil {
		t.Fatal(err)
	}
	got := contents(t, sc, nil, nil)
	if len(got) != 10+1+10 || got[10] != "k00020=again" {
		t.Fatalf("%d keys, the 11th %q", len(got), got[10])
	}
	if got := contents(t, sc, []byte("k00020"), []byte("k04991")); len(got) != 2 {
		t.Fatalf("bounded: %v", got)
	}
	it, err := sc.NewIter(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !it.SeekGE([]byte("k00011")) || string(it.Key()) != "k00020" {
		t.Fatalf("SeekGE lands on %q", it.Key())
	}
	_ = it.Close()
	scratchDir := sc.(*scratch).dir
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(scratchDir); !os.IsNotExist(err) {
		t.Fatalf("the scratch's files outlive it: %v", err)
	}
	if err := sc.Set([]byte("x"), nil); err == nil {
		t.Fatal("a write after Close succeeds")
	}
}

// TestScratchTablesRoundTrip: a scratch's content written as tables, cut
// where split says, loads into another scratch unchanged, on top of (and
// over) what that one held.
func TestScratchTablesRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, err := NewScratches(filepath.Join(t.TempDir(), "scratch"), ScratchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src := mustScratch(t, s)
	for i := range 20000 {
		v := sha256.Sum256(fmt.Appendf(nil, "value %d", i)) // incompressible, as sealed material is
		if err := src.Set(fmt.Appendf(nil, "item%06d", i), v[:]); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Flush(); err != nil {
		t.Fatal(err)
	}
	want := contents(t, src, nil, nil)
	type table struct {
		data        []byte
		first, last string
		keys        uint64
	}
	var tables []table
	err = src.WriteTables(ctx, nil, nil, func(key, _ []byte, size int64) (bool, error) {
		return size >= 128<<10 && bytes.HasSuffix(key, []byte("0")), nil // cut only before a key ending in 0
	}, func(tb *commands.ScratchTable) error {
		data, err := io.ReadAll(tb.Data)
		if err != nil {
			return err
		}
		if int64(len(data)) != tb.Size {
			return fmt.Errorf("table of %d bytes says %d", len(data), tb.Size)
		}
		tables = append(tables, table{data, string(tb.First), string(tb.Last), tb.Keys})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) < 3 {
		t.Fatalf("%d tables", len(tables))
	}
	var keys uint64
	for i, tb := range tables {
		keys += tb.keys
		if i > 0 && (tb.first <= tables[i-1].last || !bytes.HasSuffix([]byte(tb.first), []byte("0"))) {
			t.Fatalf("table %d starts at %s after %s", i, tb.first, tables[i-1].last)
		}
	}
	if keys != 20000 {
		t.Fatalf("%d keys in the tables", keys)
	}

	dst := mustScratch(t, s)
	if err := dst.Set([]byte("item000005"), []byte("older")); err != nil {
		t.Fatal(err)
	}
	if err := dst.Set([]byte("zzz"), []byte("kept")); err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if _, err := dst.AddTable(bytes.NewReader(tb.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := dst.Ingest(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(append(want, "zzz=kept"), contents(t, dst, nil, nil)); diff != "" {
		t.Fatalf("loaded tables (-want +got):\n%s", diff)
	}

	// Two tables that overlap are refused in one Ingest; a damaged table
	// is corruption; neither changes what the scratch holds.
	other := mustScratch(t, s)
	for _, tb := range [][]byte{tables[0].data, tables[0].data} {
		if _, err := other.AddTable(bytes.NewReader(tb)); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Ingest(ctx); err == nil {
		t.Fatal("overlapping tables ingested")
	}
	bad := bytes.Clone(tables[1].data)
	bad[len(bad)/2] ^= 0xff
	bad = bad[:len(bad)-10]
	if _, err := other.AddTable(bytes.NewReader(bad)); err != nil {
		t.Fatal(err)
	}
	if err := other.Ingest(ctx); !domain.IsCorruption(err) {
		t.Fatalf("a damaged table: %v, want a corruption", err)
	}
	if got := contents(t, other, nil, nil); len(got) != 0 {
		t.Fatalf("failed ingests left %d keys", len(got))
	}
}

// Sorted runs that overlap one another are read back merged, on top of
// what was written before them; a run out of order is refused and leaves
// nothing.
func TestScratchIngestSortedRuns(t *testing.T) {
	ctx := context.Background()
	s, err := NewScratches(filepath.Join(t.TempDir(), "scratch"), ScratchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc := mustScratch(t, s)
	if err := sc.Set([]byte("b"), []byte("written")); err != nil {
		t.Fatal(err)
	}
	run := func(kv ...string) func() ([]byte, []byte, bool) {
		return func() ([]byte, []byte, bool) {
			if len(kv) == 0 {
				return nil, nil, false
			}
			k, v := kv[0], kv[1]
			kv = kv[2:]
			return []byte(k), []byte(v), true
		}
	}
	if err := sc.IngestSorted(ctx, run("a", "1", "c", "1", "e", "1")); err != nil {
		t.Fatal(err)
	}
	if err := sc.IngestSorted(ctx, run("b", "2", "d", "2", "e", "2")); err != nil {
		t.Fatal(err)
	}
	err = sc.IngestSorted(ctx, run("x", "3", "f", "3"))
	if !domain.IsCorruption(err) {
		t.Fatalf("a run out of order: %v", err)
	}
	if err := sc.IngestSorted(ctx, run()); err != nil {
		t.Fatalf("an empty run: %v", err)
	}
	got := contents(t, sc, nil, nil)
	want := []string{"a=1", "b=2", "c=1", "d=2", "e=2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("contents (-want +got):\n%s", diff)
	}
}

// TestScratchWriteSortedTables: records handed in key order are written as
// tables that load as WriteTables' do, and the scratch that wrote them
// holds nothing of them; records out of order are refused, and a context
// ended while next waits ends the writing with its error, not as if
// everything was written.
func TestScratchWriteSortedTables(t *testing.T) {
	ctx := context.Background()
	s, err := NewScratches(filepath.Join(t.TempDir(), "scratch"), ScratchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc := mustScratch(t, s)
	var want []string
	i := 0
	next := func() ([]byte, []byte, bool) {
		if i == 20000 {
			return nil, nil, false
		}
		v := sha256.Sum256(fmt.Appendf(nil, "value %d", i))
		k := fmt.Appendf(nil, "item%06d", i)
		want = append(want, fmt.Sprintf("%s=%x", k, v[:]))
		i++
		return k, v[:], true
	}
	var tables [][]byte
	keys := uint64(0)
	put := func(tb *commands.ScratchTable) error {
		data, err := io.ReadAll(tb.Data)
		tables = append(tables, data)
		keys += tb.Keys
		return err
	}
	err = sc.WriteSortedTables(ctx, next, func(_, _ []byte, size int64) (bool, error) { return size >= 128<<10, nil }, put)
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) < 3 || keys != 20000 {
		t.Fatalf("%d tables of %d keys", len(tables), keys)
	}
	if got := contents(t, sc, nil, nil); len(got) != 0 {
		t.Fatalf("the writing scratch holds %d keys", len(got))
	}
	dst := mustScratch(t, s)
	for _, data := range tables {
		if _, err := dst.AddTable(bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := dst.Ingest(ctx); err != nil {
		t.Fatal(err)
	}
	got := contents(t, dst, nil, nil)
	for j := range got { // contents shows values as text
		k, v, _ := strings.Cut(got[j], "=")
		got[j] = fmt.Sprintf("%s=%x", k, v)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("loaded tables (-want +got):\n%s", diff)
	}

	noSplit := func(_, _ []byte, _ int64) (bool, error) { return false, nil }
	kv := []string{"b", "a"}
	err = sc.WriteSortedTables(ctx, func() ([]byte, []byte, bool) {
		if len(kv) == 0 {
			return nil, nil, false
		}
		k := kv[0]
		kv = kv[1:]
		return []byte(k), nil, true
	}, noSplit, put)
	if !domain.IsCorruption(err) {
		t.Fatalf("records out of order: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	n, puts := 0, len(tables)
	err = sc.WriteSortedTables(cctx, func() ([]byte, []byte, bool) {
		if n == 10 {
			cancel() // as a producer that gives up does
			return nil, nil, false
		}
		n++
		return fmt.Appendf(nil, "k%02d", n), nil, true
	}, noSplit, put)
	if !errors.Is(err, context.Canceled) || len(tables) != puts {
		t.Fatalf("a context ended while next waits: %v, %d tables put", err, len(tables)-puts)
	}
}
