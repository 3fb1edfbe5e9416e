package pebblestore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
)

// dirState maps every file under dir to the SHA-256 of its contents.
func dirState(tb testing.TB, fs vfs.FS, dir string) map[string]string {
	tb.Helper()
	names, err := fs.List(dir)
	if err != nil {
		tb.Fatal(err)
	}
	out := make(map[string]string, len(names))
	for _, n := range names {
		f, err := fs.Open(fs.PathJoin(dir, n))
		if err != nil {
			tb.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		_ = f.Close()
		if err != nil {
			tb.Fatal(err)
		}
		out[n] = fmt.Sprintf("%x", h.Sum(nil))
	}
	return out
}

// liveTables lists the live sstable files of dir (which must not be
// open), in order, by opening the database read-only.
func liveTables(tb testing.TB, fs vfs.FS, dir string) []string {
	tb.Helper()
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, ReadOnly: true, Logger: pebbleLogger{l: discardLogger()}})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	levels, err := db.SSTables()
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, level := range levels {
		for _, t := range level {
			out = append(out, fmt.Sprintf("%s.sst", t.BackingSSTNum))
		}
	}
	slices.Sort(out)
	return out
}

// flipByte flips one byte of the file at path on the real disk.
func flipByte(tb testing.TB, path string, at int64) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		tb.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, at); err != nil {
		tb.Fatal(err)
	}
}

// mustLogStore makes, on the real disk, a closed log store that holds
// events, a wrapped key and a blob in sstables, and returns its directory.
func mustLogStore(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "db")
	s, err := Open(dir, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	mustAppend(tb, s, "kms-a", domain.ExpectNoStream, eventlog.Events("kms-a", 1, damageEvents))
	if _, err := s.PutWrapped(context.Background(), "kms_a", []byte("wrapped"), 0); err != nil {
		tb.Fatal(err)
	}
	if err := s.PutBlob(context.Background(), "bkp_a/1", "slice", []byte("blob")); err != nil {
		tb.Fatal(err)
	}
	if err := s.Close(); err != nil { // flushes
		tb.Fatal(err)
	}
	// A second start validates the flushed table and records it.
	s, err = Open(dir, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// damageEvents is the number of events of mustLogStore: enough for the
// log to span many blocks, most of them read by nothing but ReadAll.
const damageEvents = 2000

// TestDamagedTableRefusesOpen: one flipped byte in an sstable of the log
// store makes Open fail with one error naming the file, what it holds and
// the way out, and Open writes nothing.
func TestDamagedTableRefusesOpen(t *testing.T) {
	dir := mustLogStore(t)
	tables := liveTables(t, vfs.Default, dir)
	if len(tables) == 0 {
		t.Fatal("test setup: the store has no sstable")
	}
	table := filepath.Join(dir, tables[0])
	flipByte(t, table, 10)
	before := dirState(t, vfs.Default, dir)

	_, err := Open(dir, Options{})
	if !errors.Is(err, domain.ErrCorrupt) {
		t.Fatalf("Open of a store with a damaged table: %v, want ErrCorrupt", err)
	}
	msg := err.Error()
	for _, want := range []string{table, "event log", "restore the data directory from a copy"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q is more than one line", msg)
	}
	if diff := cmp.Diff(before, dirState(t, vfs.Default, dir)); diff != "" {
		t.Errorf("a refused Open changed the directory (-before +after):\n%s", diff)
	}
}

// TestDamageFoundWhileOpen: a table damaged after it was validated fails
// the read that meets it with ErrCorrupt (no panic), the store reports the
// damage, and the next Open refuses.
func TestDamageFoundWhileOpen(t *testing.T) {
	dir := mustLogStore(t)
	table := filepath.Join(dir, liveTables(t, vfs.Default, dir)[0])
	info, err := os.Stat(table)
	if err != nil {
		t.Fatal(err)
	}
	var fatal error
	s, err := Open(dir, Options{Fatal: func(err error) { fatal = err; select {} }})
	if err != nil {
		t.Fatal(err)
	}
	// The middle of the table is in the log's records, which opening the
	// store did not read (nor cache).
	flipByte(t, table, info.Size()/2)
	if _, err := s.ReadAll(context.Background(), 0, damageEvents); !errors.Is(err, domain.ErrCorrupt) {
		t.Fatalf("ReadAll over a damaged table: %v, want ErrCorrupt", err)
	}
	if err := s.Damage(); !errors.Is(err, domain.ErrCorrupt) || !strings.Contains(err.Error(), table) {
		t.Fatalf("Damage() = %v, want ErrCorrupt naming %s", err, table)
	}
	if fatal != nil {
		t.Fatalf("damage became a fatal error: %v", fatal)
	}
	if err := s.Close(); err != nil && !errors.Is(err, domain.ErrCorrupt) {
		t.Fatalf("Close: %v", err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, domain.ErrCorrupt) {
		t.Fatalf("Open after damage was found: %v, want ErrCorrupt", err)
	}
}

// TestValidatedTablesAreNotReadAgain: a table validated once is not read
// again while its size and time stay; one whose bytes changed is.
func TestValidatedTablesAreNotReadAgain(t *testing.T) {
	dir := mustLogStore(t)
	rec, ok, err := readSmallFile(vfs.Default, filepath.Join(dir, checkedTablesFile))
	if err != nil || !ok {
		t.Fatalf("no record of validated tables: %v", err)
	}
	checked := parseChecked(rec)
	tables := liveTables(t, vfs.Default, dir)
	if len(checked) != len(tables) {
		t.Fatalf("record lists %d tables, the store has %d live: %v", len(checked), len(tables), tables)
	}
	// A checker whose reader cannot read these tables (another comparer):
	// a table the record vouches for is not read, any other is.
	other := *pebble.DefaultComparer
	other.Name = "another comparer"
	c := newTableChecker(vfs.Default, dir, logStoreKind, discardLogger())
	c.ro = sstable.ReaderOptions{Comparer: &other}
	for num := range checked {
		if _, err := c.validate(num, -1, checked, ""); err != nil {
			t.Fatalf("a recorded table was read again: %v", err)
		}
		if _, err := c.validate(num, -1, checkedTables{}, ""); err == nil {
			t.Fatalf("a table missing from the record was not read")
		}
	}
}

// TestDamagedReadModelsAreRebuilt: a flipped byte in the read models'
// database makes OpenProjections remove it and start empty, saying why.
func TestDamagedReadModelsAreRebuilt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "projections")
	p, err := OpenProjections(dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Update("state", 3, func(tx projections.Txn) error { return tx.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	tables := liveTables(t, vfs.Default, dir)
	if len(tables) == 0 {
		t.Fatal("test setup: the read models have no sstable")
	}
	flipByte(t, filepath.Join(dir, tables[0]), 10)

	p, err = OpenProjections(dir, Options{}, nil)
	if err != nil {
		t.Fatalf("OpenProjections of damaged read models: %v", err)
	}
	defer p.Close()
	if err := p.Rebuilt(); !errors.Is(err, domain.ErrCorrupt) || !strings.Contains(err.Error(), tables[0]) {
		t.Fatalf("Rebuilt() = %v, want ErrCorrupt naming %s", err, tables[0])
	}
	if pos, err := p.Position("state"); err != nil || pos != 0 {
		t.Fatalf("rebuilt read models: position %d, %v; want 0 (to be replayed)", pos, err)
	}
	if err := p.Update("state", 1, func(tx projections.Txn) error { return tx.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatalf("the rebuilt read models take writes: %v", err)
	}
}

// TestFatalBecomesOneError: Pebble's Fatalf reaches the Fatal hook as one
// error, corruption naming its file, never as a panic with a stack.
func TestFatalBecomesOneError(t *testing.T) {
	var got error
	l := pebbleLogger{l: discardLogger(), dir: "db", kind: logStoreKind, fatal: func(err error) { got = err; panic(errStop) }}
	corrupt := pebble.DataCorruptionInfo{Path: "db/000005.sst", Details: errors.New("pebble: file 000005: block 0/1462: crc32c checksum mismatch")}
	stopped := func(f func()) {
		defer func() {
			if r := recover(); r != errStop {
				t.Fatalf("Fatalf panicked with %v, want the hook to stop it", r)
			}
		}()
		f()
	}
	stopped(func() { l.Fatalf("%s", corrupt) })
	if !errors.Is(got, domain.ErrCorrupt) || !strings.Contains(got.Error(), "db/000005.sst") || strings.Contains(got.Error(), "\n") {
		t.Fatalf("corruption fatal = %v, want one line, ErrCorrupt, naming the file", got)
	}
	stopped(func() { l.Fatalf("MANIFEST sync failed: %v", errors.New("no space left on device\nmore")) })
	if !errors.Is(got, domain.ErrUnavailable) || strings.Contains(got.Error(), "\n") {
		t.Fatalf("I/O fatal = %v, want one line, ErrUnavailable", got)
	}
	// Without a hook Fatalf still cannot return: it panics with the error.
	defer func() {
		if r, ok := recover().(error); !ok || !errors.Is(r, domain.ErrUnavailable) {
			t.Fatalf("Fatalf without a hook: recovered %v, want the error", r)
		}
	}()
	pebbleLogger{l: discardLogger(), dir: "db", kind: logStoreKind}.Fatalf("boom")
}

var errStop = errors.New("stop")

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestAdoptOlderReadModels: the read models an older layout kept in the
// log store are copied into the new database once, with their positions,
// and deleted from the log store; a copy a crash interrupted is made again.
func TestAdoptOlderReadModels(t *testing.T) {
	fs := vfs.NewMem()
	s := MustOpen(t, "db", fs)
	mustAppend(t, s, "kms-a", domain.ExpectNoStream, eventlog.Events("kms-a", 1, 3))
	older := map[string]string{"a/1": "va/1", "a/2": "va/2", "b/1": "vb/1"}
	b := s.db.NewBatch()
	for k, v := range older {
		_ = b.Set(projKey([]byte(k)), []byte(v), nil)
	}
	_ = b.Set(projPosKey("state"), putUint64(3), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}

	// An interrupted copy: keys, no layout.
	half, err := openProjections("projections", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if err := half.db.Set(projKey([]byte("stale")), []byte("x"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := half.db.Close(); err != nil {
		t.Fatal(err)
	}

	p := MustOpenProjections(t, "projections", fs, s)
	if pos, err := p.Position("state"); err != nil || pos != 3 {
		t.Fatalf("adopted position = %d, %v; want 3", pos, err)
	}
	got := map[string]string{}
	if err := p.Scan(nil, nil, func(k, v []byte) (bool, error) { got[string(k)] = string(v); return true, nil }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(older, got); diff != "" {
		t.Fatalf("adopted read models (-older +adopted):\n%s", diff)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{nsProj}, UpperBound: []byte{nsProjPos + 1}})
	if err != nil {
		t.Fatal(err)
	}
	left := it.First()
	_ = it.Close()
	if left {
		t.Fatal("the log store still holds read models after the adoption")
	}
	if h, _ := s.Head(context.Background()); h != 3 {
		t.Fatalf("the adoption changed the log: head %d", h)
	}
}
