package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
)

// MustOpen opens a store in dir on fs (nil: the real disk) and closes it
// when the test ends.
func MustOpen(tb testing.TB, dir string, fs vfs.FS) *Store {
	tb.Helper()
	s, err := Open(dir, Options{FS: fs})
	if err != nil {
		tb.Fatalf("Open(%s): %v", dir, err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestEventLogConformance(t *testing.T) {
	eventlog.Run(t, func(t *testing.T) commands.EventLog {
		s, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	}, eventlog.Features{ContiguousPositions: true})
}

func mustAppend(tb testing.TB, s *Store, stream string, exp domain.ExpectedRevision, evs []domain.Event) commands.AppendResult {
	tb.Helper()
	res, err := s.Append(context.Background(), stream, exp, evs)
	if err != nil {
		tb.Fatalf("Append(%s): %v", stream, err)
	}
	return res
}

func TestPositionsStartAtOne(t *testing.T) {
	s := MustOpen(t, "db", vfs.NewMem())
	ctx := context.Background()
	if h, err := s.Head(ctx); err != nil || h != 0 {
		t.Fatalf("Head of an empty log = %d, %v; want 0", h, err)
	}
	res := mustAppend(t, s, "kms-a", domain.ExpectNoStream, eventlog.Events("kms-a", 1, 3))
	want := commands.AppendResult{FirstPosition: 1, LastPosition: 3, LastRevision: 2}
	if res != want {
		t.Fatalf("first append = %+v, want %+v", res, want)
	}
	res = mustAppend(t, s, "kms-b", domain.ExpectNoStream, eventlog.Events("kms-b", 1, 1))
	if want := (commands.AppendResult{FirstPosition: 4, LastPosition: 4, LastRevision: 0}); res != want {
		t.Fatalf("second append = %+v, want %+v", res, want)
	}
}

func TestReopen(t *testing.T) {
	fs := vfs.NewMem()
	ctx := context.Background()
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	evs := eventlog.Events("kms-a", 1, 4)
	res := mustAppend(t, s, "kms-a", domain.ExpectNoStream, evs)
	wrev, err := s.PutWrapped(context.Background(), "kms_a", []byte("wrapped"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s = MustOpen(t, "db", fs)
	if h, _ := s.Head(ctx); h != res.LastPosition {
		t.Fatalf("Head after reopen = %d, want %d", h, res.LastPosition)
	}
	// The event-ID index survived: a retry is still recognised.
	if again, err := s.Append(ctx, "kms-a", domain.ExpectNoStream, evs); err != nil || again != res {
		t.Fatalf("retry after reopen = %+v, %v; want %+v", again, err, res)
	}
	// The stream head survived.
	if _, err := s.Append(ctx, "kms-a", domain.ExpectRevision(2), eventlog.Events("kms-a", 2, 1)); !errors.Is(err, domain.ErrWrongExpectedRevision) {
		t.Fatalf("stale expected revision after reopen: %v", err)
	}
	next := mustAppend(t, s, "kms-a", domain.ExpectRevision(3), eventlog.Events("kms-a", 3, 1))
	if next.FirstPosition != res.LastPosition+1 || next.LastRevision != 4 {
		t.Fatalf("append after reopen = %+v", next)
	}
	got, err := s.ReadStream(ctx, "kms-a", 0, false, 10)
	if err != nil || len(got) != 5 {
		t.Fatalf("ReadStream after reopen: %d events, %v", len(got), err)
	}
	if w, rev, err := s.GetWrapped(context.Background(), "kms_a"); err != nil || rev != wrev || string(w) != "wrapped" {
		t.Fatalf("GetWrapped after reopen = %q, %d, %v; want revision %d", w, rev, err, wrev)
	}
}

// TestConcurrentRetries sends the same batch from several goroutines at
// once: they usually land in one commit group, which must recognise its own
// IDs, so every call succeeds with the same result and one copy is stored.
func TestConcurrentRetries(t *testing.T) {
	s := MustOpen(t, t.TempDir(), nil)
	ctx := context.Background()
	for round := range 20 {
		st := fmt.Sprintf("kms-%d", round)
		evs := eventlog.Events(st, uint64(round), 3)
		results := make([]commands.AppendResult, 4)
		errs := make([]error, 4)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.Append(ctx, st, domain.ExpectNoStream, evs)
			})
		}
		close(start)
		wg.Wait()
		for i := range results {
			if errs[i] != nil || results[i] != results[0] {
				t.Fatalf("round %d: call %d = %+v, %v; call 0 = %+v", round, i, results[i], errs[i], results[0])
			}
		}
		got, err := s.ReadStream(ctx, st, 0, false, 10)
		if err != nil || len(got) != 3 {
			t.Fatalf("round %d: stream has %d events, %v; want 3", round, len(got), err)
		}
	}
}

func TestEventIDOfAnotherStream(t *testing.T) {
	s := MustOpen(t, "db", vfs.NewMem())
	evs := eventlog.Events("kms-a", 1, 2)
	mustAppend(t, s, "kms-a", domain.ExpectAny, evs)
	moved := evs[:1:1]
	moved[0].Stream = "kms-b"
	_, err := s.Append(context.Background(), "kms-b", domain.ExpectAny, moved)
	if !errors.Is(err, domain.ErrInvalidArgument) || !strings.Contains(err.Error(), "kms-a") {
		t.Fatalf("event ID already in another stream: %v, want ErrInvalidArgument naming kms-a", err)
	}
}

func TestReadLimits(t *testing.T) {
	s := MustOpen(t, "db", vfs.NewMem())
	ctx := context.Background()
	if _, err := s.ReadAll(ctx, 0, 0); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("ReadAll(max 0): %v", err)
	}
	if _, err := s.ReadStream(ctx, "kms-a", 0, false, -1); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("ReadStream(max -1): %v", err)
	}
	if _, err := s.ReadStream(ctx, "", 0, false, 1); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("ReadStream of an empty stream name: %v", err)
	}
}

// TestCloseFailsPendingAppends closes the store under load: every append
// either succeeded (and is stored) or failed with ErrUnavailable.
func TestCloseFailsPendingAppends(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var mu sync.Mutex
	var ok []commands.AppendResult
	var wg sync.WaitGroup
	var unavailable atomic.Int64
	for a := range 8 {
		wg.Go(func() {
			st := fmt.Sprintf("kms-%d", a)
			for i := 0; ; i++ {
				res, err := s.Append(ctx, st, domain.ExpectAny, eventlog.Events(st, uint64(i), 2))
				if errors.Is(err, domain.ErrUnavailable) {
					unavailable.Add(1)
					return
				}
				if err != nil {
					t.Errorf("append: %v, want nil or ErrUnavailable", err)
					return
				}
				mu.Lock()
				ok = append(ok, res)
				mu.Unlock()
			}
		})
	}
	time.Sleep(30 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	if unavailable.Load() != 8 {
		t.Fatalf("%d appenders saw ErrUnavailable, want all 8", unavailable.Load())
	}
	if _, err := s.ReadAll(ctx, 0, 1); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("ReadAll after Close: %v", err)
	}
	s = MustOpen(t, "db", fs)
	head, _ := s.Head(ctx)
	for _, res := range ok {
		if res.LastPosition > head {
			t.Fatalf("acknowledged %+v beyond the head %d after reopen", res, head)
		}
	}
	if len(ok) == 0 {
		t.Fatalf("no append succeeded before Close")
	}
}

func TestCorruptRecordIsReported(t *testing.T) {
	s := MustOpen(t, "db", vfs.NewMem())
	ctx := context.Background()
	evs := eventlog.Events("kms-a", 1, 3)
	evs[1].Data = []byte("SECRET-PAYLOAD-BYTES")
	res := mustAppend(t, s, "kms-a", domain.ExpectNoStream, evs)
	key := logKey(res.FirstPosition + 1)
	good, _, err := s.get(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"truncated":      good[:len(good)-3],
		"unknown format": append([]byte{9}, good[1:]...),
		"trailing bytes": append(slices.Clone(good), 0),
		"empty":          {},
	} {
		if err := s.db.Set(key, bad, nil); err != nil {
			t.Fatal(err)
		}
		_, err := s.ReadAll(ctx, 0, 10)
		if !errors.Is(err, domain.ErrCorrupt) {
			t.Errorf("%s record: ReadAll: %v, want ErrCorrupt", name, err)
		} else if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s record: the error shows event data: %v", name, err)
		}
		if _, err := s.ReadStream(ctx, "kms-a", 0, false, 10); !errors.Is(err, domain.ErrCorrupt) {
			t.Errorf("%s record: ReadStream: %v, want ErrCorrupt", name, err)
		}
	}
	// A missing position is a gap, reported as corruption too.
	if err := s.db.Delete(key, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadAll(ctx, 0, 10); !errors.Is(err, domain.ErrCorrupt) {
		t.Errorf("gap: ReadAll: %v, want ErrCorrupt", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, e := range eventlog.Events("kms-a", 1, 3) {
		f.Add(appendRecord(nil, &e))
	}
	f.Add([]byte{1}) // the format version alone
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeRecord(7, b, nil)
		if err != nil {
			if !errors.Is(err, domain.ErrCorrupt) {
				t.Fatalf("decode error %v is not a corruption", err)
			}
			return
		}
		// What decodes re-encodes to the same bytes, unless the time or
		// the varints had a non-canonical form.
		again := appendRecord(nil, &e)
		setRecordRevision(again, e.Revision)
		e2, err := decodeRecord(7, again, nil)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if diff := cmp.Diff(e, e2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// MustOpenProjections opens the read models' database in dir on fs (nil:
// the real disk), adopting legacy's older read models when it is not nil,
// and closes it when the test ends.
func MustOpenProjections(tb testing.TB, dir string, fs vfs.FS, legacy *Store) *Projections {
	tb.Helper()
	p, err := OpenProjections(dir, Options{FS: fs}, legacy)
	if err != nil {
		tb.Fatalf("OpenProjections(%s): %v", dir, err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

func TestProjectionStore(t *testing.T) {
	fs := vfs.NewMem()
	log := MustOpen(t, "db", fs)
	s := MustOpenProjections(t, "projections", fs, log)
	if p, err := s.Position("state"); err != nil || p != 0 {
		t.Fatalf("Position of a new projection = %d, %v", p, err)
	}
	err := s.Update("state", 7, func(tx projections.Txn) error {
		for _, k := range []string{"a/1", "a/2", "a/3", "b/1"} {
			if err := tx.Set([]byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		// The transaction sees its own writes.
		if v, ok, err := tx.Get([]byte("a/2")); err != nil || !ok || string(v) != "va/2" {
			return fmt.Errorf("Get of own write = %q, %v, %v", v, ok, err)
		}
		if err := tx.Delete([]byte("a/3")); err != nil {
			return err
		}
		got := scanKeys(t, tx, "a/", "")
		if want := []string{"a/1", "a/2"}; !slices.Equal(got, want) {
			return fmt.Errorf("Scan in txn = %v, want %v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if p, err := s.Position("state"); err != nil || p != 7 {
		t.Fatalf("Position = %d, %v; want 7", p, err)
	}
	if got, want := scanKeys(t, s, "", ""), []string{"a/1", "a/2", "b/1"}; !slices.Equal(got, want) {
		t.Fatalf("Scan all = %v, want %v", got, want)
	}
	if got, want := scanKeys(t, s, "a/", "a/2"), []string{"a/2"}; !slices.Equal(got, want) {
		t.Fatalf("Scan from a/2 = %v, want %v", got, want)
	}
	// fn failing writes nothing, not even the position.
	boom := errors.New("boom")
	err = s.Update("state", 9, func(tx projections.Txn) error {
		_ = tx.Set([]byte("c/1"), []byte("x"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update with failing fn: %v", err)
	}
	if _, ok, _ := s.Get([]byte("c/1")); ok {
		t.Fatal("a failed Update wrote its data")
	}
	if p, _ := s.Position("state"); p != 7 {
		t.Fatalf("a failed Update moved the position to %d", p)
	}
	// DeletePrefix removes exactly the prefix, and the txn sees it.
	var kept projections.Txn
	err = s.Update("state", 10, func(tx projections.Txn) error {
		kept = tx
		if err := tx.DeletePrefix([]byte("a/")); err != nil {
			return err
		}
		if got := scanKeys(t, tx, "", ""); !slices.Equal(got, []string{"b/1"}) {
			return fmt.Errorf("Scan after DeletePrefix in txn = %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := scanKeys(t, s, "", ""); !slices.Equal(got, []string{"b/1"}) {
		t.Fatalf("Scan after DeletePrefix = %v, want [b/1]", got)
	}
	if err := kept.Set([]byte("late"), nil); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("Txn used after Update: %v", err)
	}
	// Projection data does not leak into the log.
	if h, _ := log.Head(context.Background()); h != 0 {
		t.Fatalf("projection writes moved the log head to %d", h)
	}
	// Scan stops when fn says so.
	n := 0
	if err := s.Scan(nil, nil, func(k, v []byte) (bool, error) { n++; return false, nil }); err != nil || n != 1 {
		t.Fatalf("Scan that stops at once visited %d keys, %v", n, err)
	}
}

func scanKeys(t *testing.T, r projections.Reader, prefix, start string) []string {
	t.Helper()
	var st []byte
	if start != "" {
		st = []byte(start)
	}
	var keys []string
	err := r.Scan([]byte(prefix), st, func(k, v []byte) (bool, error) {
		if string(v) != "v"+string(k) {
			return false, fmt.Errorf("key %s has value %q", k, v)
		}
		keys = append(keys, string(k))
		return true, nil
	})
	if err != nil {
		t.Fatalf("Scan(%q, %q): %v", prefix, start, err)
	}
	return keys
}

func TestWrappedKeys(t *testing.T) {
	fs := vfs.NewMem()
	s := MustOpen(t, "db", fs)
	if _, rev, err := s.GetWrapped(context.Background(), "kms_x"); rev != 0 || err != nil {
		t.Fatalf("GetWrapped of a missing ref = %d, %v", rev, err)
	}
	secret := []byte("WRAPPED-KEY-BYTES-0123456789abcdef")
	rev, err := s.PutWrapped(context.Background(), "kms_x", secret, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutWrapped(context.Background(), "kms_y", []byte("other"), 0); err != nil {
		t.Fatal(err)
	}
	got, gotRev, err := s.GetWrapped(context.Background(), "kms_x")
	if err != nil || gotRev != rev || !bytes.Equal(got, secret) {
		t.Fatalf("GetWrapped = %q, %d, %v", got, gotRev, err)
	}
	got[0] = 'X' // the copy is the caller's
	if again, _, _ := s.GetWrapped(context.Background(), "kms_x"); !bytes.Equal(again, secret) {
		t.Fatal("changing the returned slice changed the store")
	}
	// Push the key into an sstable, then delete it: the compaction must
	// leave no live sstable holding its bytes.
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if !sstablesContain(t, fs, "db", s, secret) {
		t.Fatal("test setup: the flushed sstable does not hold the wrapped key")
	}
	if err := s.DeleteWrapped(context.Background(), "kms_x"); err != nil {
		t.Fatalf("DeleteWrapped: %v", err)
	}
	if _, rev, _ := s.GetWrapped(context.Background(), "kms_x"); rev != 0 {
		t.Fatal("the wrapped key is still there after DeleteWrapped")
	}
	if sstablesContain(t, fs, "db", s, secret) {
		t.Fatal("a live sstable still holds the deleted wrapped key")
	}
	if _, rev, _ := s.GetWrapped(context.Background(), "kms_y"); rev == 0 {
		t.Fatal("DeleteWrapped removed another ref")
	}
	if err := s.DeleteWrapped(context.Background(), "kms_x"); err != nil {
		t.Fatalf("second DeleteWrapped: %v", err)
	}
	_, errEmptyRef := s.PutWrapped(context.Background(), "", secret, 0)
	_, errEmptyKey := s.PutWrapped(context.Background(), "kms_z", nil, 0)
	for _, err := range []error{errEmptyRef, errEmptyKey, s.DeleteWrapped(context.Background(), "")} {
		if !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("invalid wrapped-key call: %v", err)
		}
	}
}

// TestWrappedKeysWithoutRevision: a record written before revisions (a
// 'W' key alone) reads at revision 1, is replaced at revision 1, and
// after its delete a ref created again starts above it; the revisions
// survive a restart.
func TestWrappedKeysWithoutRevision(t *testing.T) {
	fs := vfs.NewMem()
	s := MustOpen(t, "db", fs)
	ctx := context.Background()
	for _, ref := range []string{"kms_old", "kms_gone"} {
		if err := s.db.Set(wrappedKey(ref), []byte("record of "+ref), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if got, rev, err := s.GetWrapped(ctx, "kms_old"); err != nil || rev != 1 || string(got) != "record of kms_old" {
		t.Fatalf("GetWrapped of a record without revision = %q, %d, %v; want revision 1", got, rev, err)
	}
	if _, err := s.PutWrapped(ctx, "kms_old", []byte("new"), 0); !errors.Is(err, domain.ErrWrongExpectedRevision) {
		t.Fatalf("creating over a record without revision: %v, want ErrWrongExpectedRevision", err)
	}
	rev, err := s.PutWrapped(ctx, "kms_old", []byte("new"), 1)
	if err != nil || rev != 2 {
		t.Fatalf("PutWrapped at revision 1 = %d, %v; want 2", rev, err)
	}
	if err := s.DeleteWrapped(ctx, "kms_gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutWrapped(ctx, "kms_gone", []byte("stale"), 1); !errors.Is(err, domain.ErrWrongExpectedRevision) {
		t.Fatalf("a stale writer after the delete: %v, want ErrWrongExpectedRevision", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = MustOpen(t, "db", fs)
	if _, rev, err := s.GetWrapped(ctx, "kms_old"); err != nil || rev != 2 {
		t.Fatalf("after a restart: revision %d, %v; want 2", rev, err)
	}
	if rev, err := s.PutWrapped(ctx, "kms_gone", []byte("again"), 0); err != nil || rev <= 1 {
		t.Fatalf("creating the deleted ref again after a restart = %d, %v; want a revision above 1", rev, err)
	}
	if _, err := s.PutWrapped(ctx, "kms_gone", []byte("stale"), 1); !errors.Is(err, domain.ErrWrongExpectedRevision) {
		t.Fatalf("a writer from before the delete: %v, want ErrWrongExpectedRevision", err)
	}
}

// sstablesContain reports whether a live sstable of the store holds b.
// (Obsolete files may linger until Pebble's background cleanup removes
// them; they are not read any more.)
func sstablesContain(t *testing.T, fs vfs.FS, dir string, s *Store, b []byte) bool {
	t.Helper()
	levels, err := s.db.SSTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, level := range levels {
		for _, info := range level {
			f, err := fs.Open(fs.PathJoin(dir, fmt.Sprintf("%s.sst", info.BackingSSTNum)))
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(f)
			_ = f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data, b) {
				return true
			}
		}
	}
	return false
}

// TestWrappedKeysCrash: a crash clone taken after each acknowledged write
// of a record (puts at the expected revision, a delete, a create again)
// reopens with that record at that revision, or with none after the
// delete: record and revision are written together and durably; and the
// ref's next creation there gets a revision above every one it had.
func TestWrappedKeysCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := MustOpen(t, "db", fs)
	ctx := context.Background()
	type state struct {
		fs      *vfs.MemFS
		rec     string // "" for none
		rev     uint64
		highest uint64
	}
	var states []state
	var rev, highest uint64
	for i := range 12 {
		rec := fmt.Sprintf("record %d", i)
		if i == 6 {
			if err := s.DeleteWrapped(ctx, "kms_c"); err != nil {
				t.Fatal(err)
			}
			rec, rev = "", 0
		} else {
			next, err := s.PutWrapped(ctx, "kms_c", []byte(rec), rev)
			if err != nil {
				t.Fatalf("put %d: %v", i, err)
			}
			rev, highest = next, next
		}
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(1, uint64(i)))})
		states = append(states, state{clone, rec, rev, highest})
	}
	for i, st := range states {
		c, err := Open("db", Options{FS: st.fs})
		if err != nil {
			t.Fatalf("crash after write %d: reopen: %v", i, err)
		}
		got, gotRev, err := c.GetWrapped(ctx, "kms_c")
		if err != nil || string(got) != st.rec || gotRev != st.rev {
			t.Errorf("crash after write %d: GetWrapped = %q at %d, %v; want %q at %d", i, got, gotRev, err, st.rec, st.rev)
		}
		if st.rec == "" {
			if next, err := c.PutWrapped(ctx, "kms_c", []byte("again"), 0); err != nil || next <= st.highest {
				t.Errorf("crash after the delete: created again at %d, %v; want above %d", next, err, st.highest)
			}
		}
		_ = c.Close()
	}
}
