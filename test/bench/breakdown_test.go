package bench

import (
	"context"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// TestSealBreakdown is the instrumented run behind the explanation of
// BenchmarkSealIncremental in docs/BENCHMARKS.md. It is skipped unless
// KMSBACKUP_BENCH_BREAKDOWN gives a number of checkpoints per state:
//
//	KMSBACKUP_BENCH_BREAKDOWN=800 go test -run SealBreakdown -v -timeout 30m ./test/bench/
//
// It builds fresh 10k and 1M states, alternates checkpoints between them as
// the "both" sub-benchmark does, and logs, per state, the median of each
// block of 100 checkpoints and the time per checkpoint spent in each port
// of Checkpoints (reading the slice, the blob, the checkpoint append, the waits
// for the two backup read models) and in the backupdata apply of the
// checkpoint. With KMSBACKUP_BENCH_CPUPROFILE set it also writes a CPU
// profile of the checkpoints, every goroutine of each engine labelled
// engine=<keys> (go tool pprof -tagfocus engine=1000000 ...).
func TestSealBreakdown(t *testing.T) {
	iters, _ := strconv.Atoi(os.Getenv("KMSBACKUP_BENCH_BREAKDOWN"))
	if iters <= 0 {
		t.Skip("set KMSBACKUP_BENCH_BREAKDOWN to a number of checkpoints per state")
	}
	ctx := context.Background()
	var states [2]*sealState
	var spent [2]*stages
	for i, n := range []int{10_000, 1_000_000} {
		// Goroutines inherit labels: the engine's projectors, the store's
		// writer and Pebble's background work started from them carry it.
		pprof.Do(ctx, pprof.Labels("engine", strconv.Itoa(n)), func(ctx context.Context) {
			start := time.Now()
			s, enable, err := buildSealState(ctx, filepath.Join(t.TempDir(), strconv.Itoa(n)), n)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.e.close() })
			t.Logf("state of %d keys built in %s (first full backup: %s)", n, time.Since(start).Round(time.Millisecond), enable.Round(time.Millisecond))
			states[i], spent[i] = s, instrument(s)
		})
	}
	if path := os.Getenv("KMSBACKUP_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	var took [2][]time.Duration
	for i := range iters {
		for j := range 2 {
			x := (i + j) % 2
			due, err := states[x].change(ctx)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := states[x].checkpoint(ctx, due); err != nil {
				t.Fatal(err)
			}
			took[x] = append(took[x], time.Since(start))
		}
	}
	for x, s := range states {
		var blocks []string
		for c := 0; c+100 <= iters; c += 100 {
			blocks = append(blocks, medianDuration(took[x][c:c+100]).Round(100*time.Microsecond).String())
		}
		t.Logf("state of %d keys: median %s; medians of successive blocks of 100: %v", s.n, medianDuration(took[x]).Round(10*time.Microsecond), blocks)
		for _, st := range stageNames {
			t.Logf("  %-28s %s per checkpoint", st, (spent[x].get(st) / time.Duration(iters)).Round(time.Microsecond))
		}
	}
}

func medianDuration(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// stages adds up the time spent in named stages.
type stages struct {
	mu sync.Mutex
	d  map[string]time.Duration
}

func (s *stages) since(name string, start time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d[name] += time.Since(start)
}

func (s *stages) get(name string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d[name]
}

// stageNames are the stages instrument times, in the order of a
// checkpoint.
var stageNames = []string{"read the slice", "put the slice blob", "append the checkpoint",
	"wait for backupstate", "wait for backupdata", "  of which backupdata apply"}

// instrument wraps the ports of the state's Checkpoints (the log and the
// waiters they share with the other backup use cases, the blob store of
// their storage), and the apply of its backupdata projector, with timers.
// Only the checkpoints use them: the changes are appended straight to the
// store.
func instrument(s *sealState) *stages {
	st := &stages{d: map[string]time.Duration{}}
	b := s.e.Checkpoints
	b.Log = timedLog{EventLog: s.e.store, st: st}
	b.Storage.Blobs = timedBlobs{BlobStore: s.e.store, st: st}
	b.StateApplied = timedWaiter{Waiter: b.StateApplied, name: "wait for backupstate", st: st}
	b.DataApplied = timedWaiter{Waiter: b.DataApplied, name: "wait for backupdata", st: st}
	bd := s.e.procs[2]
	apply := bd.Apply
	bd.Apply = func(ctx context.Context, txn projections.Txn, e domain.Event) error {
		if e.Type != domain.TypeBackupCheckpointed {
			return apply(ctx, txn, e)
		}
		defer st.since("  of which backupdata apply", time.Now())
		return apply(ctx, txn, e)
	}
	return st
}

type timedLog struct {
	commands.EventLog
	st *stages
}

func (l timedLog) ReadStream(ctx context.Context, stream string, from uint64, backwards bool, limit int) ([]domain.Event, error) {
	defer l.st.since("read the slice", time.Now())
	return l.EventLog.ReadStream(ctx, stream, from, backwards, limit)
}

func (l timedLog) Append(ctx context.Context, stream string, expected domain.ExpectedRevision, events []domain.Event) (commands.AppendResult, error) {
	defer l.st.since("append the checkpoint", time.Now())
	return l.EventLog.Append(ctx, stream, expected, events)
}

type timedBlobs struct {
	commands.BlobStore
	st *stages
}

func (b timedBlobs) PutBlob(ctx context.Context, ref, name string, data []byte) error {
	defer b.st.since("put the slice blob", time.Now())
	return b.BlobStore.PutBlob(ctx, ref, name, data)
}

type timedWaiter struct {
	commands.Waiter
	name string
	st   *stages
}

func (w timedWaiter) WaitFor(ctx context.Context, pos uint64) error {
	defer w.st.since(w.name, time.Now())
	return w.Waiter.WaitFor(ctx, pos)
}
