package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/scheduler"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ---------------------------------------------------------------------------
// Benchmark: the background verification of every backup (the scrub).
//
// A fleet of backups, each of its own KMS instance of scrubKeys keys,
// enabled, then scrubHours of history: every hour scrubRotations keys of
// each instance rotated, and the clock moved through the hour's twelve
// incrementals. BenchmarkScrub verifies every backup per operation, raw
// (reading the same stream events, slice blobs and state rows, checking
// nothing), unpaced, and paced at a rate; BenchmarkCheckpointsDuringScrub
// times a round of checkpoints (every backup's next incremental, with a few
// changes each) idle and while scrubs run back to back.

const (
	scrubBackups   = 20
	scrubKeys      = 1000
	scrubHours     = 24
	scrubRotations = 5
)

type scrubState struct {
	e       *engine
	ks      []*keys
	backups []domain.BackupID
}

var (
	scrubMu     sync.Mutex
	scrubStates = map[string]*scrubState{}
)

// scrubStateOf returns the engine named name, building it the first time
// (untimed: b.Loop resets the timer; the benchmarks that advance its clock
// each use their own).
func scrubStateOf(tb testing.TB, name string, backups, nKeys, hours int) *scrubState {
	tb.Helper()
	scrubMu.Lock()
	defer scrubMu.Unlock()
	if s, ok := scrubStates[name]; ok {
		return s
	}
	start := time.Now()
	s, err := buildScrubState(context.Background(), filepath.Join(root, "scrub-"+name), backups, nKeys, hours)
	if err != nil {
		tb.Fatalf("build %d backups of %d keys: %v", backups, nKeys, err)
	}
	tb.Logf("%d backups of %d keys with %d hours of history built in %s", backups, nKeys, hours, time.Since(start).Round(time.Millisecond))
	scrubStates[name] = s
	return s
}

func closeScrubStates() {
	scrubMu.Lock()
	defer scrubMu.Unlock()
	for n, s := range scrubStates {
		_ = s.e.close()
		delete(scrubStates, n)
	}
}

func buildScrubState(ctx context.Context, dir string, backups, nKeys, hours int) (*scrubState, error) {
	e, err := openEngine(dir, time.Date(2026, 5, 1, 0, 1, 0, 0, time.UTC))
	if err != nil {
		return nil, err
	}
	s := &scrubState{e: e}
	for i := range backups {
		k, err := newInstance(ctx, e, nKeys, uint64(i+1))
		if err != nil {
			_ = e.close()
			return nil, err
		}
		b, err := e.enableBackup(ctx, k.in.ID)
		if err != nil {
			_ = e.close()
			return nil, err
		}
		s.ks, s.backups = append(s.ks, k), append(s.backups, b.ID)
	}
	for range hours {
		if err := s.rotate(ctx, scrubRotations); err != nil {
			_ = e.close()
			return nil, err
		}
		if _, _, err := e.driver.Advance(ctx, time.Hour); err != nil {
			_ = e.close()
			return nil, err
		}
	}
	if err := e.compact(); err != nil {
		return nil, err
	}
	return s, nil
}

// rotate rotates n random keys of every instance.
func (s *scrubState) rotate(ctx context.Context, n int) error {
	for _, k := range s.ks {
		for range n {
			if err := k.rotate(ctx, k.randomLive()); err != nil {
				return err
			}
		}
		if err := k.flush(ctx); err != nil {
			return err
		}
	}
	return s.e.settle(ctx)
}

// rawRead is what a raw pass read, in bytes as the scrub counts them for
// its Throttle: the backup streams' events, the slice blobs, the base
// parts, the state rows at the last checkpoints.
type rawRead struct {
	stream, blobs, bases, state int64
	checkpoints, slices         int
}

func (r rawRead) total() int64 { return r.stream + r.blobs + r.bases + r.state }

// rawPass reads what a scrub reads, checking nothing: each backup's
// stream, every slice blob of its generation, every part of its bases, and
// the state rows at its last checkpoint. (A generation with bases after
// base 0 has its slices read a second time by the scrub, replaying them to
// compare with the bases: the fleets here have none.)
func (s *scrubState) rawPass(ctx context.Context) (rawRead, error) {
	st := s.e.store
	var n rawRead
	for _, id := range s.backups {
		b, err := backupstate.Get(s.e.proj, id)
		if err != nil {
			return n, err
		}
		stream := domain.BackupStream(id)
		var slices, parts []string
		for from := uint64(0); ; {
			page, err := st.ReadStream(ctx, stream, from, false, 1000)
			if err != nil {
				return n, err
			}
			for _, e := range page {
				from = e.Revision + 1
				n.stream += int64(len(e.Data) + len(e.Stream) + 100)
				if e.Type == domain.TypeBackupBaseStored {
					d, err := e.Decode()
					if err != nil {
						return n, err
					}
					if base := d.(*domain.BackupBaseStored); base.Generation == b.Generation {
						for _, p := range base.Parts {
							parts = append(parts, p.Name)
						}
					}
					continue
				}
				if e.Type != domain.TypeBackupCheckpointed {
					continue
				}
				n.checkpoints++
				d, err := e.Decode()
				if err != nil {
					return n, err
				}
				if cp := d.(*domain.BackupCheckpointed); cp.Generation == b.Generation {
					for _, p := range cp.SliceParts() {
						slices = append(slices, p.Name)
					}
				}
			}
			if len(page) < 1000 {
				break
			}
		}
		for _, name := range slices {
			blob, err := st.GetBlob(ctx, b.DataRef(), name)
			if err != nil {
				return n, err
			}
			n.blobs += int64(len(blob))
			n.slices++
		}
		for _, name := range parts {
			blob, err := st.GetBlob(ctx, b.DataRef(), name)
			if err != nil {
				return n, err
			}
			n.bases += int64(len(blob))
		}
		if err := backupdata.StateAt(s.e.proj, b.DataRef(), b.Checkpoints, func(it backupdata.Item) error {
			n.state += int64(len(it.ID) + len(it.Description) + len(it.KeyID) + 48)
			return nil
		}); err != nil {
			return n, err
		}
	}
	return n, nil
}

// counting is a Throttle that counts the bytes a scrub reads and passes
// them on to next (nil: no pacing).
type counting struct {
	n    atomic.Int64
	next commands.Throttle
}

func (c *counting) WaitN(ctx context.Context, n int) error {
	c.n.Add(int64(n))
	if c.next == nil {
		return nil
	}
	return c.next.WaitN(ctx, n)
}

// scrub verifies every backup once through th and checks the run.
func (s *scrubState) scrub(ctx context.Context, th commands.Throttle) error {
	run, err := s.e.Checkpoints.ScrubBackups(ctx, commands.ScrubOptions{Throttle: th})
	if err != nil {
		return err
	}
	if run.Checked != len(s.backups) || run.WithFindings != 0 || run.Errors != 0 {
		return fmt.Errorf("scrub run %+v, want %d clean backups", run, len(s.backups))
	}
	return nil
}

// BenchmarkScrub: one pass over every backup per operation; MB/s is the
// bytes a pass reads (as the scrub counts them) over its time.
func BenchmarkScrub(b *testing.B) {
	s := scrubStateOf(b, "fleet", scrubBackups, scrubKeys, scrubHours)
	ctx := context.Background()
	b.Run("read=raw", func(b *testing.B) {
		var n rawRead
		for b.Loop() {
			var err error
			if n, err = s.rawPass(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.Logf("a pass reads %d bytes: %d of %d checkpoint and other events (%.0f each), %d of %d slices, %d of state rows",
			n.total(), n.stream, n.checkpoints, float64(n.stream)/float64(n.checkpoints), n.blobs, n.slices, n.state)
		b.SetBytes(n.total())
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/pass")
	})
	for _, rate := range []int64{0, 4 << 20, 8 << 20, 16 << 20} {
		name := "scrub=unpaced"
		if rate > 0 {
			name = fmt.Sprintf("scrub=paced-%dMiB", rate>>20)
		}
		b.Run(name, func(b *testing.B) {
			c := &counting{}
			if rate > 0 {
				c.next = scheduler.NewByteRate(rate)
			}
			for b.Loop() {
				c.n.Store(0)
				if err := s.scrub(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(c.n.Load())
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/pass")
		})
	}
}

// BenchmarkCheckpointsDuringScrub times rounds of checkpoints: every
// backup's next incremental with scrubRotations changes each, taken by the
// manual scheduler as the server's scheduler takes them, idle and while
// scrubs run back to back in another goroutine, unpaced and paced. The
// modes take turns in blocks of 10 rounds on one engine, so that the load
// other processes put on the machine falls on all of them alike; an
// operation is one turn of every mode. <mode>-ms/round is the mean time of
// a round alone (the changes are made untimed), scrub-passes how many
// passes the background scrubs completed.
func BenchmarkCheckpointsDuringScrub(b *testing.B) {
	const block = 10
	ctx := context.Background()
	s := scrubStateOf(b, "rounds", scrubBackups, scrubKeys, 2)
	modes := []struct {
		name string
		rate int64 // -1: no scrub; 0: unpaced
	}{{"idle", -1}, {"unpaced", 0}, {"paced-4MiB", 4 << 20}, {"paced-16MiB", 16 << 20}}
	took := make([]time.Duration, len(modes))
	rounds := 0
	var passes atomic.Int64
	for b.Loop() {
		for i, m := range modes {
			stop := s.scrubInBackground(ctx, m.rate, &passes)
			for range block {
				if err := s.rotate(ctx, scrubRotations); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				_, n, err := s.e.driver.Advance(ctx, domain.IncrementalEvery)
				took[i] += time.Since(start)
				if err != nil || n != len(s.backups) {
					b.Fatalf("round: %d checkpoints, %v", n, err)
				}
			}
			if err := stop(); err != nil {
				b.Fatal(err)
			}
		}
		rounds += block
	}
	for i, m := range modes {
		b.ReportMetric(float64(took[i].Microseconds())/1000/float64(rounds), m.name+"-ms/round")
	}
	b.ReportMetric(float64(passes.Load()), "scrub-passes")
}

// scrubInBackground scrubs every backup again and again until the returned
// stop is called: paced at rate bytes a second, unpaced at 0, not at all
// below 0. stop returns the first failure of a scrub.
func (s *scrubState) scrubInBackground(ctx context.Context, rate int64, passes *atomic.Int64) (stop func() error) {
	if rate < 0 {
		return func() error { return nil }
	}
	var th commands.Throttle
	if rate > 0 {
		th = scheduler.NewByteRate(rate)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		for sctx.Err() == nil {
			if err := s.scrub(sctx, th); err != nil {
				if sctx.Err() != nil {
					break
				}
				done <- err
				return
			}
			passes.Add(1)
		}
		done <- nil
	}()
	return func() error {
		cancel()
		return <-done
	}
}

// TestScrubBenchSmall keeps the benchmark's code working under plain go
// test: a small fleet, a raw pass and a scrub that agree on the bytes.
func TestScrubBenchSmall(t *testing.T) {
	ctx := context.Background()
	s, err := buildScrubState(ctx, t.TempDir(), 3, 50, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.e.close() }()
	raw, err := s.rawPass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &counting{next: scheduler.NewByteRate(64 << 20)}
	if err := s.scrub(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.n.Load() != raw.total() {
		t.Fatalf("the scrub counted %d bytes, the raw pass read %d", c.n.Load(), raw)
	}
}
