package bench

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/kmsbackup/kmsbackup/adapters/backupfile"
	"github.com/kmsbackup/kmsbackup/adapters/clock"
	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/adapters/ids"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/adapters/scheduler"
	"github.com/kmsbackup/kmsbackup/adapters/softkms"
	kmsengine "github.com/kmsbackup/kmsbackup/cmd/engine"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// root holds the data directories of every engine of this test binary. The
// seal benchmarks share their engines across sub-benchmarks and -count
// runs (building a million keys takes a minute), so the directories
// outlive any one benchmark; TestMain removes them.
var root string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kmsbackup-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root = dir
	code := m.Run()
	closeSealStates()
	closeFileStates()
	closeScrubStates()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// The engine, assembled as the server and test/backup's NewEngine assemble
// it (cmd/engine): one Pebble store, envelope encryption, the software KMS,
// the projectors following the log, a manual clock and the manual
// scheduler.

type engine struct {
	*kmsengine.Engine // the use cases, made again at each open

	dir    string
	master []byte
	store  *pebblestore.Store       // the log, data keys and blobs
	proj   *pebblestore.Projections // the read models
	env    *envelope.Envelope
	clock  *clock.Manual
	ids    ids.Random
	driver *scheduler.Manual
	caller commands.Caller
	procs  []*commands.Projector
	cancel context.CancelFunc
	done   chan struct{}
}

func openEngine(dir string, start time.Time) (*engine, error) {
	master := make([]byte, 32)
	_, _ = crand.Read(master)
	clk := clock.NewManual(start)
	e := &engine{dir: dir, master: master, clock: clk, ids: ids.Random{Clock: clk},
		caller: commands.Caller{Account: domain.NewAccountID(ids.Random{Clock: clock.System{}}.NewULID())}}
	return e, e.open()
}

// open opens the store in e.dir and starts the projectors.
func (e *engine) open() error {
	st, err := pebblestore.Open(filepath.Join(e.dir, "db"), pebblestore.Options{})
	if err != nil {
		return err
	}
	proj, err := pebblestore.OpenProjections(filepath.Join(e.dir, "projections"), pebblestore.Options{}, st)
	if err != nil {
		_ = st.Close()
		return err
	}
	env, err := envelope.New(e.master, st)
	if err != nil {
		_ = proj.Close()
		_ = st.Close()
		return err
	}
	scratch, err := pebblestore.NewScratches(filepath.Join(e.dir, "scratch"), pebblestore.ScratchOptions{})
	if err != nil {
		_ = proj.Close()
		_ = st.Close()
		return err
	}
	e.store, e.proj, e.env = st, proj, env
	clk := e.clock
	eng := kmsengine.New(kmsengine.Ports{Log: st, ReadModels: proj, Blobs: st, Keys: env, Scratch: scratch,
		Files: backupfile.New(), Clock: clk, IDs: e.ids}, kmsengine.Options{})
	e.Engine, e.procs = eng, eng.Projectors()
	e.driver = &scheduler.Manual{Work: e.Schedule, Clock: clk}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan struct{})
	go func() {
		defer close(e.done)
		var wg sync.WaitGroup
		for _, p := range e.procs {
			wg.Go(func() { _ = p.Run(ctx) }) // a failure surfaces in WaitFor
		}
		wg.Wait()
	}()
	return e.settle(ctx)
}

// compact stops the engine, compacts its whole database with Pebble and
// opens it again: the state then sits in the LSM's last level, as in an
// engine that built it long ago, instead of in the memtables, flushable
// batches and level-0 files that a burst of writes just left behind (whose
// flushes and compactions would otherwise run during the measurements).
func (e *engine) compact() error {
	if err := e.close(); err != nil {
		return err
	}
	for _, sub := range []string{"db", "projections"} {
		if err := compactDir(filepath.Join(e.dir, sub)); err != nil {
			return err
		}
	}
	return e.open()
}

// compactDir compacts every key of the Pebble database in dir, which must
// exist.
func compactDir(dir string) error {
	o := storeOptions()
	o.ErrorIfNotExists = true
	db, err := pebble.Open(dir, o)
	if err != nil {
		return fmt.Errorf("compact %s: %w", dir, err)
	}
	err = db.Compact(context.Background(), []byte{0}, []byte{0xff}, true)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("compact %s: %w", dir, err)
	}
	return nil
}

// settle waits until every projector has applied the whole log.
func (e *engine) settle(ctx context.Context) error {
	head, err := e.store.Head(ctx)
	if err != nil {
		return err
	}
	for _, p := range e.procs {
		if err := p.WaitFor(ctx, head); err != nil {
			return err
		}
	}
	return nil
}

func (e *engine) close() error {
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	<-e.done
	e.cancel = nil
	return errors.Join(e.proj.Close(), e.store.Close())
}

// enableBackup creates a provisioned backup instance and enables it on
// instance in (UTC), which takes the first full backup at once: a copy of
// everything the instance's stream holds. Its term is three years, so that
// a 600-day history never reaches its expiry.
func (e *engine) enableBackup(ctx context.Context, in domain.InstanceID) (*domain.Backup, error) {
	b, err := e.Backups.CreateBackupInstance(ctx, e.caller, commands.CreateBackupInput{Region: region, ViewableDays: 30, Term: "3y"})
	if err != nil {
		return nil, err
	}
	return e.Backups.EnableBackupInstance(ctx, e.caller, b.ID, commands.EnableInput{KMSInstance: in, Alias: "bench", TimeZone: "UTC"})
}

const region = "cn-hangzhou"

// ---------------------------------------------------------------------------
// Key events written straight to the log. A million keys through
// KMS.CreateKey would take an fsync and three projection round trips each;
// keys appends the very events the KMS use cases append (same envelope,
// same payload, fresh key material sealed under the instance's data key and
// bound to account, stream and event ID), in large batches with an exact
// expected revision. Only the decision step is skipped: the events are
// valid by construction (it keeps its own model of the live keys).

type keys struct {
	e      *engine
	in     *domain.Instance
	stream string
	rev    uint64 // revision of the stream's last event

	ids      []domain.KeyID // every key ever created, by index
	versions []uint32       // versions of key i
	live     []int          // indexes of the live keys, in no order
	at       []int          // index of key i in live; -1 once deleted
	rng      *rand.Rand
	pending  []domain.Event
	dataSize int // sum of len(Data) of the events appended
}

func newKeys(e *engine, in *domain.Instance, seed uint64) *keys {
	return &keys{e: e, in: in, stream: domain.KMSStream(in.ID), rev: in.Revision, rng: rand.New(rand.NewPCG(seed, seed))}
}

func (k *keys) event(id domain.EventID, d domain.EventData) {
	e := domain.Event{ID: id, Stream: k.stream, Type: d.EventType(), Schema: domain.SchemaVersion,
		OccurredAt: k.e.clock.Now().UTC(), Account: k.in.Account, Region: k.in.Region, Instance: k.in.ID,
		Data: domain.EncodeData(d)}
	k.dataSize += len(e.Data)
	k.pending = append(k.pending, e)
}

// seal draws fresh key material and seals it for event id, as
// KMS.sealMaterial does.
func (k *keys) seal(ctx context.Context, id domain.EventID) (domain.Sealed, error) {
	m, err := softkms.Cipher{}.NewKeyMaterial()
	if err != nil {
		return nil, err
	}
	defer m.Wipe()
	return k.e.env.Seal(ctx, string(k.in.ID), m, domain.AssociatedData(k.in.Account, k.stream, id))
}

func (k *keys) create(ctx context.Context) error {
	eid := k.e.ids.NewULID()
	sealed, err := k.seal(ctx, eid)
	if err != nil {
		return err
	}
	i := len(k.ids)
	id := domain.NewKeyID(k.e.ids.NewULID())
	k.ids, k.versions, k.at = append(k.ids, id), append(k.versions, 1), append(k.at, len(k.live))
	k.live = append(k.live, i)
	k.event(eid, &domain.KeyCreated{Key: id, Description: fmt.Sprintf("bench key %07d", i), Spec: domain.KeySpecAES256, Material: sealed})
	return nil
}

func (k *keys) rotate(ctx context.Context, i int) error {
	eid := k.e.ids.NewULID()
	sealed, err := k.seal(ctx, eid)
	if err != nil {
		return err
	}
	k.versions[i]++
	k.event(eid, &domain.KeyRotated{Key: k.ids[i], Version: k.versions[i], Material: sealed})
	return nil
}

func (k *keys) remove(i int) {
	j, last := k.at[i], k.live[len(k.live)-1]
	k.live[j], k.at[last] = last, j
	k.live = k.live[:len(k.live)-1]
	k.at[i] = -1
	k.event(k.e.ids.NewULID(), &domain.KeyDeleted{Key: k.ids[i]})
}

func (k *keys) randomLive() int { return k.live[k.rng.IntN(len(k.live))] }

// flush appends the pending events, at most maxBatch per append.
func (k *keys) flush(ctx context.Context) error {
	const maxBatch = 5000
	for len(k.pending) > 0 {
		n := min(len(k.pending), maxBatch)
		res, err := k.e.store.Append(ctx, k.stream, domain.ExpectRevision(k.rev), k.pending[:n])
		if err != nil {
			return err
		}
		k.rev = res.LastRevision
		k.pending = k.pending[n:]
	}
	k.pending = nil
	return nil
}

// newInstance creates a KMS instance (through the use case) and fills it
// with n keys, created in batches a simulated second apart.
func newInstance(ctx context.Context, e *engine, n int, seed uint64) (*keys, error) {
	in, err := e.KMS.CreateInstance(ctx, e.caller, commands.CreateInstanceInput{Region: region, KeyQuota: domain.MaxQuota})
	if err != nil {
		return nil, err
	}
	k := newKeys(e, in, seed)
	for len(k.ids) < n {
		for range min(n-len(k.ids), 5000) {
			if err := k.create(ctx); err != nil {
				return nil, err
			}
		}
		if err := k.flush(ctx); err != nil {
			return nil, err
		}
		e.clock.Advance(time.Second)
	}
	return k, e.settle(ctx)
}

// ---------------------------------------------------------------------------
// Benchmark 1: the cost of an incremental checkpoint against the state.

// changesPerCheckpoint is how many key rotations each measured checkpoint
// seals, whatever the size of the state.
const changesPerCheckpoint = 100

// sealState is an engine whose backup holds n keys.
type sealState struct {
	n      int
	e      *engine
	k      *keys
	backup domain.BackupID
}

var (
	sealMu     sync.Mutex
	sealStates = map[int]*sealState{}
)

// sealStateOf returns the shared engine of n keys, building it the first
// time (untimed: b.Loop resets the timer).
func sealStateOf(tb testing.TB, n int) *sealState {
	tb.Helper()
	sealMu.Lock()
	defer sealMu.Unlock()
	if s, ok := sealStates[n]; ok {
		return s
	}
	start := time.Now()
	s, enable, err := buildSealState(context.Background(), filepath.Join(root, fmt.Sprintf("seal-%d", n)), n)
	if err != nil {
		tb.Fatalf("build a state of %d keys: %v", n, err)
	}
	tb.Logf("state of %d keys built in %s (first full backup, copying them: %s)", n, time.Since(start).Round(time.Millisecond), enable.Round(time.Millisecond))
	sealStates[n] = s
	return s
}

func closeSealStates() {
	sealMu.Lock()
	defer sealMu.Unlock()
	for n, s := range sealStates {
		_ = s.e.close()
		delete(sealStates, n)
	}
}

// buildSealState appends n KeyCreated events to a new instance's stream,
// then enables a backup on it, whose first full backup copies them (every
// key resealed under the backup's data key, stored as one slice, and
// projected into the backup's item table), and compacts the database (see
// engine.compact). It returns how long enabling took.
func buildSealState(ctx context.Context, dir string, n int) (*sealState, time.Duration, error) {
	e, err := openEngine(dir, time.Date(2026, 5, 1, 0, 1, 0, 0, time.UTC))
	if err != nil {
		return nil, 0, err
	}
	k, err := newInstance(ctx, e, n, uint64(n))
	if err != nil {
		_ = e.close()
		return nil, 0, err
	}
	start := time.Now()
	b, err := e.enableBackup(ctx, k.in.ID)
	if err != nil {
		_ = e.close()
		return nil, 0, err
	}
	took := time.Since(start)
	if b.NextRevision != k.rev+1 {
		_ = e.close()
		return nil, 0, fmt.Errorf("first full backup covers revisions up to %d, want %d", b.NextRevision, k.rev+1)
	}
	if err := e.compact(); err != nil {
		return nil, 0, err
	}
	return &sealState{n: n, e: e, k: k, backup: b.ID}, took, nil
}

// change rotates changesPerCheckpoint random keys a minute before the next
// checkpoint is due, moves the clock to it and waits until the engine is
// idle (every projector has applied the rotations). It returns the
// checkpoint due.
func (s *sealState) change(ctx context.Context) (domain.Due, error) {
	b, err := backupstate.Get(s.e.proj, s.backup)
	if err != nil {
		return domain.Due{}, err
	}
	due, ok := b.NextCheckpoint(time.UTC)
	if !ok {
		return domain.Due{}, errors.New("no checkpoint due")
	}
	s.e.clock.Set(due.At.Add(-time.Minute))
	for range changesPerCheckpoint {
		if err := s.k.rotate(ctx, s.k.randomLive()); err != nil {
			return domain.Due{}, err
		}
	}
	if err := s.k.flush(ctx); err != nil {
		return domain.Due{}, err
	}
	s.e.clock.Set(due.At)
	return due, s.e.settle(ctx)
}

// checkpoint takes the checkpoint due, as the scheduler does. It returns
// once the checkpoint is durable and both backup read models show it.
func (s *sealState) checkpoint(ctx context.Context, due domain.Due) error {
	c, err := s.e.Checkpoints.TakeCheckpoint(ctx, s.backup, due)
	if err != nil {
		return err
	}
	if c.Next-c.From != changesPerCheckpoint {
		return fmt.Errorf("checkpoint %d sealed %d events, want %d", c.Seq, c.Next-c.From, changesPerCheckpoint)
	}
	return nil
}

// BenchmarkSealIncremental measures one incremental checkpoint that seals
// the same 100 key rotations (random keys of the state) on a backup of 10k
// keys and on one of 1M keys: reading the slice from the log, resealing,
// storing the blob, appending the checkpoint and projecting it into the
// backup's item table, version records, day index and state digest. The
// rotations and the wait for the projectors to apply them are not timed.
//
// The "both" sub-benchmark alternates the two states in one run (which
// goes first alternates too, so that drift in the disk's fsync latency hits
// both alike) and reports the median time of each and their ratio.
//
// The two engines are built once per test binary and shared by the
// sub-benchmarks and -count runs. The 1M state's cost grows with the
// rotations it has absorbed since it was compacted (docs/BENCHMARKS.md
// explains why), so the ratio depends on what ran before it: compare runs
// of the same command.
func BenchmarkSealIncremental(b *testing.B) {
	ctx := context.Background()
	sizes := []struct {
		name string
		n    int
	}{{"state=10k", 10_000}, {"state=1M", 1_000_000}}
	for _, size := range sizes {
		b.Run(size.name, func(b *testing.B) {
			s := sealStateOf(b, size.n)
			for b.Loop() {
				b.StopTimer()
				due, err := s.change(ctx)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := s.checkpoint(ctx, due); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(changesPerCheckpoint, "rotations/op")
		})
	}
	b.Run("both", func(b *testing.B) {
		states := [2]*sealState{sealStateOf(b, sizes[0].n), sealStateOf(b, sizes[1].n)}
		var took [2][]float64
		i := 0
		for b.Loop() {
			for j := range 2 {
				s := states[(i+j)%2]
				b.StopTimer()
				due, err := s.change(ctx)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				if err := s.checkpoint(ctx, due); err != nil {
					b.Fatal(err)
				}
				took[(i+j)%2] = append(took[(i+j)%2], float64(time.Since(start).Nanoseconds()))
			}
			i++
		}
		small, large := median(took[0]), median(took[1])
		b.ReportMetric(small, "ns/cp@10k")
		b.ReportMetric(large, "ns/cp@1M")
		b.ReportMetric(large/small, "ratio_1M_over_10k")
		b.ReportMetric(mean(took[1])/mean(took[0]), "mean_ratio")
	})
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mean(xs []float64) float64 {
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return t / float64(max(len(xs), 1))
}

// ---------------------------------------------------------------------------
// Benchmark 2: the storage of a month of daily churn.

// churn describes a history: keys to start with, then days of changes.
type churn struct {
	keys int
	days int
	// perDay changes a day: 70% rotations of random live keys, the rest
	// pairs of one deletion and one creation (so that the instance stays
	// within its quota), in random order, spread evenly over the day's
	// 288 five-minute windows.
	perDay int
}

// usage is what a history costs at one point, in bytes of keys plus values
// as Pebble holds them: the logical size, before compression. The disk*
// fields are Pebble's on-disk estimates after compacting everything.
type usage struct {
	kmsEvents  int   // events of the KMS stream
	payload    int64 // the sum of their len(Data)
	logRecords int64 // their log records ('L' position -> record)
	logIndex   int64 // their event-ID index ('I') and stream runs ('S')

	checkpoints int            // checkpoint events in the backup's stream
	chain       int64          // the backup stream's records and indexes
	slices      int            // slice blobs
	blobs       int64          // their keys and values ('B' <ref>), headers included
	proj        map[byte]int64 // the backup's projection ("bkd/<ref>\0<part>"), by part
	projKeys    map[byte]int   // how many keys each part has
	projMeta    int64          // the backup's meta record
	kmsState    int64          // the KMS's own read model, for comparison

	diskBlobs, diskProj, diskLog uint64 // on disk; diskLog is all of 'L'
}

func (u *usage) log() int64 { return u.logRecords + u.logIndex }

func (u *usage) backup() int64 {
	t := u.blobs + u.projMeta
	for _, v := range u.proj {
		t += v
	}
	return t
}

// projParts describes the backup's read model by part: item rows, live
// index, day index, checkpoint summaries, day records, bases.
func (u *usage) projParts() string {
	out := ""
	for _, p := range []struct {
		b    byte
		name string
	}{{'i', "rows"}, {'l', "live index"}, {'d', "day index"}, {'c', "summaries"}, {'f', "day records"}, {'b', "bases"}} {
		if out != "" {
			out += ", "
		}
		out += fmt.Sprintf("%s %.1f MiB (%d x %.0f B)", p.name, mib(u.proj[p.b]), u.projKeys[p.b], u.perKey(p.b))
	}
	return out
}

// perKey is the mean size of a key and its value in one part of the
// backup's projection.
func (u *usage) perKey(part byte) float64 {
	return float64(u.proj[part]) / float64(max(u.projKeys[part], 1))
}

// churnResult is the usage once the first daily full is taken (the
// baseline) and at the end, and what storing every daily full as a
// complete copy of the state would take instead.
type churnResult struct {
	c          churn
	start, end *usage
	// Each day's full holds fullItems live items (summed over the days)
	// with fullVersions versions in all. A design storing every daily full
	// as a complete copy would store, each day, one row and one live-index
	// entry per live item and every version of it; fullCopies prices that
	// at the mean record sizes of this backup's projection.
	fullDays                int
	fullItems, fullVersions int64
	fullCopies              int64
	verified, sealed        int // checkpoints and key versions verify checked
}

// runChurn builds the history in dir and measures it.
func runChurn(tb testing.TB, dir string, c churn) *churnResult {
	tb.Helper()
	ctx := context.Background()
	// The keys are created during the evening before day 1; the backup is
	// enabled at 23:50 (its first full copies them) and day 1 starts with
	// the scheduled full at 00:00.
	day1 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	e, err := openEngine(dir, day1.Add(-4*time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = e.close() }()
	k, err := newInstance(ctx, e, c.keys, 1)
	if err != nil {
		tb.Fatal(err)
	}
	e.clock.Set(day1.Add(-10 * time.Minute))
	b, err := e.enableBackup(ctx, k.in.ID)
	if err != nil {
		tb.Fatal(err)
	}
	if _, _, err := e.driver.Advance(ctx, 10*time.Minute); err != nil { // the first daily full
		tb.Fatal(err)
	}
	r := &churnResult{c: c}
	if r.start, err = e.measure(ctx, k, b); err != nil {
		tb.Fatal(err)
	}

	const windows = 24 * 12
	const window = 5 * time.Minute
	for d := range c.days {
		dayStart := day1.Add(time.Duration(d) * 24 * time.Hour)
		// The day's full (at 00:00, just taken) holds this state.
		r.fullDays++
		r.fullItems += int64(len(k.live))
		for _, i := range k.live {
			r.fullVersions += int64(k.versions[i])
		}
		// The day's changes: rotations and (delete, create) pairs.
		rot := c.perDay * 7 / 10
		ops := make([]byte, 0, c.perDay)
		for range rot {
			ops = append(ops, 'r')
		}
		for range (c.perDay - rot) / 2 {
			ops = append(ops, 'p')
		}
		k.rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
		next := 0
		for w := range windows {
			// This window's share of the day's changes, a minute into it.
			if end := (w + 1) * len(ops) / windows; next < end {
				e.clock.Set(dayStart.Add(time.Duration(w)*window + time.Minute))
				for ; next < end; next++ {
					if ops[next] == 'r' {
						err = k.rotate(ctx, k.randomLive())
					} else {
						k.remove(k.randomLive())
						err = k.create(ctx)
					}
					if err != nil {
						tb.Fatal(err)
					}
				}
				if err := k.flush(ctx); err != nil {
					tb.Fatal(err)
				}
			}
			// The scheduler takes the incremental at the end of the
			// window (at midnight, the next day's full).
			if _, _, err := e.driver.Advance(ctx, dayStart.Add(time.Duration(w+1)*window).Sub(e.clock.Now())); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := e.settle(ctx); err != nil {
		tb.Fatal(err)
	}
	rep, err := e.Checkpoints.VerifyBackup(ctx, e.caller, b.ID)
	if err != nil {
		tb.Fatal(err)
	}
	if len(rep.Findings) != 0 {
		tb.Fatalf("verify: %d findings, first: %+v", len(rep.Findings), rep.Findings[0])
	}
	r.verified, r.sealed = rep.Checkpoints, rep.Sealed
	if r.end, err = e.measure(ctx, k, b); err != nil {
		tb.Fatal(err)
	}
	u := r.end
	r.fullCopies = int64(float64(r.fullItems)*(u.perKey('i')+u.perKey('l')) + float64(r.fullVersions)*u.perKey('v'))
	return r
}

// measure stops the engine, measures the history so far and starts the
// engine again.
func (e *engine) measure(ctx context.Context, k *keys, b *domain.Backup) (*usage, error) {
	if err := e.settle(ctx); err != nil {
		return nil, err
	}
	kmsPos, err := positions(ctx, e.store, k.stream)
	if err != nil {
		return nil, err
	}
	backupStream := domain.BackupStream(b.ID)
	chainPos, err := positions(ctx, e.store, backupStream)
	if err != nil {
		return nil, err
	}
	if err := e.close(); err != nil {
		return nil, err
	}
	u := &usage{kmsEvents: len(kmsPos), payload: int64(k.dataSize), proj: map[byte]int64{}, projKeys: map[byte]int{}}
	if err := u.scan(e.dir, b, k.stream, backupStream, kmsPos, chainPos); err != nil {
		return nil, err
	}
	return u, e.open()
}

// positions returns the log positions of a stream's events.
func positions(ctx context.Context, st *pebblestore.Store, stream string) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	for from := uint64(0); ; {
		page, err := st.ReadStream(ctx, stream, from, false, 5000)
		if err != nil {
			return nil, err
		}
		for _, ev := range page {
			out[ev.Position] = true
			from = ev.Revision + 1
		}
		if len(page) < 5000 {
			return out, nil
		}
	}
}

// scan opens the closed engine's two databases (db/, the log store, and
// projections/) with Pebble itself and adds up key and value sizes by
// namespace (the layout of pebblestore's keys.go and blobs.go: 'L' position
// -> record, 'I' event ID -> position, 'S' stream runs, 'B'
// ref\0name\0[chunk] blobs, 'P' projection keys), then compacts
// everything and asks Pebble for on-disk estimates of the ranges.
func (u *usage) scan(dir string, b *domain.Backup, kmsStream, backupStream string, kmsPos, chainPos map[uint64]bool) error {
	logDB, err := pebble.Open(filepath.Join(dir, "db"), storeOptions())
	if err != nil {
		return err
	}
	defer logDB.Close()
	projDB, err := pebble.Open(filepath.Join(dir, "projections"), storeOptions())
	if err != nil {
		return err
	}
	defer projDB.Close()
	ref := b.DataRef()
	blobPrefix := append(append([]byte{'B'}, ref...), 0)
	projPrefix := append([]byte("P"), backupdata.GenerationPrefix(ref)...)
	metaKey := append([]byte("P"), backupdata.MetaKey(b.ID)...)
	kmsPrefix := []byte("Pkms/")
	for _, db := range []*pebble.DB{logDB, projDB} {
		if err := u.scanDB(db, kmsStream, backupStream, kmsPos, chainPos, blobPrefix, projPrefix, metaKey, kmsPrefix); err != nil {
			return err
		}
	}
	u.checkpoints = u.projKeys['c']
	for _, db := range []*pebble.DB{logDB, projDB} {
		if err := db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
			return err
		}
	}
	if u.diskBlobs, err = logDB.EstimateDiskUsage(blobPrefix, prefixEnd(blobPrefix)); err != nil {
		return err
	}
	if u.diskProj, err = projDB.EstimateDiskUsage(projPrefix, prefixEnd(projPrefix)); err != nil {
		return err
	}
	u.diskLog, err = logDB.EstimateDiskUsage([]byte{'L'}, []byte{'L' + 1})
	return err
}

// scanDB adds up the key and value sizes of one database (see scan).
func (u *usage) scanDB(db *pebble.DB, kmsStream, backupStream string, kmsPos, chainPos map[uint64]bool, blobPrefix, projPrefix, metaKey, kmsPrefix []byte) error {
	it, err := db.NewIter(nil)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return err
		}
		size := int64(len(key) + len(v))
		switch key[0] {
		case 'L':
			pos := binary.BigEndian.Uint64(key[1:])
			if kmsPos[pos] {
				u.logRecords += size
			} else if chainPos[pos] {
				u.chain += size
			}
		case 'I':
			pos := binary.BigEndian.Uint64(v)
			if kmsPos[pos] {
				u.logIndex += size
			} else if chainPos[pos] {
				u.chain += size
			}
		case 'S':
			n, w := binary.Uvarint(key[1:])
			switch string(key[1+w : 1+w+int(n)]) {
			case kmsStream:
				u.logIndex += size
			case backupStream:
				u.chain += size
			}
		case 'B':
			if hasPrefix(key, blobPrefix) {
				u.blobs += size
				// A header key ends its name with 0x00; chunk keys
				// add a 4-byte index.
				if name := key[len(blobPrefix):]; bytes.IndexByte(name, 0) == len(name)-1 {
					u.slices++
				}
			}
		case 'P':
			switch {
			case hasPrefix(key, projPrefix):
				u.proj[key[len(projPrefix)]] += size
				u.projKeys[key[len(projPrefix)]]++
			case string(key) == string(metaKey):
				u.projMeta += size
			case hasPrefix(key, kmsPrefix):
				u.kmsState += size
			}
		}
	}
	return it.Close()
}

// prefixEnd is the first key after every key with prefix p (p is never
// all 0xff bytes here).
func prefixEnd(p []byte) []byte {
	end := slices.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// storeOptions are the Pebble options of pebblestore.pebbleOptions that
// shape what is written (format, 64 MiB memtables, bloom filters on every
// level), so that what a compaction here writes is what the store writes.
func storeOptions() *pebble.Options {
	o := &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: quiet{}, MemTableSize: 64 << 20}
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return o
}

// quiet drops Pebble's informational messages.
type quiet struct{}

func (quiet) Infof(string, ...any)              {}
func (quiet) Errorf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (quiet) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func hasPrefix(b, p []byte) bool { return len(b) >= len(p) && string(b[:len(p)]) == string(p) }

func mib[T int64 | uint64 | float64](n T) float64 { return float64(n) / (1 << 20) }

// BenchmarkBackupStorage builds 100k keys, enables a backup (its first full
// copies them), then runs 30 days of 1% daily churn with the schedule
// running (a full at 00:00, an incremental every 5 minutes, the changes
// spread over the day), and reports the bytes the backup holds against the
// raw log of the same history, and against storing every daily full as a
// complete copy. One iteration takes about a minute and a half: run it
// with -benchtime 1x (a time-based -benchtime also runs it once, since one
// iteration outlasts it).
func BenchmarkBackupStorage(b *testing.B) {
	c := churn{keys: 100_000, days: 30, perDay: 1000}
	var r *churnResult
	n := 0
	for b.Loop() {
		dir := filepath.Join(root, fmt.Sprintf("storage-%d", n))
		r = runChurn(b, dir, c)
		_ = os.RemoveAll(dir)
		n++
	}
	r.report(b)
}

func (r *churnResult) report(b *testing.B) {
	s, u := r.start, r.end
	days := float64(r.c.days)
	b.ReportMetric(0, "ns/op") // the time of building the history means nothing
	b.ReportMetric(mib(u.log()), "log-MiB")
	b.ReportMetric(mib(u.backup()), "backup-MiB")
	b.ReportMetric(float64(u.backup())/float64(u.log()), "backup/log")
	b.ReportMetric(mib(float64(u.backup()-s.backup())/days), "backup-MiB/day")
	b.ReportMetric(mib(float64(u.log()-s.log())/days), "log-MiB/day")
	b.ReportMetric(mib(r.fullCopies), "fullcopies-MiB")
	b.ReportMetric(float64(r.fullCopies)/float64(u.backup()), "fullcopies/backup")
	b.Logf("log: %d KMS events (payloads %.1f MiB): records %.1f + event-ID index and stream runs %.1f = %.1f MiB (at the first daily full: %.1f MiB)",
		u.kmsEvents, mib(u.payload), mib(u.logRecords), mib(u.logIndex), mib(u.log()), mib(s.log()))
	b.Logf("backup: %.1f MiB = %.2fx the log (at the first daily full: %.1f MiB); %d checkpoints, %d slices; verify checked %d checkpoints, %d key versions",
		mib(u.backup()), float64(u.backup())/float64(u.log()), mib(s.backup()), u.checkpoints, u.slices, r.verified, r.sealed)
	part := func(p byte) string {
		return fmt.Sprintf("%.1f MiB (%d x %.0f B)", mib(u.proj[p]), u.projKeys[p], u.perKey(p))
	}
	b.Logf("  slice blobs %.1f MiB; item rows %s; live index %s; versions %s", mib(u.blobs), part('i'), part('l'), part('v'))
	b.Logf("  day index %s; checkpoint summaries %s; day records %s; plus the checkpoint chain in the log: %.1f MiB",
		part('d'), part('c'), part('f'), mib(u.chain))
	b.Logf("growth a day: log %.2f MiB, backup %.2f MiB", mib(float64(u.log()-s.log())/days), mib(float64(u.backup()-s.backup())/days))
	b.Logf("every daily full as a complete copy: %d days, %d items and %d versions: %.0f MiB = %.1fx this backup, %.1fx the log",
		r.fullDays, r.fullItems, r.fullVersions, mib(r.fullCopies), float64(r.fullCopies)/float64(u.backup()), float64(r.fullCopies)/float64(u.log()))
	b.Logf("on disk after a full compaction: slice blobs %.1f MiB, projection %.1f MiB, whole log ('L') %.1f MiB; the KMS's own read model: %.1f MiB",
		mib(u.diskBlobs), mib(u.diskProj), mib(u.diskLog), mib(u.kmsState))
}

// ---------------------------------------------------------------------------
// A small run of both scenarios, so that plain go test keeps this code
// working.

func TestScenariosSmall(t *testing.T) {
	ctx := context.Background()
	s, _, err := buildSealState(ctx, t.TempDir(), 500)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.e.close() }()
	for range 3 {
		due, err := s.change(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.checkpoint(ctx, due); err != nil {
			t.Fatal(err)
		}
	}

	r := runChurn(t, t.TempDir(), churn{keys: 1000, days: 1, perDay: 100})
	u := r.end
	if u.kmsEvents != 1+1000+100 || u.blobs == 0 || u.proj['i'] == 0 || u.logRecords == 0 || r.start.backup() >= u.backup() {
		t.Fatalf("usage: %+v", u)
	}
	// The first full at enable (23:50), an incremental at 23:55, then a
	// full at every 00:00 and an incremental every 5 minutes in between.
	if u.checkpoints != 1+1+1+288 || r.verified != u.checkpoints || r.sealed != 1000+70+15 || r.fullDays != 1 || r.fullItems != 1000 {
		t.Fatalf("%d checkpoints (%d verified), %d versions verified, result %+v", u.checkpoints, r.verified, r.sealed, r)
	}
}
