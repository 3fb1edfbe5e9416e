package bench

import (
	"context"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

type timings struct {
	mu sync.Mutex
	d  map[string]time.Duration
}

func (t *timings) add(k string, d time.Duration) {
	t.mu.Lock()
	t.d[k] += d
	t.mu.Unlock()
}

type tLog struct {
	commands.EventLog
	t *timings
}

func (l tLog) ReadStream(ctx context.Context, s string, from uint64, back bool, n int) ([]domain.Event, error) {
	st := time.Now()
	defer func() { l.t.add("ReadStream", time.Since(st)) }()
	return l.EventLog.ReadStream(ctx, s, from, back, n)
}
func (l tLog) Append(ctx context.Context, s string, e domain.ExpectedRevision, ev []domain.Event) (commands.AppendResult, error) {
	st := time.Now()
	defer func() { l.t.add("Append:"+s[:3], time.Since(st)) }()
	return l.EventLog.Append(ctx, s, e, ev)
}

type tBlobs struct {
	commands.BlobStore
	t *timings
}

func (b tBlobs) PutBlob(ctx context.Context, r, n string, d []byte) error {
	st := time.Now()
	defer func() { b.t.add("PutBlob", time.Since(st)) }()
	return b.BlobStore.PutBlob(ctx, r, n, d)
}

type tWait struct {
	commands.Waiter
	name string
	t    *timings
}

func (w tWait) WaitFor(ctx context.Context, p uint64) error {
	st := time.Now()
	defer func() { w.t.add("Wait:"+w.name, time.Since(st)) }()
	return w.Waiter.WaitFor(ctx, p)
}

func TestDiag(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("DIAG_N"))
	if n == 0 {
		t.Skip()
	}
	ctx := context.Background()
	s, took, err := buildSealState(ctx, t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	defer s.e.close()
	t.Logf("built, enable %s", took)
	if w, _ := strconv.Atoi(os.Getenv("DIAG_WAIT")); w > 0 {
		time.Sleep(time.Duration(w) * time.Second)
	}
	tm := &timings{d: map[string]time.Duration{}}
	bk := s.e.backups
	bk.Log = tLog{s.e.store, tm}
	bk.Blobs = tBlobs{s.e.store, tm}
	bk.StateApplied = tWait{bk.StateApplied, "state", tm}
	bk.DataApplied = tWait{bk.DataApplied, "data", tm}
	// time the backupdata apply of checkpoints
	bd := s.e.procs[2]
	orig := bd.Apply
	_ = backupdata.Name
	bd.Apply = func(txn projections.Txn, e domain.Event) error {
		st := time.Now()
		defer func() {
			if e.Type == domain.TypeBackupCheckpointed {
				tm.add("bd.Apply(checkpoint)", time.Since(st))
			}
		}()
		return orig(txn, e)
	}
	f, _ := os.Create(os.Getenv("DIAG_PROF"))
	iters := 20
	var total time.Duration
	var each []time.Duration
	pprof.StartCPUProfile(f)
	for range iters {
		due, err := s.change(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st := time.Now()
		if err := s.checkpoint(ctx, due); err != nil {
			t.Fatal(err)
		}
		d := time.Since(st)
		total += d
		each = append(each, d)
	}
	pprof.StopCPUProfile()
	f.Close()
	sort.Slice(each, func(i, j int) bool { return each[i] < each[j] })
	t.Logf("n=%d: mean %s median %s min %s max %s", n, total/time.Duration(iters), each[iters/2], each[0], each[iters-1])
	keys := []string{}
	for k := range tm.d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("  %-24s %s/cp", k, tm.d[k]/time.Duration(iters))
	}
}
