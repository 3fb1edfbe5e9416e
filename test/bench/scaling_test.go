package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ---------------------------------------------------------------------------
// The per-operation costs behind docs/SCALING.md's capacity model:
//
//	go test -run '^$' -bench 'Checkpoint$|SchedulerDrain|RestoreSizes|RestoreApply' -benchtime 3x ./test/bench/
//	go test -run 'CheckpointBytes|ScalingModel' -v ./test/bench/
//
// BenchmarkCheckpoint: one checkpoint of one backup on either log, empty or
// with a few changes. BenchmarkSchedulerDrain: the scheduler working
// through a five-minute boundary at which every backup instance is due, on
// one or two nodes. BenchmarkRestoreSizes and BenchmarkRestoreApply: restore
// against the state's size, and the rate of an applied restore on either
// log. TestCheckpointBytes: what an empty checkpoint stores. TestScalingModel
// turns these into the capacity model.

// scalingStart is when the scaling benchmarks' nodes start (UTC, a minute
// after a five-minute boundary).
var scalingStart = time.Date(2026, 5, 1, 0, 1, 0, 0, time.UTC)

// enableNew creates a KMS instance of caller c in the benchmarks' region and
// a provisioned backup instance enabled on it (in UTC), whose first full
// backup is taken at once.
func (n *node) enableNew(ctx context.Context, c commands.Caller) (*domain.Instance, *domain.Backup, error) {
	in, err := n.KMS.CreateInstance(ctx, c, commands.CreateInstanceInput{Region: region, KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota})
	if err != nil {
		return nil, nil, err
	}
	b, err := n.Backups.CreateBackupInstance(ctx, c, commands.CreateBackupInput{Region: region, ViewableDays: 30, Term: "1y"})
	if err != nil {
		return nil, nil, err
	}
	b, err = n.Backups.EnableBackupInstance(ctx, c, b.ID, commands.EnableInput{KMSInstance: in.ID, Alias: "bench", TimeZone: "UTC"})
	return in, b, err
}

// ---------------------------------------------------------------------------
// BenchmarkCheckpoint.

// checkpointKeys is the size of the instance whose checkpoints
// BenchmarkCheckpoint takes (its cost hardly depends on the state:
// docs/BENCHMARKS.md measured 1.5 times for 100 times the keys).
const checkpointKeys = 200

// BenchmarkCheckpoint measures one scheduled checkpoint of one backup
// instance on a node of each log: Checkpoints.TakeCheckpoint as the scheduler
// calls it, from reading the slice (resealing each event's key material
// under the backup's data key) to the checkpoint event appended and both
// backup read models showing it. changes=0 is an empty incremental (no
// slice, no blob: the checkpoint event alone); changes=4 seals four key
// rotations (KMS.RotateKey, untimed, a minute before), about what 1% daily
// churn of 100,000 keys puts in each of the day's 288 windows. The
// checkpoints follow each other five minutes apart, a full at each
// 00:00. It reports the median time of one checkpoint, the rate one
// scheduler (which takes one at a time) reaches at that median, and for
// JetStream the bytes its stream grew by per checkpoint. Each
// log=jetstream (one server) and log=jetstream-r3 (3 servers, 3 replicas)
// reports its median over the log=pebble median just before.
func BenchmarkCheckpoint(b *testing.B) {
	urls := startNATS(b, true)
	ctx := context.Background()
	for _, changes := range []int{0, 4} {
		b.Run(fmt.Sprintf("changes=%d", changes), func(b *testing.B) {
			var pebbleMedian float64
			for _, kind := range replicatedKinds {
				b.Run("log="+kind, func(b *testing.B) {
					n := openNode(b, kind, urls, b.TempDir(), scalingStart)
					c := n.newCaller()
					in, bk, err := n.enableNew(ctx, c)
					if err != nil {
						b.Fatal(err)
					}
					keyIDs := make([]domain.KeyID, checkpointKeys)
					for i := range keyIDs {
						k, err := n.KMS.CreateKey(ctx, c, in.ID, fmt.Sprintf("bench key %07d", i))
						if err != nil {
							b.Fatal(err)
						}
						keyIDs[i] = k.ID
					}
					// The next checkpoint copies the keys (untimed).
					if _, _, err := n.driver.Advance(ctx, 5*time.Minute); err != nil {
						b.Fatal(err)
					}
					var before uint64
					if onJetStream(kind) {
						if before, _, err = streamBytes(ctx, n.url, n.logOpts.Stream); err != nil {
							b.Fatal(err)
						}
					}
					took := make([]float64, 0, b.N)
					b.ResetTimer()
					for i := range b.N {
						b.StopTimer()
						cur, err := backupstate.Get(n.proj, bk.ID)
						if err != nil {
							b.Fatal(err)
						}
						due, ok := cur.NextCheckpoint(time.UTC)
						if !ok {
							b.Fatal("no checkpoint due")
						}
						if changes > 0 {
							n.clock.Set(due.At.Add(-time.Minute))
							for j := range changes {
								if _, err := n.KMS.RotateKey(ctx, c, keyIDs[(i*changes+j)%len(keyIDs)], ""); err != nil {
									b.Fatal(err)
								}
							}
						}
						n.clock.Set(due.At)
						if err := n.settle(ctx); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
						start := time.Now()
						cp, err := n.Checkpoints.TakeCheckpoint(ctx, bk.ID, due)
						took = append(took, float64(time.Since(start).Nanoseconds()))
						if err != nil {
							b.Fatal(err)
						}
						if got := int(cp.Next - cp.From); got != changes {
							b.Fatalf("checkpoint %d sealed %d events, want %d", cp.Seq, got, changes)
						}
					}
					b.StopTimer()
					med := median(took)
					b.ReportMetric(med/1e6, "ms/checkpoint")
					b.ReportMetric(mean(took)/1e6, "mean-ms/checkpoint")
					b.ReportMetric(1e9/med, "checkpoints/s")
					if onJetStream(kind) {
						after, _, err := streamBytes(ctx, n.url, n.logOpts.Stream)
						if err != nil {
							b.Fatal(err)
						}
						if changes == 0 {
							b.ReportMetric(float64(after-before)/float64(b.N), "log-B/checkpoint")
						}
						if pebbleMedian > 0 {
							b.ReportMetric(med/pebbleMedian, kind+"/pebble-time")
						}
					} else {
						pebbleMedian = med
					}
				})
			}
		})
	}
}

// ---------------------------------------------------------------------------
// BenchmarkSchedulerDrain.

// drainState is a deployment with many backup instances, all in UTC and
// all due at every five-minute boundary: one node, or two sharing one
// JetStream log (both follow the log; the benchmark says how many run the
// scheduler).
type drainState struct {
	nodes   []*node
	caller  commands.Caller
	backups int
}

// grow enables backup instances on new empty KMS instances through node 0
// until there are n, then brings every node's read models up to date.
func (s *drainState) grow(ctx context.Context, n int) error {
	for s.backups < n {
		if _, _, err := s.nodes[0].enableNew(ctx, s.caller); err != nil {
			return err
		}
		s.backups++
	}
	for _, nd := range s.nodes {
		if err := nd.settle(ctx); err != nil {
			return err
		}
	}
	return nil
}

// drain moves every node's clock to the same time, then has the first
// schedulers nodes each advance it by five minutes at once, doing the work
// due (every backup's checkpoint at the boundary). It returns the time until
// all are done and how many checkpoints they took or lost a race for.
func (s *drainState) drain(ctx context.Context, schedulers int) (time.Duration, int, error) {
	now := s.nodes[0].clock.Now()
	for _, nd := range s.nodes {
		nd.clock.Set(now)
	}
	var wg sync.WaitGroup
	done := make([]int, schedulers)
	errs := make([]error, schedulers)
	start := time.Now()
	for i := range schedulers {
		wg.Go(func() { _, done[i], errs[i] = s.nodes[i].driver.Advance(ctx, 5*time.Minute) })
	}
	wg.Wait()
	took := time.Since(start)
	total := 0
	for _, d := range done {
		total += d
	}
	for _, nd := range s.nodes {
		if err := nd.settle(ctx); err != nil {
			return 0, 0, err
		}
	}
	return took, total, errors.Join(errs...)
}

// BenchmarkSchedulerDrain measures the scheduler working through one
// five-minute boundary at which every one of B backup instances is due (all
// in UTC: every instance's windows start at the same instants), each
// checkpoint empty (the KMS instances have no changes). The scheduler plans
// once per instant (one read of every scheduled backup instance's record)
// and takes that instant's checkpoints from a random place; docs/SCALING.md
// has the figures from before, when it planned again before each piece. Per boundary it reports the drain time, the time per
// checkpoint, the planning time alone (NextWork, timed separately, at B) and
// the attempts that lost the race to another node.
//
// On Pebble, one node at B = 100, 300, 1,000 and 3,000 (or the sizes in
// KMSBACKUP_BENCH_DRAIN). On JetStream, at B = 100, 300 and 1,000, two
// nodes sharing the log, the blob store and the key store, with one
// scheduler (the other node only follows the log) and with both (as a
// deployment runs: every node runs the scheduler and the append decides
// who takes each checkpoint). The backup instances are built once and
// grow from one size to the next.
func BenchmarkSchedulerDrain(b *testing.B) {
	ctx := context.Background()
	urls := startNATS(b, false)
	for _, kind := range logKinds {
		b.Run("log="+kind, func(b *testing.B) {
			var s *drainState
			sizes, schedulers := drainSizes(b), []int{1}
			if kind == logJetStream {
				sizes, schedulers = []int{100, 300, 1000}, []int{1, 2}
			}
			defer func() {
				if s != nil {
					for _, nd := range s.nodes {
						nd.close()
					}
				}
			}()
			for _, size := range sizes {
				for _, sch := range schedulers {
					b.Run(fmt.Sprintf("backups=%d/schedulers=%d", size, sch), func(b *testing.B) {
						if s == nil {
							n0, err := newNode(kind, urls, filepath.Join(root, fmt.Sprintf("drain-%s-0", kind)), scalingStart, nil)
							if err != nil {
								b.Fatal(err)
							}
							s = &drainState{nodes: []*node{n0}, caller: n0.newCaller()}
							if kind == logJetStream {
								n1, err := newNode(kind, urls, filepath.Join(root, fmt.Sprintf("drain-%s-1", kind)), scalingStart, n0)
								if err != nil {
									b.Fatal(err)
								}
								s.nodes = append(s.nodes, n1)
							}
						}
						start := time.Now()
						if err := s.grow(ctx, size); err != nil {
							b.Fatal(err)
						}
						if d := time.Since(start); d > time.Second {
							b.Logf("grew to %d backup instances in %s", size, d.Round(time.Millisecond))
						}
						var plans []float64
						for range 5 {
							t0 := time.Now()
							if _, _, err := s.nodes[0].Schedule.NextWork(); err != nil {
								b.Fatal(err)
							}
							plans = append(plans, float64(time.Since(t0).Nanoseconds()))
						}
						var took time.Duration
						attempts := 0
						b.ResetTimer()
						for range b.N {
							d, n, err := s.drain(ctx, sch)
							if err != nil {
								b.Fatal(err)
							}
							if n < size {
								b.Fatalf("%d checkpoints taken at the boundary, want %d", n, size)
							}
							took += d
							attempts += n
						}
						b.StopTimer()
						perBoundary := took.Seconds() / float64(b.N)
						b.ReportMetric(perBoundary, "s/boundary")
						b.ReportMetric(perBoundary*1000/float64(size), "ms/checkpoint")
						b.ReportMetric(median(plans)/1e3, "µs/plan")
						b.ReportMetric(float64(attempts-b.N*size)/float64(b.N), "lost/boundary")
					})
				}
			}
		})
	}
}

// drainSizes are the numbers of backup instances BenchmarkSchedulerDrain
// measures on Pebble: 100, 300, 1,000 and 3,000, or the comma-separated
// list in KMSBACKUP_BENCH_DRAIN (ascending; 10,000 takes about 10 minutes a
// boundary).
func drainSizes(tb testing.TB) []int {
	env := os.Getenv("KMSBACKUP_BENCH_DRAIN")
	if env == "" {
		return []int{100, 300, 1000, 3000}
	}
	var out []int
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || (len(out) > 0 && n <= out[len(out)-1]) {
			tb.Fatalf("KMSBACKUP_BENCH_DRAIN=%q: want ascending positive numbers", env)
		}
		out = append(out, n)
	}
	return out
}

// ---------------------------------------------------------------------------
// BenchmarkRestoreSizes and BenchmarkRestoreApply.

// restoreState is an engine whose backup holds a day to restore: n items
// (90% keys appended as the KMS appends them, 10% secrets created through
// the use case), the backup enabled (its first full), then restoreDays
// days in which 1% of the keys are rotated, the scheduler taking each day's
// full and 288 incrementals.
type restoreState struct {
	e      *engine
	k      *keys
	backup *domain.Backup
	day    string
	target domain.InstanceID
	rs     *commands.Restores
}

const restoreDays = 2

func buildRestoreState(ctx context.Context, dir string, items int) (*restoreState, error) {
	nKeys, nSecrets := items*9/10, items/10
	e, err := openEngine(dir, time.Date(2026, 5, 1, 0, 0, 30, 0, time.UTC))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*restoreState, error) {
		_ = e.close()
		return nil, err
	}
	in0, err := e.KMS.CreateInstance(ctx, e.caller, commands.CreateInstanceInput{Region: region, KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota})
	if err != nil {
		return fail(err)
	}
	k := newKeys(e, in0, uint64(items))
	for len(k.ids) < nKeys {
		for range min(nKeys-len(k.ids), 5000) {
			if err := k.create(ctx); err != nil {
				return fail(err)
			}
		}
		if err := k.flush(ctx); err != nil {
			return fail(err)
		}
		e.clock.Advance(time.Second)
	}
	if err := e.settle(ctx); err != nil {
		return fail(err)
	}
	for i := range nSecrets {
		if _, err := e.KMS.CreateSecret(ctx, e.caller, commands.CreateSecretInput{Name: fmt.Sprintf("secret-%06d", i),
			Instance: k.in.ID, Key: k.ids[k.randomLive()], Value: domain.Plaintext("value")}); err != nil {
			return fail(err)
		}
	}
	bkp, err := e.enableBackup(ctx, k.in.ID)
	if err != nil {
		return fail(err)
	}
	in, err := e.KMS.ShowInstance(e.caller, k.in.ID)
	if err != nil {
		return fail(err)
	}
	k.rev = in.Revision
	for range restoreDays {
		for range nKeys / 100 {
			if err := k.rotate(ctx, k.randomLive()); err != nil {
				return fail(err)
			}
		}
		if err := k.flush(ctx); err != nil {
			return fail(err)
		}
		if _, _, err := e.driver.Advance(ctx, 24*time.Hour); err != nil {
			return fail(err)
		}
	}
	if err := e.compact(); err != nil {
		return nil, err
	}
	target, err := e.KMS.CreateInstance(ctx, e.caller, commands.CreateInstanceInput{Region: "eu-bench-1", KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota})
	if err != nil {
		return fail(err)
	}
	return &restoreState{e: e, k: k, backup: bkp, target: target.ID,
		day: string(domain.DayOf(e.clock.Now().Add(-time.Hour), time.UTC)),
		rs:  e.Restores}, nil
}

// read plans restoring everything of the day and reads every version of
// every item, opening key material, as BenchmarkRestoreToDay's "restore
// read" does. It returns the items and versions read.
func (s *restoreState) read(ctx context.Context) (int, int, error) {
	return readWholeDay(ctx, s.rs, s.e.caller, s.backup, domain.Day(s.day), s.target)
}

// BenchmarkRestoreSizes measures the restore read (BenchmarkRestoreToDay's
// "restore read": the plan of restoring everything of the last day, then
// every version of every item, key material opened; nothing written) on
// states of 10k, 50k and 100k items (2 days of history, not 30), with the
// same engine as the other benchmarks. The three states are built first
// (about 50 s in all), then read in at least 3 rounds, each round reading
// every state once in a rotating order, so that the machine's drift hits
// all sizes alike. It reports each size's median and its ratio to 10k's.
func BenchmarkRestoreSizes(b *testing.B) {
	ctx := context.Background()
	sizes := []int{10_000, 50_000, 100_000}
	states := make([]*restoreState, len(sizes))
	defer func() {
		for _, s := range states {
			if s != nil {
				_ = s.e.close()
			}
		}
	}()
	for i, n := range sizes {
		start := time.Now()
		s, err := buildRestoreState(ctx, filepath.Join(b.TempDir(), "state"), n)
		if err != nil {
			b.Fatal(err)
		}
		states[i] = s
		b.Logf("built %d items in %s", n, time.Since(start).Round(time.Millisecond))
	}
	took := make([][]float64, len(sizes))
	items := make([]int, len(sizes))
	versions := make([]int, len(sizes))
	b.ResetTimer()
	for r := range max(b.N, 3) {
		for j := range sizes {
			i := (r + j) % len(sizes)
			t0 := time.Now()
			var err error
			if items[i], versions[i], err = states[i].read(ctx); err != nil {
				b.Fatal(err)
			}
			took[i] = append(took[i], time.Since(t0).Seconds())
		}
	}
	b.StopTimer()
	base := median(took[0])
	for i, n := range sizes {
		med := median(took[i])
		name := fmt.Sprintf("%dk", n/1000)
		b.ReportMetric(med, "s@"+name)
		if i > 0 {
			b.ReportMetric(med/base, "ratio_"+name+"/10k")
		}
		b.Logf("%d items (%d in the plan, %d versions): median %.3f s of %v", n, items[i], versions[i], med, took[i])
	}
}

// BenchmarkRestoreApply measures an applied restore on a node of each log,
// wired as the server is (with the audit use case): every iteration
// restores the 100 keys of a backup (its day's state) into a new KMS
// instance of another region, in one batch (one append of 100 KeyRestored
// events, one audit record, one wait for the read model), then validates
// the whole target. It reports keys restored per second; log=jetstream
// also its rate over log=pebble's of the same run.
func BenchmarkRestoreApply(b *testing.B) {
	const restoreKeys = 100
	urls := startNATS(b, false)
	ctx := context.Background()
	var pebbleRate float64
	for _, kind := range logKinds {
		b.Run("log="+kind, func(b *testing.B) {
			n := openNode(b, kind, urls, b.TempDir(), scalingStart)
			c := n.newCaller()
			in, bk, err := n.enableNew(ctx, c)
			if err != nil {
				b.Fatal(err)
			}
			for i := range restoreKeys {
				if _, err := n.KMS.CreateKey(ctx, c, in.ID, fmt.Sprintf("bench key %07d", i)); err != nil {
					b.Fatal(err)
				}
			}
			cur, err := backupstate.Get(n.proj, bk.ID)
			if err != nil {
				b.Fatal(err)
			}
			due, _ := cur.NextCheckpoint(time.UTC)
			if _, _, err := n.driver.Advance(ctx, due.At.Sub(n.clock.Now())+time.Minute); err != nil {
				b.Fatal(err)
			}
			day := string(domain.DayOf(n.clock.Now(), time.UTC))
			rs := n.Restores
			restored := 0
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				target, err := n.KMS.CreateInstance(ctx, c, commands.CreateInstanceInput{Region: fmt.Sprintf("eu-bench-%d", i+1), KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				res, err := rs.Restore(ctx, c, commands.RestoreRequest{From: bk.ID, Point: commands.RestorePoint{Day: domain.Day(day)}, Selection: domain.SelectAll(), Target: target.ID}, nil)
				if err != nil || !res.Applied || len(res.Validation) > 0 {
					b.Fatalf("restore: %v %+v", err, res)
				}
				restored += res.Restored
			}
			b.StopTimer()
			rate := float64(restored) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "items/s")
			if kind == logPebble {
				pebbleRate = rate
			} else if pebbleRate > 0 {
				b.ReportMetric(rate/pebbleRate, "jetstream/pebble")
			}
		})
	}
}

// ---------------------------------------------------------------------------
// TestCheckpointBytes.

// dbBytes adds up the keys and values of a closed store by namespace: the
// first byte of the key, and for projection keys ('P') the projection's
// name up to its first '/'.
func dbBytes(dir string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, sub := range []string{"db", "projections"} {
		if err := addDBBytes(filepath.Join(dir, sub), out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// addDBBytes adds the bytes of the database in dir to out, by namespace.
func addDBBytes(dir string, out map[string]int64) error {
	db, err := pebble.Open(dir, storeOptions())
	if err != nil {
		return err
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return err
		}
		ns := string(k[:1])
		if k[0] == 'P' {
			if i := strings.IndexByte(string(k), '/'); i > 0 {
				ns = string(k[:i])
			}
		}
		out[ns] += int64(len(k) + len(v))
	}
	return it.Close()
}

// TestCheckpointBytes measures what a day of empty incrementals stores on
// the embedded engine: a backup enabled on an instance of 100 keys takes
// its first daily full, then a day passes with no change (288 checkpoints,
// none with a slice). It logs the growth of every namespace of the store
// per checkpoint: the log ('L' records, 'I' event-ID index, 'S' stream
// index) and the projections ('P', by name), in bytes of keys plus values
// (the logical size, before compression).
func TestCheckpointBytes(t *testing.T) {
	ctx := context.Background()
	day1 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	e, err := openEngine(dir, day1.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.close() }()
	k, err := newInstance(ctx, e, 100, 3)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Set(day1.Add(-10 * time.Minute))
	bk, err := e.enableBackup(ctx, k.in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.driver.Advance(ctx, 11*time.Minute); err != nil { // the first daily full, at 00:00
		t.Fatal(err)
	}
	measure := func() map[string]int64 {
		t.Helper()
		if err := e.settle(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.close(); err != nil {
			t.Fatal(err)
		}
		m, err := dbBytes(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.open(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := measure()
	cp0 := mustCheckpoints(t, e, bk.ID)
	if _, _, err := e.driver.Advance(ctx, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	after := measure()
	n := mustCheckpoints(t, e, bk.ID) - cp0
	if n != 288 {
		t.Fatalf("%d checkpoints in a day, want 288", n)
	}
	names := make([]string, 0, len(after))
	for ns := range after {
		names = append(names, ns)
	}
	slices.Sort(names)
	var logB, projB int64
	for _, ns := range names {
		d := after[ns] - before[ns]
		if d == 0 {
			continue
		}
		switch ns[0] {
		case 'L', 'I', 'S':
			logB += d
		case 'P':
			projB += d
		}
		t.Logf("%-14q +%7d B  %6.1f B/checkpoint", ns, d, float64(d)/float64(n))
	}
	t.Logf("per empty checkpoint: log %.0f B, projections %.0f B, total %.0f B (%d checkpoints)",
		float64(logB)/float64(n), float64(projB)/float64(n), float64(logB+projB)/float64(n), n)
	if logB <= 0 || projB <= 0 {
		t.Fatalf("no growth: log %d B, projections %d B", logB, projB)
	}
}

func mustCheckpoints(t testing.TB, e *engine, id domain.BackupID) int {
	t.Helper()
	b, err := backupstate.Get(e.proj, id)
	if err != nil {
		t.Fatal(err)
	}
	return int(b.Checkpoints)
}

// ---------------------------------------------------------------------------
// TestScalingModel: the capacity model of docs/SCALING.md.

// measured holds the per-operation figures the model starts from, measured
// by the benchmarks of this package on this machine (2 vCPUs, shared with
// other builds) and recorded in docs/BENCHMARKS.md ("Ingest: NATS JetStream
// beside Pebble" and earlier sections) and docs/SCALING.md. Nothing here is
// measured by the test itself: rerun the benchmarks and update the figures
// (and the documents) together.
var measured = struct {
	// BenchmarkIngest (medians of 3): events/s of appends, appenders ×
	// events per append.
	pebble1x1, pebble16x1, pebble1x100 float64
	js1x1, js16x1, js1x100             float64
	// BenchmarkIngest read=Subscribe, and read=rebuild (the server's four
	// projectors from an empty store): events/s.
	pebbleSubscribe, jsSubscribe float64
	pebbleRebuild, jsRebuild     float64
	// BenchmarkIngestUseCases, KMS.CreateKey from 16 callers of 16
	// accounts: events/s.
	pebbleCreateKey, jsCreateKey float64
	// Stored bytes per KMS event (KeyCreated, 123-byte payload): Pebble's
	// log keys and values (logical), JetStream's stream bytes (the event
	// and its ID marker).
	pebbleEventB, jsEventB float64
	// TestCheckpointBytes: an empty checkpoint in Pebble's log (record,
	// event-ID index, stream index) and in the backup's projections;
	// BenchmarkCheckpoint: in JetStream's stream.
	pebbleCheckpointLogB, checkpointProjB, jsCheckpointLogB float64
	// docs/BENCHMARKS.md, "Storage of 30 days of 1% daily churn": growth a
	// day for 1,000 changes of 100k keys, log and backup (the backup's
	// less its checkpoint summaries, 0.9 MiB in 30 days), in bytes.
	logPerChangeB, backupPerChangeB float64
	// BenchmarkCheckpoint (medians of 3): mean time of one empty
	// checkpoint of one backup.
	pebbleCheckpoint, jsCheckpoint time.Duration
	// BenchmarkSchedulerDrain: time per checkpoint while one scheduler
	// drains a boundary at which B backups are due, by B (Pebble: 100 and
	// 300 from one run, 1,000 to 10,000 from a run with
	// KMSBACKUP_BENCH_DRAIN=1000,3000,10000; JetStream: one run).
	pebbleDrain, jsDrain map[int]time.Duration
	// BenchmarkSchedulerDrain, JetStream, B = 1,000, both nodes'
	// schedulers: time per checkpoint, attempts lost per boundary.
	jsDrain2At1000 time.Duration
	jsLostAt1000   float64
	// BenchmarkRestoreSizes: restore read by items. BenchmarkRestoreApply
	// (medians of 6 runs): items/s of an applied restore.
	restoreRead              map[int]time.Duration
	pebbleApplied, jsApplied float64
	// docs/BENCHMARKS.md, "Memory": an upload holds about 1.6 KiB per item.
	uploadBytesPerItem float64
}{
	pebble1x1: 2043, pebble16x1: 12010, pebble1x100: 71950,
	js1x1: 155.2, js16x1: 638.3, js1x100: 8645,
	pebbleSubscribe: 897200, jsSubscribe: 84110,
	pebbleRebuild: 21740, jsRebuild: 10210,
	pebbleCreateKey: 4950, jsCreateKey: 633.9,
	pebbleEventB: 314, jsEventB: 671,
	pebbleCheckpointLogB: 381, checkpointProjB: 141, jsCheckpointLogB: 747,
	logPerChangeB: 0.28 * (1 << 20) / 1000, backupPerChangeB: (0.73 - 0.9/30) * (1 << 20) / 1000,
	pebbleCheckpoint: 466 * time.Microsecond, jsCheckpoint: 5790 * time.Microsecond,
	pebbleDrain: map[int]time.Duration{100: 1855 * time.Microsecond, 300: 4572 * time.Microsecond, 1000: 8961 * time.Microsecond,
		3000: 22470 * time.Microsecond, 10_000: 62400 * time.Microsecond},
	jsDrain:        map[int]time.Duration{100: 7435 * time.Microsecond, 300: 10370 * time.Microsecond, 1000: 14800 * time.Microsecond},
	jsDrain2At1000: 23830 * time.Microsecond, jsLostAt1000: 597.5,
	restoreRead:   map[int]time.Duration{10_000: 80 * time.Millisecond, 50_000: 490 * time.Millisecond, 100_000: 1092 * time.Millisecond},
	pebbleApplied: 673, jsApplied: 85,
	uploadBytesPerItem: 1.6 * 1024,
}

// The fleet the model is asked about.
const (
	fleetInstances   = 10_000
	window           = 5 * time.Minute // one incremental per instance per window
	checkpointsDaily = 24 * 60 / 5     // 288 a day, the day's full among them
	billion          = 1e9
)

// fit returns a and c of the least-squares line y = a + c·x through the
// points (y in seconds).
func fit(points map[int]time.Duration) (a, c float64) {
	var n, sx, sy, sxx, sxy float64
	for x, y := range points {
		fx, fy := float64(x), y.Seconds()
		n++
		sx += fx
		sy += fy
		sxx += fx * fx
		sxy += fx * fy
	}
	c = (n*sxy - sx*sy) / (n*sxx - sx*sx)
	a = (sy - c*sx) / n
	return a, c
}

// drainTime is the time one scheduler takes for a boundary at which b
// backups are due, each checkpoint costing a + c·b seconds (c·b is mostly
// planning: NextWork reads every scheduled backup instance's record).
func drainTime(a, c float64, b int) float64 { return float64(b) * (a + c*float64(b)) }

// maxBackups is the largest b whose drain fits in limit seconds.
func maxBackups(a, c, limit float64) int {
	if c <= 0 {
		return int(limit / a)
	}
	return int((-a + math.Sqrt(a*a+4*c*limit)) / (2 * c)) // c·b² + a·b = limit
}

// simParams describes one boundary for simulateDrain.
type simParams struct {
	backups, nodes int
	// planPerBackup is the planning cost per scheduled backup instance
	// (each plan reads them all); copy, claim and lag are a checkpoint's
	// parts: reading and resealing the slice, the append that claims it,
	// and the time until a node's read models show an append.
	planPerBackup, copy, claim, lag time.Duration
	// partitioned (not implemented in the engine) has node i take the
	// backups whose index is i modulo nodes first, then any left.
	partitioned bool
	// jitter spreads planning, copy and append durations uniformly within
	// ±jitter of themselves (lag is fixed).
	jitter float64
	seed   uint64
}

type simResult struct {
	drain          time.Duration
	attempts, lost int
}

// simEvent is a node planning (item < 0) or one of its appends landing.
type simEvent struct {
	at         time.Duration
	node, item int
}

// simulateDrain is a deterministic discrete-event simulation of nodes
// working through one boundary at which every backup is due, as
// Schedule.RunDue does on each node: plan (the earliest due backup, in ID
// order, that the node's read model does not show as taken), copy, append
// with the expected revision. The first append for a backup takes it; a
// later one fails, and its node waits until its read model shows the
// winner's checkpoint before planning again (Schedule.Do); the winner waits
// for its own read models (BackupStreams.commit). Nodes do not slow each other
// down: the model has no shared server and no shared CPU.
func simulateDrain(p simParams) simResult {
	rng := rand.New(rand.NewPCG(p.seed, 7))
	jit := func(d time.Duration) time.Duration {
		return time.Duration(float64(d) * (1 + p.jitter*(2*rng.Float64()-1)))
	}
	taken := make([]time.Duration, p.backups)
	for i := range taken {
		taken[i] = -1
	}
	seen := func(i int, now time.Duration) bool { return taken[i] >= 0 && taken[i]+p.lag <= now }
	own := make([]int, p.nodes) // the next backup of each node's partition
	next := make([]int, p.nodes)
	for n := range own {
		own[n] = n
	}
	pick := func(n int, now time.Duration) int {
		if p.partitioned {
			for own[n] < p.backups && seen(own[n], now) {
				own[n] += p.nodes
			}
			if own[n] < p.backups {
				return own[n]
			}
			for i := next[n]; i < p.backups; i++ { // then anything nobody took
				if taken[i] < 0 {
					return i
				}
			}
			return -1
		}
		for next[n] < p.backups && seen(next[n], now) {
			next[n]++
		}
		if next[n] < p.backups {
			return next[n]
		}
		return -1
	}
	queue := make([]simEvent, 0, p.nodes)
	for n := range p.nodes {
		queue = append(queue, simEvent{at: 0, node: n, item: -1})
	}
	// before orders events: by time, appends before plans, then by node.
	before := func(a, b simEvent) bool {
		if a.at != b.at {
			return a.at < b.at
		}
		if (a.item >= 0) != (b.item >= 0) {
			return a.item >= 0
		}
		return a.node < b.node
	}
	var r simResult
	for len(queue) > 0 {
		best := 0
		for i := range queue {
			if before(queue[i], queue[best]) {
				best = i
			}
		}
		e := queue[best]
		queue[best] = queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if e.item < 0 {
			if i := pick(e.node, e.at); i >= 0 {
				plan := jit(time.Duration(p.backups) * p.planPerBackup)
				queue = append(queue, simEvent{at: e.at + plan + jit(p.copy) + jit(p.claim), node: e.node, item: i})
			}
			continue
		}
		r.attempts++
		if taken[e.item] < 0 {
			taken[e.item] = e.at
			r.drain = max(r.drain, e.at+p.lag)
			queue = append(queue, simEvent{at: e.at + p.lag, node: e.node, item: -1})
		} else {
			r.lost++
			queue = append(queue, simEvent{at: max(e.at, taken[e.item]+p.lag), node: e.node, item: -1})
		}
	}
	return r
}

// TestScalingModel prints the capacity model of docs/SCALING.md (run with
// -v): every figure is in the measured table above or derived from it by
// the arithmetic and the simulation here.
func TestScalingModel(t *testing.T) {
	m := measured
	day := (24 * time.Hour).Seconds()
	logf := t.Logf

	logf("1. load of %d instances", fleetInstances)
	cpDay := float64(fleetInstances * checkpointsDaily)
	cpRate := cpDay / day
	logf("   checkpoints: %d × %d a day = %.2fM a day, %.1f/s on average", fleetInstances, checkpointsDaily, cpDay/1e6, cpRate)
	logf("   all due at once at every 5-minute boundary: %d within %s needs %.1f/s while draining, %.1f/s to finish in half of it",
		fleetInstances, window, fleetInstances/window.Seconds(), 2*fleetInstances/window.Seconds())
	type profile struct {
		name    string
		changes float64 // KMS events a day: 1% of the keys
	}
	profiles := []profile{{"1k keys", 10}, {"10k keys", 100}, {"100k keys", 1000}}
	fleet := profiles[1]
	kmsDay := float64(fleetInstances) * fleet.changes
	eventsDay := cpDay + kmsDay
	logf("   KMS events (assumed: every instance has %s, 1%% changed a day): %.2fM a day, %.1f/s", fleet.name, kmsDay/1e6, kmsDay/day)
	logf("   log appends in all: %.2fM events a day, %.1f/s on average (%.0f%% of them checkpoints)", eventsDay/1e6, eventsDay/day, 100*cpDay/eventsDay)

	logf("2. rates per log and per node (measured), against the %.0f events/s needed", eventsDay/day)
	logf("   %-34s %10s %10s", "events/s", "pebble", "jetstream")
	for _, r := range []struct {
		name  string
		p, js float64
	}{
		{"append, 1 writer, single events", m.pebble1x1, m.js1x1},
		{"append, 16 writers, single events", m.pebble16x1, m.js16x1},
		{"append, 1 writer, 100 an append", m.pebble1x100, m.js1x100},
		{"KMS.CreateKey, 16 accounts", m.pebbleCreateKey, m.jsCreateKey},
		{"catch-up subscription", m.pebbleSubscribe, m.jsSubscribe},
		{"projections applied (rebuild)", m.pebbleRebuild, m.jsRebuild},
		{"checkpoints, 1 scheduler, B = 1", 1 / m.pebbleCheckpoint.Seconds(), 1 / m.jsCheckpoint.Seconds()},
	} {
		logf("   %-34s %10.0f %10.0f", r.name, r.p, r.js)
	}

	logf("3. one scheduler draining a boundary of B due backups: per checkpoint a + c·B (least squares over the measured B)")
	pa, pc := fit(m.pebbleDrain)
	ja, jc := fit(m.jsDrain)
	logf("   %-10s %8s %8s %12s %12s %14s %14s", "log", "a ms", "c µs", "drain@1k s", "drain@10k s", "max B, 300 s", "max B, 150 s")
	for _, l := range []struct {
		name string
		a, c float64
	}{{"pebble", pa, pc}, {"jetstream", ja, jc}} {
		logf("   %-10s %8.2f %8.2f %12.1f %12.0f %14d %14d", l.name, l.a*1e3, l.c*1e6, drainTime(l.a, l.c, 1000), drainTime(l.a, l.c, fleetInstances),
			maxBackups(l.a, l.c, window.Seconds()), maxBackups(l.a, l.c, window.Seconds()/2))
	}
	logf("   measured at B = 10,000 on pebble: %.0f s", float64(fleetInstances)*m.pebbleDrain[fleetInstances].Seconds())
	logf("   without the planning term (an index by due time; not implemented): a·B at 10,000 = pebble %.0f s, jetstream %.0f s",
		drainTime(pa, 0, fleetInstances), drainTime(ja, 0, fleetInstances))

	// The simulation takes JetStream's a and c; how a splits into its parts
	// is assumed.
	base := simParams{planPerBackup: time.Duration(jc * float64(time.Second)), jitter: 0.5, seed: 1}
	a := time.Duration(ja * float64(time.Second))
	base.copy, base.claim, base.lag = a*15/100, a*70/100, a*15/100
	logf("4. several nodes (simulation with jetstream's a and c; a split 15%%/70%%/15%% into copy/append/lag and ±50%% jitter: assumed)")
	for _, n := range []int{1, 2} {
		p := base
		p.backups, p.nodes = 1000, n
		r := simulateDrain(p)
		want, lost := m.jsDrain[1000].Seconds()*1000, 0.0
		if n == 2 {
			want, lost = m.jsDrain2At1000.Seconds()*1000, m.jsLostAt1000
		}
		logf("   check, B = 1,000, %d scheduler(s): simulated %.1f s, %d lost; measured %.1f s, %.0f lost", n, r.drain.Seconds(), r.lost, want, lost)
	}
	logf("   %-36s %6s %9s %8s", "B = 10,000", "nodes", "drain s", "lost")
	for _, c := range []struct {
		name        string
		partitioned bool
		noPlan      bool
	}{{"today: same order, the append decides", false, false}, {"partitioned (not implemented)", true, false}, {"partitioned, due index (neither is)", true, true}} {
		for _, n := range []int{1, 2, 4, 8} {
			p := base
			p.backups, p.nodes, p.partitioned = fleetInstances, n, c.partitioned
			if c.noPlan {
				p.planPerBackup = 0
			}
			r := simulateDrain(p)
			logf("   %-36s %6d %9.0f %8d", c.name, n, r.drain.Seconds(), r.lost)
		}
	}

	logf("5. storage")
	cpB := float64(checkpointsDaily) * (m.pebbleCheckpointLogB + m.checkpointProjB)
	perChange := m.logPerChangeB + m.backupPerChangeB
	logf("   bytes per backup-instance-day, pebble, logical: 288 checkpoints × (%.0f + %.0f) B + changes × (%.0f + %.0f) B",
		m.pebbleCheckpointLogB, m.checkpointProjB, m.logPerChangeB, m.backupPerChangeB)
	logf("   %-10s %8s %12s %12s %12s %16s", "instance", "changes", "checkpoints", "changes", "total", "10k instances")
	for _, pr := range profiles {
		ch := pr.changes * perChange
		logf("   %-10s %8.0f %10.0f B %10.0f B %10.0f B %13.2f GB/d", pr.name, pr.changes, cpB, ch, cpB+ch, (cpB+ch)*fleetInstances/1e9)
	}
	jsCpB := float64(checkpointsDaily) * m.jsCheckpointLogB
	logf("   jetstream: the log takes %.0f B per checkpoint (%.0f B a day) and %.0f B per KMS event; each node keeps %.0f B of projections per checkpoint",
		m.jsCheckpointLogB, jsCpB, m.jsEventB, m.checkpointProjB)
	mix := cpDay / eventsDay
	perEventP := mix*m.pebbleCheckpointLogB + (1-mix)*m.pebbleEventB
	perEventJ := mix*m.jsCheckpointLogB + (1-mix)*m.jsEventB
	logf("   a billion events of that mix: log only, pebble %.0f GB (%.0f B/event), jetstream %.0f GB (%.0f B/event); reached in %.0f days",
		billion*perEventP/1e9, perEventP, billion*perEventJ/1e9, perEventJ, billion/eventsDay)
	logf("   the same billion with backups and projections, pebble: %.0f GB", billion*(mix*(m.pebbleCheckpointLogB+m.checkpointProjB)+(1-mix)*perChange)/1e9)

	logf("6. a new node rebuilds its projections from the log")
	logf("   a billion events: pebble %.1f h at %.0f events/s; jetstream %.1f h at %.0f events/s",
		billion/m.pebbleRebuild/3600, m.pebbleRebuild, billion/m.jsRebuild/3600, m.jsRebuild)
	logf("   one day of the fleet (%.2fM events): pebble %.0f s, jetstream %.0f s", eventsDay/1e6, eventsDay/m.pebbleRebuild, eventsDay/m.jsRebuild)

	logf("7. restore: read measured at 10k, 50k, 100k items (200k: twice 100k, a lower bound); applied at %.0f items/s (pebble), %.0f (jetstream)",
		m.pebbleApplied, m.jsApplied)
	for _, n := range []int{10_000, 50_000, 100_000, 200_000} {
		read, ok := m.restoreRead[n]
		if !ok {
			read = m.restoreRead[100_000] * time.Duration(n) / 100_000
		}
		logf("   %7d items: read %5.2f s (%4.1f µs/item); read and apply: pebble %5.0f s, jetstream %5.0f s", n, read.Seconds(),
			read.Seconds()*1e6/float64(n), read.Seconds()+float64(n)/m.pebbleApplied, read.Seconds()+float64(n)/m.jsApplied)
	}
	logf("   an upload holds about %.1f KiB per item: %.0f MiB for 200,000 items", m.uploadBytesPerItem/1024, 200_000*m.uploadBytesPerItem/(1<<20))

	p := base
	p.backups, p.nodes = 500, 3
	if x, y := simulateDrain(p), simulateDrain(p); x != y {
		t.Fatalf("simulation not deterministic: %+v, %+v", x, y)
	}
	if r := simulateDrain(simParams{backups: 10, nodes: 1, claim: time.Millisecond}); r.drain != 10*time.Millisecond || r.lost != 0 || r.attempts != 10 {
		t.Fatalf("one node, 10 backups of 1 ms each: %+v", r)
	}
	if r := simulateDrain(simParams{backups: 10, nodes: 2, claim: time.Millisecond, partitioned: true}); r.drain != 5*time.Millisecond || r.lost != 0 {
		t.Fatalf("two partitioned nodes, 10 backups of 1 ms each: %+v", r)
	}
}
