package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/clock"
	"github.com/kmsbackup/kmsbackup/adapters/ids"
	"github.com/kmsbackup/kmsbackup/adapters/softkms"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var restoreItems = flag.String("restore-items", "100000", "comma-separated sizes of BenchmarkRestoreWhole's instances (keys and secrets)")

// wholeRestore is a backed-up KMS instance of keys and secrets, and the
// restore use cases wired as the server wires them (audit included).
type wholeRestore struct {
	e      *engine
	backup *domain.Backup
	day    domain.Day
	rs     *commands.Restores
	keys   int
	secs   int
}

// secretAAD is the data-plane associated data of version 1 of a secret,
// as KMS.CreateSecret encrypts it.
func secretAAD(key domain.KeyID, name string) []byte {
	return domain.CiphertextAAD(key, 1, "secret\x00"+name+"\x001")
}

// newWholeRestore builds an instance of n items (at most domain.MaxQuota
// keys: 90% keys, or as many as the quota takes, the rest secrets, each
// under one of the first 1,000 keys) with events appended as the KMS
// appends them, and backs it up.
func newWholeRestore(b *testing.B, n int) *wholeRestore {
	return newRestoreWorld(b, n, min(n*9/10, domain.MaxQuota))
}

// newRestoreWorld is newWholeRestore with the number of keys given (more
// than the quota only for a plan: the events are appended as they are).
func newRestoreWorld(b *testing.B, n, keys int) *wholeRestore {
	ctx := context.Background()
	e, err := openEngine(b.TempDir(), time.Date(2026, 5, 1, 0, 0, 30, 0, time.UTC))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.close() })
	in, err := e.KMS.CreateInstance(ctx, e.caller, commands.CreateInstanceInput{Region: region, KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota})
	if err != nil {
		b.Fatal(err)
	}
	w := &wholeRestore{e: e, keys: keys}
	w.secs = n - w.keys
	k := newKeys(e, in, 7)
	var material []domain.Plaintext // of the first 1,000 keys, for their secrets
	cipher := softkms.Cipher{}
	for i := range w.keys {
		eid := e.ids.NewULID()
		m, err := cipher.NewKeyMaterial()
		if err != nil {
			b.Fatal(err)
		}
		sealed, err := e.env.Seal(ctx, string(in.ID), m, domain.AssociatedData(in.Account, k.stream, eid))
		if err != nil {
			b.Fatal(err)
		}
		if len(material) < 1000 {
			material = append(material, m)
		} else {
			m.Wipe()
		}
		id := domain.NewKeyID(e.ids.NewULID())
		k.ids = append(k.ids, id)
		k.event(eid, &domain.KeyCreated{Key: id, Description: fmt.Sprintf("bench key %07d", i), Spec: domain.KeySpecAES256, Material: sealed})
		if len(k.pending) == 5000 {
			if err := k.flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := range w.secs {
		name := fmt.Sprintf("secret-%07d", i)
		j := i % max(len(material), 1)
		sealed, err := cipher.Encrypt(material[j], []byte("value"), secretAAD(k.ids[j], name))
		if err != nil {
			b.Fatal(err)
		}
		ct := domain.Ciphertext{Key: k.ids[j], Version: 1, Sealed: sealed}
		k.event(e.ids.NewULID(), &domain.SecretCreated{Name: name, Key: k.ids[j], Value: []byte(ct.String())})
		if len(k.pending) == 5000 {
			if err := k.flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := k.flush(ctx); err != nil {
		b.Fatal(err)
	}
	for _, m := range material {
		m.Wipe()
	}
	if err := e.settle(ctx); err != nil {
		b.Fatal(err)
	}
	if w.backup, err = e.enableBackup(ctx, in.ID); err != nil {
		b.Fatal(err)
	}
	w.day = domain.DayOf(e.clock.Now(), time.UTC)
	// An engine that built its state long ago, not one whose memtables
	// and write buffers a burst of writes just filled.
	if err := e.compact(); err != nil {
		b.Fatal(err)
	}
	// Event IDs from the real clock, as a server draws them: with the
	// manual clock stopped, every ID of the restore would fall in the
	// millisecond of the 100,000 created before, which makes the log's
	// check of new IDs read its index ID by ID (pebblestore's precheck).
	realIDs := ids.Random{Clock: clock.System{}}
	e.KMS.IDs = realIDs
	e.Audit.IDs = realIDs
	w.rs = e.Restores
	if err := e.settle(ctx); err != nil {
		b.Fatal(err)
	}
	return w
}

func (w *wholeRestore) target(b *testing.B, i int) domain.InstanceID {
	in, err := w.e.KMS.CreateInstance(context.Background(), w.e.caller, commands.CreateInstanceInput{Region: fmt.Sprintf("eu-bench-%d", i),
		KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota})
	if err != nil {
		b.Fatal(err)
	}
	return in.ID
}

func (w *wholeRestore) request(to domain.InstanceID) commands.RestoreRequest {
	return commands.RestoreRequest{From: w.backup.ID, Point: commands.RestorePoint{Day: w.day}, Selection: domain.SelectAll(), Target: to}
}

// heapUse is what heapPeaks measures while a function runs: the peak heap
// in use (HeapInuse: live data and the garbage not yet collected) and the
// peak live heap (as the last garbage collection found it), each above
// what it was before, and the live heap before (the engine's own).
type heapUse struct {
	took            time.Duration
	cpu             time.Duration // the process's CPU time (user and system) meanwhile
	inuse, live     uint64
	baseLive        uint64
	collectionsDone uint32
}

// heapPeaks runs fn, after gcs collections (two drop what sync.Pools
// kept through the first), and samples the heap every 2 ms. The garbage a
// run leaves between two collections is proportional to the whole live
// heap (GOGC), the engine's included, so the live heap says better what a
// restore itself holds. It samples through runtime/metrics, which does
// not stop the world: runtime.ReadMemStats every 2 ms stopped every
// goroutine 500 times a second, and took about 4% of a restore's CPU time.
func heapPeaks(fn func() error, gcs int) (heapUse, error) {
	for range gcs {
		runtime.GC()
	}
	var before heapSample
	before.read()
	var peakInuse, peakLive atomic.Uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		var s heapSample
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				s.read()
				if v := s.inuse(); v > peakInuse.Load() {
					peakInuse.Store(v)
				}
				if v := s.live(); v > peakLive.Load() {
					peakLive.Store(v)
				}
			}
		}
	}()
	cpu0 := processCPU()
	start := time.Now()
	err := fn()
	u := heapUse{took: time.Since(start), cpu: processCPU() - cpu0, baseLive: before.live()}
	close(stop)
	<-done
	var after heapSample
	after.read()
	u.collectionsDone = uint32(after.collections() - before.collections())
	if p := max(peakInuse.Load(), after.inuse()); p > before.inuse() {
		u.inuse = p - before.inuse()
	}
	if p := peakLive.Load(); p > before.live() {
		u.live = p - before.live()
	}
	return u, err
}

// heapSample is one reading of the heap through runtime/metrics: in use
// (runtime.MemStats.HeapInuse: objects, live or not yet swept, and the
// free space of spans in use), live (as the last collection found it),
// and the collections so far.
type heapSample [4]metrics.Sample

func (s *heapSample) read() {
	if s[0].Name == "" {
		s[0].Name, s[1].Name = heapObjects, "/memory/classes/heap/unused:bytes"
		s[2].Name, s[3].Name = heapLive, "/gc/cycles/total:gc-cycles"
	}
	metrics.Read(s[:])
}

func (s *heapSample) inuse() uint64       { return s[0].Value.Uint64() + s[1].Value.Uint64() }
func (s *heapSample) live() uint64        { return s[2].Value.Uint64() }
func (s *heapSample) collections() uint64 { return s[3].Value.Uint64() }

// processCPU is the CPU time (user and system) the process has used: on a
// machine shared with other work, a restore's CPU time varies less than
// its wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// restoreCPUProfile, from KMSBACKUP_BENCH_RESTORE_CPUPROFILE, is a file
// that BenchmarkRestoreWhole writes a CPU profile of one restore to (plan,
// apply and validation, without the building of the instance that a
// -cpuprofile of the whole benchmark mostly holds): the first, or the one
// KMSBACKUP_BENCH_RESTORE_PROFILE_AT numbers from 0.
var (
	restoreCPUProfile   = os.Getenv("KMSBACKUP_BENCH_RESTORE_CPUPROFILE")
	restoreProfileAt, _ = strconv.Atoi(os.Getenv("KMSBACKUP_BENCH_RESTORE_PROFILE_AT"))
)

// BenchmarkRestoreWhole measures an applied whole-instance restore with
// its validation (plan, apply in batches, validate) into an empty instance
// of another region, and its peak heap; then the plan alone (a dry run).
// -restore-items sets the sizes (an instance holds at most 100,000 keys
// and 100,000 secrets).
func BenchmarkRestoreWhole(b *testing.B) {
	for _, s := range strings.Split(*restoreItems, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 10 || n > 2*domain.MaxQuota {
			b.Fatalf("-restore-items: %q must be 10 to %d", s, 2*domain.MaxQuota)
		}
		b.Run(fmt.Sprintf("items=%d", n), func(b *testing.B) {
			start := time.Now()
			w := newWholeRestore(b, n)
			b.Logf("built %d keys and %d secrets in %s", w.keys, w.secs, time.Since(start).Round(time.Second))
			ctx := context.Background()
			var took, plans, cpus []time.Duration
			var peak, live, planPeak, planLive uint64
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				to := w.target(b, 2*i+1)
				b.StartTimer()
				var res *commands.RestoreResult
				phases := map[string]time.Time{}
				var phaseOrder []string
				if path := restoreCPUProfile; path != "" && i == restoreProfileAt {
					f, err := os.Create(path)
					if err != nil {
						b.Fatal(err)
					}
					if err := pprof.StartCPUProfile(f); err != nil {
						b.Fatal(err)
					}
					defer f.Close()
				}
				u, err := heapPeaks(func() error {
					var err error
					res, err = w.rs.Restore(ctx, w.e.caller, w.request(to), func(p commands.RestoreProgress) {
						if _, ok := phases[p.Phase]; !ok {
							phases[p.Phase] = time.Now()
							phaseOrder = append(phaseOrder, p.Phase)
						}
					})
					return err
				}, 2)
				end := time.Now()
				if restoreCPUProfile != "" && i == restoreProfileAt {
					pprof.StopCPUProfile()
				}
				var split []string
				for i, ph := range phaseOrder {
					next := end
					if i+1 < len(phaseOrder) {
						next = phases[phaseOrder[i+1]]
					}
					split = append(split, fmt.Sprintf("%s %s", ph, next.Sub(phases[ph]).Round(time.Millisecond)))
				}
				b.Logf("phases: %s", strings.Join(split, ", "))
				if err != nil || !res.Applied || res.Restored != n || len(res.Validation) > 0 {
					b.Fatalf("restore: %v %+v", err, res)
				}
				took, peak, live = append(took, u.took), max(peak, u.inuse), max(live, u.live)
				b.StopTimer()
				other := w.target(b, 2*i+2)
				p, err := heapPeaks(func() error {
					plan, err := w.rs.PlanRestore(ctx, w.e.caller, w.request(other), nil)
					if err == nil && plan.FindingCount() > 0 {
						err = fmt.Errorf("plan findings: %+v", plan.Findings[0])
					}
					return err
				}, 2)
				if err != nil {
					b.Fatal(err)
				}
				plans, planPeak, planLive = append(plans, p.took), max(planPeak, p.inuse), max(planLive, p.live)
				cpus = append(cpus, u.cpu)
				b.Logf("restore of %d items in %d batches: %s (CPU %s), heap in use +%.1f MiB, live +%.1f MiB (engine's live heap before: %.1f MiB; %d collections); plan alone %s, in use +%.1f MiB, live +%.1f MiB",
					res.Restored, res.Batches, u.took.Round(time.Millisecond), u.cpu.Round(time.Millisecond), mib(u.inuse), mib(u.live), mib(u.baseLive), u.collectionsDone,
					p.took.Round(time.Millisecond), mib(p.inuse), mib(p.live))
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(medianDur(took).Seconds(), "restore_s")
			b.ReportMetric(medianDur(cpus).Seconds(), "restore_cpu_s")
			b.ReportMetric(float64(n)/medianDur(took).Seconds(), "items/s")
			b.ReportMetric(mib(peak), "peak_inuse_MiB")
			b.ReportMetric(mib(live), "peak_live_MiB")
			b.ReportMetric(medianDur(plans).Seconds(), "plan_s")
			b.ReportMetric(mib(planPeak), "plan_inuse_MiB")
			b.ReportMetric(mib(planLive), "plan_live_MiB")
		})
	}
}

var restorePlanItems = flag.Int("restore-plan-items", 1_000_000, "keys of BenchmarkRestorePlanLarge's instance")

// BenchmarkRestorePlanLarge measures the plan of a whole-instance restore
// of an instance of -restore-plan-items keys (appended as events, beyond
// the quota an instance can have) into an empty instance: the plan reads
// every item and checks it against the target, and finds the key quota
// exceeded; its heap shows whether memory grows with the items.
func BenchmarkRestorePlanLarge(b *testing.B) {
	n := *restorePlanItems
	start := time.Now()
	w := newRestoreWorld(b, n, n)
	b.Logf("built %d keys in %s", n, time.Since(start).Round(time.Second))
	ctx := context.Background()
	var took []time.Duration
	var inuse, live uint64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		to := w.target(b, i+1)
		b.StartTimer()
		var plan *commands.RestorePlan
		u, err := heapPeaks(func() error {
			var err error
			plan, err = w.rs.PlanRestore(ctx, w.e.caller, w.request(to), nil)
			return err
		}, 2)
		if err != nil || plan.Keys != n || plan.FindingCount() != 1 || plan.Findings[0].Code != commands.FindingKeyQuota {
			b.Fatalf("plan: %v; %d keys, findings %+v", err, plan.Keys, plan.Findings)
		}
		took, inuse, live = append(took, u.took), max(inuse, u.inuse), max(live, u.live)
		b.Logf("plan of %d keys: %s, heap in use +%.1f MiB, live +%.1f MiB (%d collections)", plan.Keys, u.took.Round(time.Millisecond), mib(u.inuse), mib(u.live), u.collectionsDone)
	}
	b.StopTimer()
	b.ReportMetric(medianDur(took).Seconds(), "plan_s")
	b.ReportMetric(mib(inuse), "peak_inuse_MiB")
	b.ReportMetric(mib(live), "peak_live_MiB")
}
