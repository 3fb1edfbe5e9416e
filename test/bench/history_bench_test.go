package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ---------------------------------------------------------------------------
// A long history of a KMS instance and its backup (docs/BENCHMARKS.md,
// "The restore engine's storage over 600 days"): keys and secrets created,
// then rotated before the backup is enabled until they hold about as many
// versions as the day's churn keeps them at, then days of churn made of
// rotations, deletions and creations. Old days are built coarsely (one
// full a day, the day's changes spread over its hours, no incrementals);
// the measured days run the real schedule (their full and 288
// incrementals). Bases are written as the schedule writes them, after each
// daily full.

// historySpec describes a history.
type historySpec struct {
	keys, secrets int // at the start
	// startVersions is the mean number of versions the items hold when the
	// backup is enabled (rotations before it: the churn's steady state).
	startVersions float64
	days          int
	perDay        int // changes a day
	// rotate, remove are the shares of rotations and deletions among the
	// changes (the rest are creations); a deletion and a creation keep
	// the number of items, rotations and deletions the versions.
	rotate, remove float64
	measured       []int // days (from 1) with the real schedule
	rebase         domain.RebasePolicy
}

// spec100k is the history of the restore engine's targets: 100k keys and
// secrets (90k and 10k), 1% daily churn (1,000 changes a day) of 50%
// rotations, 25% deletions and 25% creations, with 3 versions an item at
// the start, which that churn keeps steady ((rotations + creations) /
// deletions = 3): so the state of day 600 is about the size of day 30's,
// and what grows is the history alone.
func spec100k(days int, measured ...int) historySpec {
	return historySpec{keys: 90_000, secrets: 10_000, startVersions: 3, days: days, perDay: 1000,
		rotate: 0.5, remove: 0.25, measured: measured, rebase: domain.DefaultRebasePolicy}
}

// stock is the instance's keys and secrets as the history makes them,
// appended straight to the log (see keys).
type stock struct {
	*keys
	protected int // keys 0 to protected-1 encrypt the secrets: never deleted

	names     []string // every secret ever created
	sversions []uint32
	slive     []int // indexes of the live secrets
	sat       []int // index of secret i in slive; -1 once deleted
	sseq      int   // names made
}

func (s *stock) createSecret() {
	i := len(s.names)
	name := fmt.Sprintf("secret-%07d", s.sseq)
	s.sseq++
	s.names, s.sversions, s.sat = append(s.names, name), append(s.sversions, 1), append(s.sat, len(s.slive))
	s.slive = append(s.slive, i)
	s.event(s.e.ids.NewULID(), &domain.SecretCreated{Name: name, Key: s.ids[i%s.protected], Value: s.value()})
}

func (s *stock) rotateSecret(i int) {
	s.sversions[i]++
	s.event(s.e.ids.NewULID(), &domain.SecretRotated{Name: s.names[i], Version: s.sversions[i], Key: s.ids[(i+int(s.sversions[i]))%s.protected], Value: s.value()})
}

func (s *stock) removeSecret(i int) {
	j, last := s.sat[i], s.slive[len(s.slive)-1]
	s.slive[j], s.sat[last] = last, j
	s.slive = s.slive[:len(s.slive)-1]
	s.sat[i] = -1
	s.event(s.e.ids.NewULID(), &domain.SecretDeleted{Name: s.names[i]})
}

// value is a stand-in for a KMS ciphertext of a secret's value (a
// restore read never decrypts secrets), of a ciphertext's size.
func (s *stock) value() []byte {
	b := make([]byte, 96)
	for i := range b {
		b[i] = byte(s.rng.Uint32())
	}
	return b
}

// randomKey is a live key that encrypts no secret.
func (s *stock) randomKey() int {
	for {
		if i := s.randomLive(); i >= s.protected {
			return i
		}
	}
}

func (s *stock) randomSecret() int { return s.slive[s.rng.IntN(len(s.slive))] }

// items and versions are the state's size as the stock sees it.
func (s *stock) stateItems() int { return len(s.live) + len(s.slive) }

func (s *stock) stateVersions() int {
	n := 0
	for _, i := range s.live {
		n += int(s.versions[i])
	}
	for _, i := range s.slive {
		n += int(s.sversions[i])
	}
	return n
}

// change makes one change of the history's mix: secrets take their share
// of each kind of change by their share of the items.
func (s *stock) change(ctx context.Context, h historySpec) error {
	secret := s.rng.IntN(s.stateItems()) < len(s.slive)
	switch x := s.rng.Float64(); {
	case x < h.rotate && secret:
		s.rotateSecret(s.randomSecret())
	case x < h.rotate:
		return s.rotate(ctx, s.randomLive())
	case x < h.rotate+h.remove && secret:
		s.removeSecret(s.randomSecret())
	case x < h.rotate+h.remove:
		s.remove(s.randomKey())
	case secret:
		s.createSecret()
	default:
		return s.create(ctx)
	}
	return nil
}

// historyDay is what a history recorded of one measured day.
type historyDay struct {
	day             int
	date            domain.Day
	endRevision     uint64 // the KMS stream's first revision after the day
	items, versions int    // the state at the end of the day
}

// builtHistory is a history built, with its engine.
type builtHistory struct {
	spec    historySpec
	e       *engine
	s       *stock
	backup  *domain.Backup
	day1    time.Time
	days    map[int]*historyDay
	usage   map[int]*usage // at the end of measured days 30 and the last
	built   time.Duration
	base    []uint64 // the checkpoints of the bases written
	enabled time.Duration
}

// dayStart is the first instant of day d (1 is the first day after enabling).
func (h *builtHistory) dayStart(d int) time.Time {
	return h.day1.Add(time.Duration(d-1) * 24 * time.Hour)
}

// buildHistory builds spec's history in dir.
func buildHistory(tb testing.TB, dir string, spec historySpec) *builtHistory {
	tb.Helper()
	ctx := context.Background()
	start := time.Now()
	day1 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	e, err := openEngine(dir, day1.Add(-20*time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	e.Checkpoints.Rebase = &spec.rebase
	h := &builtHistory{spec: spec, e: e, day1: day1, days: map[int]*historyDay{}, usage: map[int]*usage{}}
	in, err := e.KMS.CreateInstance(ctx, e.caller, commands.CreateInstanceInput{Region: region, KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota})
	if err != nil {
		tb.Fatal(err)
	}
	s := &stock{keys: newKeys(e, in, 7), protected: 100}
	h.s = s
	// The evening before day 1: the keys and secrets, then rotations until
	// they hold startVersions versions on average.
	for n := 0; n < spec.keys+spec.secrets; n++ {
		if n < spec.keys {
			if err := s.create(ctx); err != nil {
				tb.Fatal(err)
			}
		} else {
			s.createSecret()
		}
		if len(s.pending) >= 5000 {
			if err := s.flush(ctx); err != nil {
				tb.Fatal(err)
			}
			e.clock.Advance(time.Second)
		}
	}
	for float64(s.stateVersions()) < spec.startVersions*float64(s.stateItems()) {
		if s.rng.IntN(s.stateItems()) < len(s.slive) {
			s.rotateSecret(s.randomSecret())
		} else if err := s.rotate(ctx, s.randomLive()); err != nil {
			tb.Fatal(err)
		}
		if len(s.pending) >= 5000 {
			if err := s.flush(ctx); err != nil {
				tb.Fatal(err)
			}
			e.clock.Advance(time.Second)
		}
	}
	if err := s.flush(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := e.settle(ctx); err != nil {
		tb.Fatal(err)
	}
	// Enabled at 23:50: the first checkpoint writes base 0.
	e.clock.Set(day1.Add(-10 * time.Minute))
	enable := time.Now()
	if h.backup, err = e.enableBackup(ctx, in.ID); err != nil {
		tb.Fatal(err)
	}
	h.enabled = time.Since(enable)
	measured := map[int]bool{}
	for _, d := range spec.measured {
		measured[d] = true
	}
	for d := 1; d <= spec.days; d++ {
		if err := h.full(ctx, d); err != nil {
			tb.Fatalf("day %d: %v", d, err)
		}
		if measured[d] {
			err = h.scheduledDay(ctx, d)
		} else {
			err = h.coarseDay(ctx, d)
		}
		if err != nil {
			tb.Fatalf("day %d: %v", d, err)
		}
		if measured[d] {
			h.days[d] = &historyDay{day: d, date: domain.DayOf(h.dayStart(d), time.UTC), endRevision: s.rev + 1,
				items: s.stateItems(), versions: s.stateVersions()}
		}
		if measured[d] && (d == 30 || d == spec.days) {
			// The next full, then the storage at the end of the day.
			if err := h.full(ctx, d+1); err != nil {
				tb.Fatal(err)
			}
			if h.usage[d], err = e.measure(ctx, s.keys, h.backup); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := e.settle(ctx); err != nil {
		tb.Fatal(err)
	}
	b, err := backupstate.Get(e.proj, h.backup.ID)
	if err != nil {
		tb.Fatal(err)
	}
	h.backup = b
	h.built = time.Since(start)
	return h
}

// full takes the full of day d at its first instant, unless the schedule
// took it, then the bases due.
func (h *builtHistory) full(ctx context.Context, d int) error {
	at := h.dayStart(d)
	b, err := backupstate.Get(h.e.proj, h.backup.ID)
	if err != nil {
		return err
	}
	if b.LastFullDay == domain.DayOf(at, time.UTC) {
		return nil
	}
	h.e.clock.Set(at)
	if _, err := h.e.Checkpoints.TakeCheckpoint(ctx, b.ID, domain.Due{At: at, Full: true}); err != nil {
		return err
	}
	n, err := h.e.Schedule.RunRebases(ctx)
	if n > 0 {
		b, _ := backupstate.Get(h.e.proj, h.backup.ID)
		h.base = append(h.base, b.BaseSeq)
	}
	return err
}

// coarseDay makes day d's changes spread over its hours (no checkpoint:
// the next day's full holds them).
func (h *builtHistory) coarseDay(ctx context.Context, d int) error {
	start := h.dayStart(d)
	for hour := range 24 {
		h.e.clock.Set(start.Add(time.Duration(hour)*time.Hour + time.Minute))
		for range h.spec.perDay / 24 {
			if err := h.s.change(ctx, h.spec); err != nil {
				return err
			}
		}
		if hour == 23 {
			for range h.spec.perDay % 24 {
				if err := h.s.change(ctx, h.spec); err != nil {
					return err
				}
			}
		}
		if err := h.s.flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// scheduledDay makes day d's changes spread over its 288 five-minute
// windows while the scheduler takes an incremental at the end of each.
func (h *builtHistory) scheduledDay(ctx context.Context, d int) error {
	const windows = 24 * 12
	const window = 5 * time.Minute
	start := h.dayStart(d)
	made := 0
	for w := range windows {
		if end := (w + 1) * h.spec.perDay / windows; made < end {
			h.e.clock.Set(start.Add(time.Duration(w)*window + time.Minute))
			for ; made < end; made++ {
				if err := h.s.change(ctx, h.spec); err != nil {
					return err
				}
			}
			if err := h.s.flush(ctx); err != nil {
				return err
			}
		}
		if w == windows-1 {
			break // the next day's full is taken by full
		}
		if _, _, err := h.e.driver.Advance(ctx, start.Add(time.Duration(w+1)*window).Sub(h.e.clock.Now())); err != nil {
			return err
		}
	}
	h.e.clock.Set(start.Add(24*time.Hour - time.Minute))
	return nil
}

// genesisReplay is the genesis replay of the KMS instance's stream up to
// revision end (see genesisReplay).
func (h *builtHistory) genesisReplay(ctx context.Context, end uint64) (int, error) {
	return genesisReplay(ctx, h.e, h.s.stream, end)
}

// rawRecords is a Pebble database of n records of the sizes of the KMS
// stream's log records (copies of the stream's records, from its start
// again if it holds fewer), compacted, with the store's options: what a
// raw scan of n records reads.
func (h *builtHistory) rawRecords(ctx context.Context, dir string, n int) (*pebble.DB, error) {
	db, err := pebble.Open(dir, storeOptions())
	if err != nil {
		return nil, err
	}
	b := db.NewBatch()
	done := 0
	for from := uint64(0); done < n; {
		page, err := h.e.store.ReadStream(ctx, h.s.stream, from, false, 5000)
		if err == nil && len(page) == 0 && from > 0 {
			from = 0 // again from the start
			continue
		}
		if err != nil || len(page) == 0 {
			_ = db.Close()
			return nil, errors.Join(err, errors.New("the stream is empty"))
		}
		for _, ev := range page {
			if done == n {
				break
			}
			from = ev.Revision + 1
			rec := domain.AppendEventRecord(nil, &ev, ev.Revision)
			if err := b.Set(strconv.AppendUint(make([]byte, 0, 24), 1e12+uint64(done), 10), rec, nil); err != nil {
				_ = db.Close()
				return nil, err
			}
			done++
		}
		if b.Len() > 16<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				_ = db.Close()
				return nil, err
			}
			b = db.NewBatch()
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := db.Compact(ctx, []byte{0}, []byte{0xff}, true); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// rawScan reads every key and value of db once.
func rawScan(db *pebble.DB) (int, error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, err
	}
	n, sum := 0, 0
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return n, err
		}
		sum += len(it.Key()) + len(v)
		n++
	}
	runtime.KeepAlive(sum)
	return n, it.Close()
}

// BenchmarkRestoreHistory measures, in one run, the restore read of a whole
// day (the restore point opened, every item read with every version, every
// key version's material opened) at day 30 and at day 600 of one history
// (spec100k), against a raw Pebble scan of as many records and against the
// genesis replay of the instance's log up to that day, and the backup's
// storage against the raw log at both days; and the loader alone (the
// same read without opening key material) against the raw scan. It builds
// the history first (about 4 minutes on a 2-core machine); run it with
// -benchtime 1x (three alternating rounds are measured at least). Set
// KMSBACKUP_BENCH_DAYS to build fewer days (the last day is measured), and
// KMSBACKUP_BENCH_PLAN=1 to measure, at the last day (the only one still
// viewable: a plan refuses the others), PlanRestore --all alone, and the
// plan followed by the read (the day read as the restore-engine issue
// defines it; each loads the day, where a restore loads it once).
func BenchmarkRestoreHistory(b *testing.B) {
	days := 600
	if v, err := strconv.Atoi(os.Getenv("KMSBACKUP_BENCH_DAYS")); err == nil && v > 30 {
		days = v
	}
	spec := spec100k(days, 30, days)
	dir := filepath.Join(root, "history")
	h := buildHistory(b, dir, spec)
	defer func() { _ = h.e.close() }()
	if err := h.e.compact(); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d days of %d changes in %s (enabling, base 0 of %d items: %s); bases at checkpoints %v",
		days, spec.perDay, h.built.Round(time.Second), spec.keys+spec.secrets, h.enabled.Round(time.Millisecond), h.base)
	runHistoryRounds(b, h, []int{30, days}, os.Getenv("KMSBACKUP_BENCH_PLAN") == "1")
}

// historyPhase is one thing measured in rounds.
type historyPhase struct {
	name string
	run  func() error
	took []time.Duration
	peak uint64
}

func runHistoryRounds(b *testing.B, h *builtHistory, days []int, plan bool) {
	ctx := context.Background()
	target, err := h.e.KMS.CreateInstance(ctx, h.e.caller, commands.CreateInstanceInput{Region: "eu-bench-1", KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota})
	if err != nil {
		b.Fatal(err)
	}
	rs := h.e.Restores
	type perDay struct {
		items, versions, events  int
		raw                      *pebble.DB
		read, load, replay, scan *historyPhase
		plan, planned            *historyPhase
	}
	per := map[int]*perDay{}
	var phases []*historyPhase
	for _, d := range days {
		hd := h.days[d]
		p := &perDay{}
		per[d] = p
		p.read = &historyPhase{name: fmt.Sprintf("read@%d", d), run: func() (err error) {
			p.items, p.versions, err = readDay(ctx, h.e, h.backup, hd.date)
			return err
		}}
		p.load = &historyPhase{name: fmt.Sprintf("load@%d", d), run: func() error {
			_, _, err := loadDay(ctx, h.e, h.backup, hd.date, false)
			return err
		}}
		p.replay = &historyPhase{name: fmt.Sprintf("replay@%d", d), run: func() (err error) {
			p.events, err = h.genesisReplay(ctx, hd.endRevision)
			return err
		}}
		phases = append(phases, p.read, p.load, p.replay)
		if plan && d == days[len(days)-1] { // the earlier days are past the backup's viewable days: a plan refuses them
			planDay := func() error {
				pl, err := rs.PlanRestore(ctx, h.e.caller, commands.RestoreRequest{From: h.backup.ID, Point: commands.RestorePoint{Day: hd.date}, Selection: domain.SelectAll(), Target: target.ID}, nil)
				if err == nil && len(pl.Findings) > 0 {
					err = fmt.Errorf("plan: %+v", pl.Findings[0])
				}
				return err
			}
			p.plan = &historyPhase{name: fmt.Sprintf("plan@%d", d), run: planDay}
			p.planned = &historyPhase{name: fmt.Sprintf("plan+read@%d", d), run: func() error {
				if err := planDay(); err != nil {
					return err
				}
				_, _, err := readDay(ctx, h.e, h.backup, hd.date)
				return err
			}}
			phases = append(phases, p.plan, p.planned)
		}
	}
	// One read of each day first: the raw scans need their sizes.
	for _, d := range days {
		if err := per[d].read.run(); err != nil {
			b.Fatal(err)
		}
		raw, err := h.rawRecords(ctx, filepath.Join(root, fmt.Sprintf("raw-%d", d)), per[d].items+per[d].versions)
		if err != nil {
			b.Fatal(err)
		}
		defer raw.Close()
		per[d].raw = raw
		per[d].scan = &historyPhase{name: fmt.Sprintf("scan@%d", d), run: func() error {
			_, err := rawScan(raw)
			return err
		}}
		phases = append(phases, per[d].scan)
	}
	// KMSBACKUP_BENCH_CPUPROFILE: a profile of the rounds, each phase
	// labelled phase=<name> (go tool pprof -tagfocus phase=read@30 ...).
	stop := startCPUProfile(b)
	b.ResetTimer()
	for i := range max(b.N, 3) {
		for j := range phases {
			ph := phases[(i+j)%len(phases)] // rotate which goes first
			var took time.Duration
			var peak uint64
			var err error
			pprof.Do(ctx, pprof.Labels("phase", ph.name), func(context.Context) {
				took, peak, err = peakHeap(ph.run)
			})
			if err != nil {
				b.Fatalf("%s: %v", ph.name, err)
			}
			ph.took, ph.peak = append(ph.took, took), max(ph.peak, peak)
		}
	}
	b.StopTimer()
	stop()
	b.ReportMetric(0, "ns/op")
	first, last := days[0], days[len(days)-1]
	for _, d := range days {
		p := per[d]
		r, rp, sc, ld := medianDur(p.read.took), medianDur(p.replay.took), medianDur(p.scan.took), medianDur(p.load.took)
		b.ReportMetric(r.Seconds(), fmt.Sprintf("read@%d_s", d))
		b.ReportMetric(r.Seconds()/sc.Seconds(), fmt.Sprintf("read/scan@%d", d))
		b.ReportMetric(ld.Seconds()/sc.Seconds(), fmt.Sprintf("load/scan@%d", d))
		b.ReportMetric(r.Seconds()/rp.Seconds(), fmt.Sprintf("read/replay@%d", d))
		hd := h.days[d]
		b.Logf("day %d (%s): state %d items, %d versions (stock: %d, %d); restore read %s, peak heap %.1f MiB (the loader alone, no material opened: %s, peak %.1f MiB); raw scan of %d records %s; genesis replay of %d events %s, peak %.1f MiB",
			d, hd.date, p.items, p.versions, hd.items, hd.versions, r.Round(time.Millisecond), mib(float64(p.read.peak)), ld.Round(time.Millisecond), mib(float64(p.load.peak)),
			p.items+p.versions, sc.Round(time.Millisecond), p.events, rp.Round(time.Millisecond), mib(float64(p.replay.peak)))
		if p.planned != nil {
			pl, pr := medianDur(p.plan.took), medianDur(p.planned.took)
			b.ReportMetric(pl.Seconds(), fmt.Sprintf("plan@%d_s", d))
			b.ReportMetric(pr.Seconds()/sc.Seconds(), fmt.Sprintf("plan+read/scan@%d", d))
			b.Logf("  PlanRestore --all alone: %s, peak %.1f MiB; then the read (each loads the day): %s, peak %.1f MiB",
				pl.Round(time.Millisecond), mib(float64(p.plan.peak)), pr.Round(time.Millisecond), mib(float64(p.planned.peak)))
		}
		if u := h.usage[d]; u != nil {
			b.ReportMetric(float64(u.backup())/float64(u.log()), fmt.Sprintf("backup/log@%d", d))
			b.Logf("  storage: log %.1f MiB (%d events), backup %.1f MiB = %.2fx: slice and base blobs %.1f MiB (%d blobs), read model %s",
				mib(u.log()), u.kmsEvents, mib(u.backup()), float64(u.backup())/float64(u.log()), mib(u.blobs), u.slices, u.projParts())
		}
	}
	b.ReportMetric(medianDur(per[last].read.took).Seconds()/medianDur(per[first].read.took).Seconds(), fmt.Sprintf("read@%d/read@%d", last, first))
}

// TestHistorySmall keeps the history benchmark's code working under plain
// go test: a small history, its days read and compared.
func TestHistorySmall(t *testing.T) {
	spec := historySpec{keys: 900, secrets: 100, startVersions: 3, days: 6, perDay: 100, rotate: 0.5, remove: 0.25,
		measured: []int{2, 6}, rebase: domain.RebasePolicy{Beta: 0.1, MinEvents: 20}}
	h := buildHistory(t, t.TempDir(), spec)
	defer func() { _ = h.e.close() }()
	ctx := context.Background()
	if len(h.base) == 0 {
		t.Fatal("no base written after base 0")
	}
	for _, d := range []int{2, 6} {
		hd := h.days[d]
		items, versions, err := readDay(ctx, h.e, h.backup, hd.date)
		if err != nil {
			t.Fatal(err)
		}
		// The whole day holds the items of its end, and those deleted
		// during it.
		if items < hd.items || versions < hd.versions || items > hd.items+spec.perDay {
			t.Fatalf("day %d: read %d items, %d versions; the stock holds %d, %d", d, items, versions, hd.items, hd.versions)
		}
		events, err := h.genesisReplay(ctx, hd.endRevision)
		if err != nil || uint64(events) != hd.endRevision {
			t.Fatalf("genesis replay: %d events of %d, %v", events, hd.endRevision, err)
		}
	}
	if u := h.usage[6]; u == nil || u.backup() == 0 {
		t.Fatal("no storage measured at the last day")
	}
	rep, err := h.e.Checkpoints.VerifyBackup(ctx, h.e.caller, h.backup.ID)
	if err != nil || len(rep.Findings) > 0 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	_ = slices.Clone(h.base)
}
