package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
	"github.com/kmsbackup/kmsbackup/test/stallfs"
)

// markStore is a log store on a crashable in-memory file system whose
// flushes are stalled once it is set up: two write-ahead log files hold
// acknowledged events that no sstable holds.
type markStore struct {
	mem     *vfs.MemFS
	fs      *stallfs.FS
	s       *Store
	flushed uint64 // the mark's flushed position
	head    uint64 // the last acknowledged position
	// older is the log file waiting for its flush, newest the one being
	// written. (A recycled log file, kept for reuse, has a lower number.)
	older, newest string
}

func newMarkStore(t *testing.T) *markStore {
	t.Helper()
	mem := vfs.NewCrashableMem()
	fs := stallfs.New(mem)
	s, err := Open("db", Options{FS: fs, MemTableSize: 64 << 10, MarkInterval: -1, FlushInterval: -1, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	m := &markStore{mem: mem, fs: fs, s: s}
	t.Cleanup(func() {
		fs.Unstall()
		_ = s.Close()
	})
	res := mustAppend(t, s, "kms-a", domain.ExpectAny, eventlog.Events("kms-a", 1, 20))
	if err := s.SyncMark(true); err != nil {
		t.Fatal(err)
	}
	m.flushed = res.LastPosition
	fs.Stall()
	// Append until the memtable switches (a new log file; the one before
	// waits for a flush that cannot finish), then once more.
	newest := func() string {
		w, err := stallfs.WALs(mem, "db")
		if err != nil || len(w) == 0 {
			t.Fatalf("write-ahead logs: %v, %v", w, err)
		}
		return w[len(w)-1]
	}
	m.older = newest()
	for i := 0; newest() == m.older; i++ {
		if i > 10000 {
			t.Fatal("test setup: the write-ahead log never switched files")
		}
		mustAppend(t, s, "kms-a", domain.ExpectAny, eventlog.Events("kms-a", uint64(100+i), 10))
	}
	res = mustAppend(t, s, "kms-a", domain.ExpectAny, eventlog.Events("kms-a", 99, 10))
	m.head, m.newest = res.LastPosition, newest()
	return m
}

// crash returns the file system as a crash now would leave it (synced
// data only).
func (m *markStore) crash() *vfs.MemFS { return m.mem.CrashClone(vfs.CrashCloneCfg{}) }

func memState(tb testing.TB, fs vfs.FS) map[string]string { return dirState(tb, fs, "db") }

// TestMarkSurvivesACrash: after a crash, with write-ahead log files
// waiting for a flush, every acknowledged event is there and the check
// passes: the mark never runs ahead of what is durable.
func TestMarkSurvivesACrash(t *testing.T) {
	m := newMarkStore(t)
	if err := m.s.SyncMark(false); err != nil {
		t.Fatal(err)
	}
	clone := m.crash()
	s, err := Open("db", Options{FS: clone, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("Open after a crash: %v", err)
	}
	defer s.Close()
	if h, _ := s.Head(context.Background()); h != m.head {
		t.Fatalf("head after the crash = %d, want %d", h, m.head)
	}
}

// TestOlderWALRemovedIsAHole: removing a write-ahead log file that is not
// the newest keeps the log's end and punches a hole; Open counts the
// positions after the last flush, refuses, names the missing ones, writes
// nothing, and the flag that accepts a lost end does not accept a hole.
func TestOlderWALRemovedIsAHole(t *testing.T) {
	m := newMarkStore(t)
	if err := m.s.SyncMark(false); err != nil {
		t.Fatal(err)
	}
	clone := m.crash()
	if err := clone.Remove("db/" + m.older); err != nil {
		t.Fatal(err)
	}
	before := memState(t, clone)
	for _, accept := range []bool{false, true} {
		_, err := Open("db", Options{FS: clone, Logger: discardLogger(), AcceptLostLogPositions: accept})
		var lost *LostPositionsError
		if !errors.As(err, &lost) || !errors.Is(err, domain.ErrCorrupt) {
			t.Fatalf("Open (accept %v) with an older WAL removed: %v, want a LostPositionsError", accept, err)
		}
		if lost.TailOnly() || lost.Head != m.head || lost.Acknowledged != m.head {
			t.Fatalf("lost = %+v: want a hole below head %d", lost, m.head)
		}
		first := lost.Missing[0]
		if first.First != m.flushed+1 || first.Last >= m.head {
			t.Fatalf("missing %v, want a range starting right after the flushed position %d and ending before %d", lost.Missing, m.flushed, m.head)
		}
		if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("positions %s", first)) || strings.Contains(msg, "\n") {
			t.Fatalf("error %q does not name the missing positions %s on one line", msg, first)
		}
	}
	if diff := cmp.Diff(before, memState(t, clone)); diff != "" {
		t.Fatalf("a refused Open changed the files (-before +after):\n%s", diff)
	}
}

// TestNewestWALRemovedIsALostEnd: removing the newest write-ahead log
// file loses the log's end; the mark sees it; the flag accepts it, moves
// the mark back, and the store goes on.
func TestNewestWALRemovedIsALostEnd(t *testing.T) {
	m := newMarkStore(t)
	if err := m.s.SyncMark(false); err != nil {
		t.Fatal(err)
	}
	clone := m.crash()
	if err := clone.Remove("db/" + m.newest); err != nil {
		t.Fatal(err)
	}
	_, err := Open("db", Options{FS: clone, Logger: discardLogger()})
	var lost *LostPositionsError
	if !errors.As(err, &lost) || !lost.TailOnly() || lost.Acknowledged != m.head || lost.Head >= m.head {
		t.Fatalf("Open with the newest WAL removed: %v (%+v), want a lost end up to %d", err, lost, m.head)
	}
	want := PositionRange{lost.Head + 1, m.head}
	if lost.Missing[0] != want {
		t.Fatalf("missing %v, want %v", lost.Missing, want)
	}

	s, err := Open("db", Options{FS: clone, Logger: discardLogger(), AcceptLostLogPositions: true})
	if err != nil {
		t.Fatalf("Open accepting the lost end: %v", err)
	}
	if got := s.Lost(); got == nil || got.Missing[0] != want {
		t.Fatalf("Lost() = %+v, want %v", got, want)
	}
	res := mustAppend(t, s, "kms-b", domain.ExpectNoStream, eventlog.Events("kms-b", 1, 1))
	if res.FirstPosition != lost.Head+1 {
		t.Fatalf("append after the accepted loss at %d, want %d", res.FirstPosition, lost.Head+1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open("db", Options{FS: clone, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("Open after the loss was accepted: %v", err)
	}
	_ = s.Close()
}

// TestMarkFile: the mark's encoding round-trips and rejects damage; a mark
// file that does not parse fails Open as damage, named.
func TestMarkFile(t *testing.T) {
	for _, m := range []logMark{{0, 0}, {7, 3}, {1 << 40, 1 << 40}} {
		got, ok := parseMark(m.encode())
		if !ok || got != m {
			t.Errorf("parse(encode(%+v)) = %+v, %v", m, got, ok)
		}
	}
	good := logMark{head: 12, flushed: 10}.encode()
	for name, b := range map[string][]byte{
		"empty":          nil,
		"other crc":      []byte(strings.Replace(string(good), "head=12", "head=13", 1)),
		"flushed > head": logMark{head: 3, flushed: 4}.encode(),
		"truncated":      good[:len(good)-4],
	} {
		if _, ok := parseMark(b); ok {
			t.Errorf("%s: parsed", name)
		}
	}
	// A mark file that does not parse is damage, named.
	fs := vfs.NewMem()
	s := MustOpen(t, "db", fs)
	mustAppend(t, s, "kms-a", domain.ExpectAny, eventlog.Events("kms-a", 1, 3))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(fs, "db", logMarkFile, []byte("garbage\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("db", Options{FS: fs}); !errors.Is(err, domain.ErrCorrupt) || !strings.Contains(err.Error(), logMarkFile) {
		t.Fatalf("Open with a garbled mark: %v, want ErrCorrupt naming %s", err, logMarkFile)
	}
}
