package bench

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/adapters/backupfile"
	"github.com/kmsbackup/kmsbackup/adapters/clock"
	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/adapters/ids"
	"github.com/kmsbackup/kmsbackup/adapters/natsjs"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/adapters/scheduler"
	kmsengine "github.com/kmsbackup/kmsbackup/cmd/engine"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// ---------------------------------------------------------------------------
// Ingest into the event log: the embedded Pebble store beside NATS
// JetStream on one server and on a cluster of 3 servers with 3 replicas
// (real servers in this process, test/natsserver, which fsync every write
// before acknowledging it), in one run:
//
//	go test -run '^$' -bench Ingest -benchtime 2s ./test/bench/
//
// BenchmarkIngest appends to each log directly (appends, then catch-up
// reads and a projection rebuild); BenchmarkIngestUseCases goes through the
// KMS use cases of an engine wired on each log. docs/BENCHMARKS.md
// ("Ingest: NATS JetStream beside Pebble") has the results.

// The event logs compared.
const (
	logPebble = "pebble"
	// logJetStream is a JetStream log on one server (one replica).
	logJetStream = "jetstream"
	// logJetStream3 is a JetStream log on a cluster of 3 servers with 3
	// replicas: the log, the blob store and the key store.
	logJetStream3 = "jetstream-r3"
)

// logKinds are the logs most benchmarks compare; the appends, the use
// cases and the checkpoints add the replicated one (replicatedKinds).
var (
	logKinds        = []string{logPebble, logJetStream}
	replicatedKinds = []string{logPebble, logJetStream, logJetStream3}
)

// natsURLs are the NATS servers of a benchmark: one server, and a cluster
// of 3 ("" when the benchmark starts none).
type natsURLs struct{ one, three string }

// startNATS starts one server, and with cluster a cluster of 3 too; they
// stop when b ends.
func startNATS(b *testing.B, cluster bool) natsURLs {
	one, _ := natsserver.Start(b)
	u := natsURLs{one: one}
	if cluster {
		u.three = natsserver.StartCluster(b, 3).URL()
	}
	return u
}

// of returns the URL of the servers a JetStream log of kind lives on and
// the replicas of its streams.
func (u natsURLs) of(kind string) (string, int) {
	if kind == logJetStream3 {
		return u.three, 3
	}
	return u.one, 1
}

// onJetStream reports whether a log of kind is on JetStream.
func onJetStream(kind string) bool { return kind != logPebble }

// ratioTo reports rate over the rate of Pebble in the same run, as
// "<kind>/pebble", for the JetStream kinds.
func ratioTo(b *testing.B, kind string, rate, pebbleRate float64) {
	if onJetStream(kind) && pebbleRate > 0 {
		b.ReportMetric(rate/pebbleRate, kind+"/pebble")
	}
}

// quietLogger drops the adapters' connection messages.
var quietLogger = slog.New(slog.DiscardHandler)

// jsSeq numbers the JetStream streams and buckets of this test binary, so
// that every log opened on a shared server is a fresh one.
var jsSeq atomic.Int64

func jsLogOptions(replicas int) natsjs.Options {
	n := jsSeq.Add(1)
	return natsjs.Options{Stream: fmt.Sprintf("BENCH_LOG_%d", n), SubjectPrefix: fmt.Sprintf("bench.log%d", n),
		Replicas: replicas, Logger: quietLogger}
}

// benchLog is an event log opened for a benchmark.
type benchLog struct {
	kind   string
	log    commands.EventLog
	dir    string // pebble: the store's directory
	url    string // jetstream: the server
	stream string // jetstream: the stream holding the log
}

// openBenchLog opens a fresh, empty log of kind (on its servers of urls
// for JetStream) and closes it when tb ends.
func openBenchLog(tb testing.TB, kind string, urls natsURLs) *benchLog {
	tb.Helper()
	l, err := newBenchLog(context.Background(), kind, urls, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.log.Close() })
	return l
}

// newBenchLog opens a fresh, empty log of kind; a Pebble store lives in
// dir. The caller closes it.
func newBenchLog(ctx context.Context, kind string, urls natsURLs, dir string) (*benchLog, error) {
	if !onJetStream(kind) {
		st, err := pebblestore.Open(dir, pebblestore.Options{Logger: quietLogger})
		if err != nil {
			return nil, err
		}
		return &benchLog{kind: kind, log: st, dir: dir}, nil
	}
	url, replicas := urls.of(kind)
	opts := jsLogOptions(replicas)
	l, err := natsjs.Open(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	return &benchLog{kind: kind, log: l, url: url, stream: opts.Stream}, nil
}

// streamBytes returns the bytes and messages JetStream holds for stream
// (its file store's accounting: every message with its subject, headers
// and framing).
func streamBytes(ctx context.Context, url, stream string) (bytes, msgs uint64, err error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, err
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return info.State.Bytes, info.State.Msgs, nil
}

// ---------------------------------------------------------------------------
// KMS events as the KMS appends them.

// ingestEpoch is when the generated events occur.
var ingestEpoch = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// eventGen draws the events of one KMS instance's stream: KeyCreated with
// a description and 65 bytes of sealed key material (the envelope's 5-byte
// header, 12-byte nonce, 32-byte key and 16-byte tag), in the envelope the
// KMS gives them, with ULIDs whose time follows a clock (about 8 events a
// millisecond), as in production.
type eventGen struct {
	stream  string
	account domain.AccountID
	inst    domain.InstanceID
	rng     *rand.ChaCha8
	ms      uint64
	n       int
}

func newEventGen(i int) *eventGen {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(i)+1)
	rng := rand.NewChaCha8(seed)
	ms := ulid.Timestamp(ingestEpoch)
	inst := domain.NewInstanceID(ulid.MustNew(ms, rng))
	return &eventGen{stream: domain.KMSStream(inst), account: domain.NewAccountID(ulid.MustNew(ms, rng)), inst: inst, rng: rng, ms: ms}
}

func (g *eventGen) next() domain.Event {
	g.n++
	if g.n%8 == 0 {
		g.ms++
	}
	material := make(domain.Sealed, envelope.MinSealedLen+32)
	_, _ = g.rng.Read(material)
	d := &domain.KeyCreated{Key: domain.NewKeyID(ulid.MustNew(g.ms, g.rng)), Description: fmt.Sprintf("bench key %07d", g.n),
		Spec: domain.KeySpecAES256, Material: material}
	return domain.Event{ID: ulid.MustNew(g.ms, g.rng), Stream: g.stream, Type: d.EventType(), Schema: domain.SchemaVersion,
		OccurredAt: time.UnixMilli(int64(g.ms)).UTC(), Account: g.account, Region: region, Instance: g.inst,
		Data: domain.EncodeData(d)}
}

// appendAll has one goroutine per generator append batches batches of
// batch events to its own stream, each with an exact expected revision,
// and returns the elapsed time. With a pause, each goroutine sleeps that
// long after each append, and the time returned is the longest any
// goroutine spent in Append.
func appendAll(ctx context.Context, l commands.EventAppender, gens []*eventGen, batches, batch int, pause time.Duration) (time.Duration, error) {
	var wg sync.WaitGroup
	errs := make([]error, len(gens))
	busy := make([]time.Duration, len(gens))
	start := time.Now()
	for a, g := range gens {
		wg.Go(func() {
			exp := domain.ExpectNoStream
			evs := make([]domain.Event, batch)
			for range batches {
				for j := range evs {
					evs[j] = g.next()
				}
				t0 := time.Now()
				res, err := l.Append(ctx, g.stream, exp, evs)
				busy[a] += time.Since(t0)
				if err != nil {
					errs[a] = err
					return
				}
				exp = domain.ExpectRevision(res.LastRevision)
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if pause > 0 {
		took = slices.Max(busy)
	}
	return took, errors.Join(errs...)
}

// ---------------------------------------------------------------------------
// BenchmarkIngest.

// ingestShape is one shape of appends: concurrent appenders, each on its
// own stream (as many KMS instances write), events per append, and a pause
// after each append (0: back to back).
type ingestShape struct {
	appenders, batch int
	pause            time.Duration
}

func (s ingestShape) String() string {
	if s.pause > 0 {
		return fmt.Sprintf("appenders=%d/batch=%d/pause=%s", s.appenders, s.batch, s.pause)
	}
	return fmt.Sprintf("appenders=%d/batch=%d", s.appenders, s.batch)
}

// readEvents is the size of the log that the catch-up reads read.
const readEvents = 100_000

// BenchmarkIngest measures the event log alone, Pebble beside JetStream:
//
//   - appends of b.N events in four shapes: single events from one
//     goroutine, back to back and with a 5 ms pause after each append (a
//     writer that leaves the log idle between appends; its events/s counts
//     only the time spent in Append), single events from 16 goroutines on
//     16 streams, and batches of 100 from one goroutine (events/s, and the
//     mean time of one append as its caller waits for it); each shape runs
//     log=pebble, then log=jetstream (one server) and log=jetstream-r3 (3
//     servers, 3 replicas), which also report their rate over the pebble
//     rate of the same run;
//   - reading a log of readEvents events from the start, with ReadAll in
//     pages of 1000 and with a catch-up subscription (events/s, and the
//     bytes each log holds per event);
//   - rebuilding a node's projections (kmsstate, backupstate, backupdata,
//     audit, as the server runs them) from each log into an empty Pebble
//     store: see benchRebuild.
func BenchmarkIngest(b *testing.B) {
	urls := startNATS(b, true)
	ctx := context.Background()
	for _, shape := range []ingestShape{{1, 1, 0}, {1, 1, 5 * time.Millisecond}, {16, 1, 0}, {1, 100, 0}} {
		b.Run(shape.String(), func(b *testing.B) {
			var pebbleRate float64
			for _, kind := range replicatedKinds {
				b.Run("log="+kind, func(b *testing.B) {
					l := openBenchLog(b, kind, urls)
					gens := make([]*eventGen, shape.appenders)
					for a := range gens {
						gens[a] = newEventGen(a)
					}
					per := shape.appenders * shape.batch
					batches := (b.N + per - 1) / per
					b.ResetTimer()
					took, err := appendAll(ctx, l.log, gens, batches, shape.batch, shape.pause)
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					rate := float64(batches*per) / took.Seconds()
					b.ReportMetric(rate, "events/s")
					b.ReportMetric(float64(took.Microseconds())/1000/float64(batches), "ms/append")
					b.ReportMetric(float64(len(gens[0].next().Data)), "payload-B/event")
					if kind == logPebble {
						pebbleRate = rate
					}
					ratioTo(b, kind, rate, pebbleRate)
				})
			}
		})
	}

	// The logs the reads read, filled once.
	readLogs := map[string]*filledLog{}
	readLog := func(b *testing.B, kind string) *filledLog {
		if l, ok := readLogs[kind]; ok {
			return l
		}
		l, err := fillReadLog(ctx, b, kind, urls)
		if err != nil {
			b.Fatal(err)
		}
		readLogs[kind] = l
		return l
	}
	defer func() {
		for _, l := range readLogs {
			_ = l.log.Close()
		}
	}()
	for _, mode := range []string{"ReadAll", "Subscribe"} {
		b.Run("read="+mode, func(b *testing.B) {
			var pebbleRate float64
			for _, kind := range logKinds {
				b.Run("log="+kind, func(b *testing.B) {
					l := readLog(b, kind)
					read := readAllPages
					if mode == "Subscribe" {
						read = readSubscription
					}
					b.ResetTimer()
					for range b.N {
						if err := read(ctx, l.log, readEvents); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					rate := float64(b.N*readEvents) / b.Elapsed().Seconds()
					b.ReportMetric(rate, "events/s")
					b.ReportMetric(l.bytesPerEvent, "stored-B/event")
					if kind == logPebble {
						pebbleRate = rate
					}
					ratioTo(b, kind, rate, pebbleRate)
				})
			}
		})
	}

	benchRebuild(b, urls)
}

// filledLog is a log holding readEvents events, and what it stores per event.
type filledLog struct {
	*benchLog
	bytesPerEvent float64
}

// fillReadLog opens a log of kind under the package's root directory
// (outliving the sub-benchmark that fills it) and appends readEvents events
// to it from 4 goroutines in batches of 500 (the most a JetStream append
// takes). A Pebble store is then closed, its keys and values added up
// (the log's records, event-ID index and stream index: the logical size,
// before compression) and opened again; JetStream tells its stream's bytes.
func fillReadLog(ctx context.Context, b *testing.B, kind string, urls natsURLs) (*filledLog, error) {
	dir, err := os.MkdirTemp(root, "read-"+kind+"-")
	if err != nil {
		return nil, err
	}
	l, err := newBenchLog(ctx, kind, urls, dir)
	if err != nil {
		return nil, err
	}
	const appenders, batch = 4, 500
	gens := make([]*eventGen, appenders)
	for a := range gens {
		gens[a] = newEventGen(100 + a)
	}
	start := time.Now()
	if _, err := appendAll(ctx, l.log, gens, readEvents/(appenders*batch), batch, 0); err != nil {
		_ = l.log.Close()
		return nil, err
	}
	f := &filledLog{benchLog: l}
	switch {
	case !onJetStream(kind):
		if err := l.log.Close(); err != nil {
			return nil, err
		}
		size, err := pebbleLogBytes(dir)
		if err != nil {
			return nil, err
		}
		f.bytesPerEvent = float64(size) / readEvents
		if l.log, err = pebblestore.Open(dir, pebblestore.Options{Logger: quietLogger}); err != nil {
			return nil, err
		}
	default:
		size, msgs, err := streamBytes(ctx, l.url, l.stream)
		if err != nil {
			_ = l.log.Close()
			return nil, err
		}
		f.bytesPerEvent = float64(size) / readEvents
		b.Logf("jetstream read log: %d messages (events and their ID markers), %d bytes", msgs, size)
	}
	b.Logf("%s: %d events appended in %s (%.0f stored bytes per event)", kind, readEvents, time.Since(start).Round(time.Millisecond), f.bytesPerEvent)
	return f, nil
}

// pebbleLogBytes adds up the keys and values of a closed store's log: its
// records ('L'), event-ID index ('I') and stream index ('S').
func pebbleLogBytes(dir string) (int64, error) {
	db, err := pebble.Open(dir, storeOptions())
	if err != nil {
		return 0, err
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, err
	}
	var n int64
	for ok := it.First(); ok; ok = it.Next() {
		switch it.Key()[0] {
		case 'L', 'I', 'S':
			v, err := it.ValueAndErr()
			if err != nil {
				_ = it.Close()
				return 0, err
			}
			n += int64(len(it.Key()) + len(v))
		}
	}
	return n, it.Close()
}

// readAllPages reads want events from the start of the log with ReadAll in
// pages of 1000.
func readAllPages(ctx context.Context, l commands.EventLog, want int) error {
	n, after := 0, uint64(0)
	for n < want {
		page, err := l.ReadAll(ctx, after, 1000)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return fmt.Errorf("read %d events, want %d", n, want)
		}
		n += len(page)
		after = page[len(page)-1].Position
	}
	return nil
}

// readSubscription reads want events from the start of the log through a
// catch-up subscription, as a projector does.
func readSubscription(ctx context.Context, l commands.EventLog, want int) error {
	sub, err := l.Subscribe(ctx, 0)
	if err != nil {
		return err
	}
	defer sub.Close()
	for range want {
		if _, err := sub.Next(ctx); err != nil {
			return err
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Rebuilding a node's projections from the log.

// rebuildHistory is a log to rebuild: built once on an embedded engine,
// then copied event by event into each log benchmarked.
type rebuildHistory struct {
	e *engine
	// events is the whole log in order; events[:bulk] is the first phase
	// (an instance, its keys and the backup's first full, which copies
	// them), the rest the second (the schedule: rotations and checkpoints).
	events []domain.Event
	bulk   int
	// checkpoints and slices count the second phase's checkpoint events
	// and those that carry a slice.
	checkpoints, slices int
}

const (
	rebuildKeys = 20_000
	rebuildDays = 3
	// rebuildEvery is how many five-minute windows pass between two
	// rotations in the second phase: 3 of every 4 checkpoints are empty.
	rebuildEvery = 4
)

// buildRebuildHistory builds the history: a KMS instance with rebuildKeys
// keys (appended as the KMS appends them), a backup enabled on it (its first
// full copies every key), then rebuildDays days of the schedule (an
// incremental every 5 minutes, a full at 00:00) with one key rotated every
// rebuildEvery windows.
func buildRebuildHistory(ctx context.Context, dir string) (*rebuildHistory, error) {
	day1 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	e, err := openEngine(dir, day1.Add(-2*time.Hour))
	if err != nil {
		return nil, err
	}
	h := &rebuildHistory{e: e}
	fail := func(err error) (*rebuildHistory, error) {
		_ = e.close()
		return nil, err
	}
	k, err := newInstance(ctx, e, rebuildKeys, 7)
	if err != nil {
		return fail(err)
	}
	e.clock.Set(day1.Add(-10 * time.Minute))
	if _, err := e.enableBackup(ctx, k.in.ID); err != nil {
		return fail(err)
	}
	if err := e.settle(ctx); err != nil {
		return fail(err)
	}
	bulk, err := e.store.Head(ctx)
	if err != nil {
		return fail(err)
	}
	for w := range rebuildDays * 288 {
		if w%rebuildEvery == 0 {
			e.clock.Set(day1.Add(time.Duration(w)*5*time.Minute + time.Minute))
			if err := k.rotate(ctx, k.randomLive()); err != nil {
				return fail(err)
			}
			if err := k.flush(ctx); err != nil {
				return fail(err)
			}
		}
		if _, _, err := e.driver.Advance(ctx, day1.Add(time.Duration(w+1)*5*time.Minute).Sub(e.clock.Now())); err != nil {
			return fail(err)
		}
	}
	if err := e.settle(ctx); err != nil {
		return fail(err)
	}
	for after := uint64(0); ; {
		page, err := e.store.ReadAll(ctx, after, 5000)
		if err != nil {
			return fail(err)
		}
		if len(page) == 0 {
			break
		}
		for _, ev := range page {
			if ev.Position <= bulk {
				h.bulk++
			} else if ev.Type == domain.TypeBackupCheckpointed {
				h.checkpoints++
				d, err := ev.Decode()
				if err != nil {
					return fail(err)
				}
				if len(d.(*domain.BackupCheckpointed).SliceParts()) > 0 {
					h.slices++
				}
			}
		}
		h.events = append(h.events, page...)
		after = page[len(page)-1].Position
	}
	return h, nil
}

// copyTo appends the history to l in its order (runs of one stream, at most
// 500 events an append) and copies every slice blob a checkpoint names from
// the history's store into blobs, unless blobs is that store. It returns
// the positions in l of the last event of the first phase and of the last
// event.
func (h *rebuildHistory) copyTo(ctx context.Context, l commands.EventAppender, blobs commands.BlobStore) (bulkEnd, end uint64, err error) {
	copyBlobs := blobs != commands.BlobStore(h.e.store)
	for i := 0; i < len(h.events); {
		j := i + 1
		for j < len(h.events) && j-i < natsjs.MaxBatchEvents && h.events[j].Stream == h.events[i].Stream && (i >= h.bulk || j < h.bulk) {
			j++
		}
		batch := make([]domain.Event, j-i)
		copy(batch, h.events[i:j])
		for _, ev := range batch {
			if !copyBlobs || (ev.Type != domain.TypeBackupCheckpointed && ev.Type != domain.TypeBackupBaseStored) {
				continue
			}
			d, err := ev.Decode()
			if err != nil {
				return 0, 0, err
			}
			var names []string
			var gen uint32
			switch d := d.(type) {
			case *domain.BackupCheckpointed:
				gen = d.Generation
				for _, p := range d.SliceParts() {
					names = append(names, p.Name)
				}
			case *domain.BackupBaseStored:
				gen = d.Generation
				for _, p := range d.Parts {
					names = append(names, p.Name)
				}
			}
			ref := domain.DataRef(domain.BackupID(ev.Stream[len(domain.BackupStreamPrefix):]), gen)
			for _, name := range names {
				blob, err := h.e.store.GetBlob(ctx, ref, name)
				if err != nil {
					return 0, 0, err
				}
				if err := blobs.PutBlob(ctx, ref, name, blob); err != nil {
					return 0, 0, err
				}
			}
		}
		res, err := l.Append(ctx, batch[0].Stream, domain.ExpectAny, batch)
		if err != nil {
			return 0, 0, err
		}
		if j == h.bulk {
			bulkEnd = res.LastPosition
		}
		end = res.LastPosition
		i = j
	}
	return bulkEnd, end, nil
}

// rebuildTarget is a copy of the history in one log.
type rebuildTarget struct {
	log          commands.EventLog
	blobs        commands.BlobStore
	bulkEnd, end uint64
}

// benchRebuild measures how fast a new node builds its projections from
// the log: the four projectors the server runs (kmsstate, backupstate,
// backupdata, which loads each checkpoint's slice blob, and audit), each
// following the log from the start into an empty Pebble store, until all
// four have applied the whole log. The history (buildRebuildHistory) is
// copied into a Pebble store and into JetStream (its slice blobs into a
// JetStream object store); each iteration starts from an empty projection
// store. It reports the rate over the whole log and over each phase: the
// bulk phase (the keys and the first full copying them) and the schedule
// phase (mostly checkpoint events, 3 of 4 of them empty, and rotations).
func benchRebuild(b *testing.B, urls natsURLs) {
	ctx := context.Background()
	var h *rebuildHistory
	targets := map[string]*rebuildTarget{}
	defer func() {
		for _, t := range targets {
			_ = t.log.Close()
		}
		if h != nil {
			_ = h.e.close()
		}
	}()
	var conn *natsjs.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	target := func(b *testing.B, kind string) *rebuildTarget {
		if t, ok := targets[kind]; ok {
			return t
		}
		if h == nil {
			start := time.Now()
			var err error
			if h, err = buildRebuildHistory(ctx, filepath.Join(root, "rebuild-source")); err != nil {
				b.Fatal(err)
			}
			b.Logf("history: %d events (bulk phase %d; schedule phase %d, of which %d checkpoints, %d with a slice) built in %s",
				len(h.events), h.bulk, len(h.events)-h.bulk, h.checkpoints, h.slices, time.Since(start).Round(time.Millisecond))
		}
		dir, err := os.MkdirTemp(root, "rebuild-"+kind+"-")
		if err != nil {
			b.Fatal(err)
		}
		l, err := newBenchLog(ctx, kind, urls, dir)
		if err != nil {
			b.Fatal(err)
		}
		t := &rebuildTarget{log: l.log, blobs: h.e.store}
		targets[kind] = t
		if onJetStream(kind) {
			url, replicas := urls.of(kind)
			if conn == nil {
				if conn, err = natsjs.Connect(ctx, url, natsjs.ConnOptions{Logger: quietLogger}); err != nil {
					b.Fatal(err)
				}
			}
			if t.blobs, err = natsjs.OpenBlobs(ctx, conn, natsjs.BlobsOptions{Bucket: fmt.Sprintf("BENCH_BLOBS_%d", jsSeq.Add(1)), Replicas: replicas}); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		if t.bulkEnd, t.end, err = h.copyTo(ctx, t.log, t.blobs); err != nil {
			b.Fatal(err)
		}
		b.Logf("%s: history copied in %s", kind, time.Since(start).Round(time.Millisecond))
		return t
	}
	b.Run("read=rebuild", func(b *testing.B) {
		var pebbleRate float64
		for _, kind := range logKinds {
			b.Run("log="+kind, func(b *testing.B) {
				t := target(b, kind)
				var bulk, sched time.Duration
				// At least 3 rebuilds, so that one call outlasts -benchtime
				// and the history's set-up runs once.
				rounds := max(b.N, 3)
				b.ResetTimer()
				for range rounds {
					b.StopTimer()
					dir := b.TempDir()
					st, err := pebblestore.OpenProjections(dir, pebblestore.Options{Logger: quietLogger}, nil)
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					d1, d2, err := rebuild(ctx, t, st)
					b.StopTimer()
					if cerr := st.Close(); err == nil {
						err = cerr
					}
					if err != nil {
						b.Fatal(err)
					}
					bulk += d1
					sched += d2
					b.StartTimer()
				}
				b.StopTimer()
				n := len(h.events)
				rate := float64(rounds*n) / (bulk + sched).Seconds()
				b.ReportMetric(rate, "events/s")
				b.ReportMetric(float64(rounds*h.bulk)/bulk.Seconds(), "bulk-events/s")
				b.ReportMetric(float64(rounds*(n-h.bulk))/sched.Seconds(), "schedule-events/s")
				if kind == logPebble {
					pebbleRate = rate
				}
				ratioTo(b, kind, rate, pebbleRate)
			})
		}
	})
}

// rebuild runs the server's four projectors on t's log into st until they
// have applied it all, and returns the time until all four had applied the
// first phase and the time of the rest.
func rebuild(ctx context.Context, t *rebuildTarget, st *pebblestore.Projections) (bulk, sched time.Duration, err error) {
	scratchDir, err := os.MkdirTemp(root, "rebuild-scratch-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(scratchDir)
	scratch, err := pebblestore.NewScratches(scratchDir, pebblestore.ScratchOptions{Logger: quietLogger})
	if err != nil {
		return 0, 0, err
	}
	// The server's projectors; the use cases go unused.
	procs := kmsengine.New(kmsengine.Ports{Log: t.log, ReadModels: st, Blobs: t.blobs, Scratch: scratch, Clock: clock.System{}},
		kmsengine.Options{}).Projectors()
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	start := time.Now()
	for _, p := range procs {
		wg.Go(func() { _ = p.Run(rctx) })
	}
	waitAll := func(pos uint64) error {
		for _, p := range procs {
			if err := p.WaitFor(ctx, pos); err != nil {
				return err
			}
		}
		return nil
	}
	if err := waitAll(t.bulkEnd); err != nil {
		return 0, 0, err
	}
	mid := time.Now()
	if err := waitAll(t.end); err != nil {
		return 0, 0, err
	}
	return mid.Sub(start), time.Since(mid), nil
}

// ---------------------------------------------------------------------------
// An engine node on either log.

// node is the engine wired as the server wires it, on a log of any kind:
// a local Pebble store holds the projections (and, embedded, the log, the
// blobs and the wrapped data keys too); on JetStream the log is a
// JetStream stream, the blobs a JetStream object store and the wrapped data
// keys a JetStream key-value bucket, as deployments beyond one machine run
// it, so that several nodes can share them (with 3 replicas each on the
// cluster of logJetStream3). A manual clock, the manual
// scheduler, the four projectors and the audit use case, as in the server.
type node struct {
	*kmsengine.Engine // the use cases

	kind    string
	store   *pebblestore.Store
	proj    *pebblestore.Projections
	log     commands.EventLog
	blobs   commands.BlobStore
	url     string
	master  []byte
	logOpts natsjs.Options // jetstream: the log's stream
	buckets [2]string      // jetstream: the blob and key buckets
	env     *envelope.Envelope
	clock   *clock.Manual
	ids     ids.Random
	driver  *scheduler.Manual
	procs   []*commands.Projector
	cancel  context.CancelFunc
	done    chan struct{}
	closers []func() error
}

// openNode opens a node of kind on a fresh log (on its servers of urls for
// JetStream) with its store in dir; tb closes it.
func openNode(tb testing.TB, kind string, urls natsURLs, dir string, start time.Time) *node {
	tb.Helper()
	n, err := newNode(kind, urls, dir, start, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(n.close)
	return n
}

// newNode opens a node of kind with its store in dir. A nil peer means a
// fresh log, blob store and key store; otherwise the node shares peer's
// (on Pebble: peer's store), and its master key, as a second engine
// process of one deployment does (its projections start empty and catch
// up from the log).
func newNode(kind string, urls natsURLs, dir string, start time.Time, peer *node) (*node, error) {
	ctx := context.Background()
	url, replicas := urls.of(kind)
	st, err := pebblestore.Open(filepath.Join(dir, "db"), pebblestore.Options{Logger: quietLogger})
	if err != nil {
		return nil, err
	}
	proj, err := pebblestore.OpenProjections(filepath.Join(dir, "projections"), pebblestore.Options{Logger: quietLogger}, nil)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	n := &node{kind: kind, store: st, proj: proj, log: st, blobs: st, url: url, closers: []func() error{proj.Close, st.Close}}
	var keys commands.KeyStore = st
	if peer != nil {
		n.master, n.logOpts, n.buckets = peer.master, peer.logOpts, peer.buckets
	} else {
		n.master = make([]byte, 32)
		_, _ = crand.Read(n.master)
		n.logOpts = jsLogOptions(replicas)
		m := jsSeq.Add(1)
		n.buckets = [2]string{fmt.Sprintf("BENCH_BLOBS_%d", m), fmt.Sprintf("BENCH_KEYS_%d", m)}
	}
	if peer != nil && !onJetStream(kind) {
		n.log, n.blobs, keys = peer.log, peer.blobs, peer.store
	}
	if onJetStream(kind) {
		l, err := natsjs.Open(ctx, url, n.logOpts)
		if err != nil {
			n.close()
			return nil, err
		}
		n.closers = append([]func() error{l.Close}, n.closers...)
		n.log = l
		c, err := natsjs.Connect(ctx, url, natsjs.ConnOptions{Logger: quietLogger})
		if err != nil {
			n.close()
			return nil, err
		}
		n.closers = append([]func() error{c.Close}, n.closers...)
		if n.blobs, err = natsjs.OpenBlobs(ctx, c, natsjs.BlobsOptions{Bucket: n.buckets[0], Replicas: replicas}); err != nil {
			n.close()
			return nil, err
		}
		if keys, err = natsjs.OpenKeyStore(ctx, c, natsjs.KeyStoreOptions{Bucket: n.buckets[1], Replicas: replicas}); err != nil {
			n.close()
			return nil, err
		}
	}
	if n.env, err = envelope.New(n.master, keys); err != nil {
		n.close()
		return nil, err
	}
	n.clock = clock.NewManual(start)
	n.ids = ids.Random{Clock: n.clock}
	scratch, err := pebblestore.NewScratches(filepath.Join(dir, "scratch"), pebblestore.ScratchOptions{Logger: quietLogger})
	if err != nil {
		n.close()
		return nil, err
	}
	eng := kmsengine.New(kmsengine.Ports{Log: n.log, ReadModels: proj, Blobs: n.blobs, Keys: n.env, Scratch: scratch,
		Files: backupfile.New(), Clock: n.clock, IDs: n.ids}, kmsengine.Options{})
	n.Engine, n.procs = eng, eng.Projectors()
	n.driver = &scheduler.Manual{Work: n.Schedule, Clock: n.clock}
	rctx, cancel := context.WithCancel(ctx)
	n.cancel, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		var wg sync.WaitGroup
		for _, p := range n.procs {
			wg.Go(func() { _ = p.Run(rctx) })
		}
		wg.Wait()
	}()
	return n, nil
}

func (n *node) close() {
	if n.cancel != nil {
		n.cancel()
		<-n.done
		n.cancel = nil
	}
	for _, c := range n.closers {
		_ = c()
	}
	n.closers = nil
}

// settle waits until every projector has applied the whole log.
func (n *node) settle(ctx context.Context) error {
	head, err := n.log.Head(ctx)
	if err != nil {
		return err
	}
	for _, p := range n.procs {
		if err := p.WaitFor(ctx, head); err != nil {
			return err
		}
	}
	return nil
}

// newCaller returns the caller of a fresh account.
func (n *node) newCaller() commands.Caller {
	return commands.Caller{Account: domain.NewAccountID(n.ids.NewULID())}
}

// ---------------------------------------------------------------------------
// BenchmarkIngestUseCases.

// BenchmarkIngestUseCases measures ingest through the KMS use case
// (KMS.CreateKey: decide against the read model, draw and seal key
// material, append one event with the expected revision, wait until the
// kmsstate projection shows it) on a node of each log, b.N keys in all:
//
//   - callers=1: one caller, one instance;
//   - callers=16/accounts=16: 16 concurrent callers of 16 accounts, an
//     instance each;
//   - callers=16/accounts=1: 16 concurrent callers of one account, an
//     instance each in one region: CreateKey holds the lock of its key ID
//     in the region (key IDs are unique within a region) and its
//     instance's stream lock from its decision until the read model shows
//     the event, so these run in parallel.
//
// Each log=jetstream and log=jetstream-r3 reports its rate over the
// log=pebble rate just before.
func BenchmarkIngestUseCases(b *testing.B) {
	urls := startNATS(b, true)
	ctx := context.Background()
	for _, c := range []struct {
		name              string
		callers, accounts int
	}{{"callers=1", 1, 1}, {"callers=16/accounts=16", 16, 16}, {"callers=16/accounts=1", 16, 1}} {
		b.Run(c.name, func(b *testing.B) {
			var pebbleRate float64
			for _, kind := range replicatedKinds {
				b.Run("log="+kind, func(b *testing.B) {
					n := openNode(b, kind, urls, b.TempDir(), ingestEpoch)
					callers := make([]commands.Caller, c.accounts)
					for i := range callers {
						callers[i] = n.newCaller()
					}
					insts := make([]domain.InstanceID, c.callers)
					for i := range insts {
						in, err := n.KMS.CreateInstance(ctx, callers[i%c.accounts], commands.CreateInstanceInput{Region: region, KeyQuota: domain.MaxQuota})
						if err != nil {
							b.Fatal(err)
						}
						insts[i] = in.ID
					}
					per := (b.N + c.callers - 1) / c.callers
					var wg sync.WaitGroup
					errs := make([]error, c.callers)
					b.ResetTimer()
					for i := range c.callers {
						wg.Go(func() {
							for j := range per {
								if _, err := n.KMS.CreateKey(ctx, callers[i%c.accounts], insts[i], fmt.Sprintf("bench key %07d", j)); err != nil {
									errs[i] = err
									return
								}
							}
						})
					}
					wg.Wait()
					b.StopTimer()
					if err := errors.Join(errs...); err != nil {
						b.Fatal(err)
					}
					rate := float64(per*c.callers) / b.Elapsed().Seconds()
					b.ReportMetric(rate, "events/s")
					b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(per), "ms/call")
					if kind == logPebble {
						pebbleRate = rate
					}
					ratioTo(b, kind, rate, pebbleRate)
				})
			}
		})
	}
}
