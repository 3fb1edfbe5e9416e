package pebblestore

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/domain"
)

// ingestCase is one shape of concurrent ingest.
type ingestCase struct {
	appenders int // concurrent goroutines, each on its own stream
	batch     int // events per Append / per Pebble batch
}

// benchIDs draws event IDs as production does: ULIDs whose time part
// follows a (fake) clock, with random entropy. One per appender.
type benchIDs struct {
	rng *rand.ChaCha8
	ms  uint64
	n   int
}

func newBenchIDs(appender int) *benchIDs {
	var seed [32]byte
	seed[0] = byte(appender)
	return &benchIDs{rng: rand.NewChaCha8(seed), ms: uint64(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli())}
}

func (g *benchIDs) next() domain.EventID {
	g.n++
	if g.n%8 == 0 { // ~8 events per millisecond per appender
		g.ms++
	}
	return ulid.MustNew(g.ms, g.rng)
}

// benchEvent is a ~300-byte event once encoded: a KeyCreated-sized payload
// plus a realistic envelope.
func benchEvent(stream string, id domain.EventID, seq int) domain.Event {
	return domain.Event{
		ID:         id,
		Stream:     stream,
		Type:       domain.TypeKeyCreated,
		Schema:     domain.SchemaVersion,
		OccurredAt: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(seq) * time.Millisecond),
		Account:    "acct_01JNB8Y7V6QK4M2X9ZP3R5T7W1",
		Region:     "cn-hangzhou",
		Instance:   "kms_01JNB8Y7V6QK4M2X9ZP3R5T7W2",
		Data:       benchPayload,
	}
}

var benchPayload = func() []byte {
	b := make([]byte, 170)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}()

// BenchmarkIngest measures, in one run and for each shape, durable ingest
// through Store.Append and raw Pebble batched appends of the same encoded
// bytes (key = position) with the same concurrency and a pebble.Sync commit
// per batch, and reports both rates and their ratio. b.N is the number of
// events each of the two sides ingests. The disk's fsync latency drifts, so
// the two sides take turns in ingestRounds rounds (alternating which goes
// first) and each side's rate is its events over its summed time.
func BenchmarkIngest(b *testing.B) {
	for _, c := range []ingestCase{{8, 10}, {16, 1}, {4, 100}} {
		b.Run(fmt.Sprintf("appenders=%d/batch=%d", c.appenders, c.batch), func(b *testing.B) {
			perRound, events := c.rounds(b.N)
			rec := appendRecord(nil, ptr(benchEvent("kms-kms_01JNB8Y7V6QK4M2X9ZP3R00000", newBenchIDs(0).next(), 0)))
			store := newStoreIngest(b, c, Options{})
			raw := newRawIngest(b, c, nil)
			b.ResetTimer()
			rawTime, storeTime := takeTurns(b, raw, store, perRound)
			b.StopTimer()
			store.check(b, events)
			raw.check(b, events)
			storeRate := float64(events) / storeTime.Seconds()
			rawRate := float64(events) / rawTime.Seconds()
			b.ReportMetric(storeRate, "store-events/s")
			b.ReportMetric(rawRate, "raw-events/s")
			b.ReportMetric(storeRate/rawRate, "store/raw")
			b.ReportMetric(float64(len(rec)), "B/event")
		})
	}
}

const ingestRounds = 4

// rounds returns the batches each appender appends per round for n events
// in all (rounded up), and the events that makes.
func (c ingestCase) rounds(n int) (perRound, events int) {
	perRound = (n + ingestRounds*c.appenders*c.batch - 1) / (ingestRounds * c.appenders * c.batch)
	return perRound, ingestRounds * perRound * c.batch * c.appenders
}

// ingester runs a side of an ingest comparison.
type ingester interface {
	run(b *testing.B, batches int) time.Duration
}

// takeTurns runs x and y for ingestRounds rounds of perRound batches,
// alternating which goes first, and returns each one's summed time.
func takeTurns(b *testing.B, x, y ingester, perRound int) (tx, ty time.Duration) {
	for round := range ingestRounds {
		if round%2 == 0 {
			tx += x.run(b, perRound)
			ty += y.run(b, perRound)
		} else {
			ty += y.run(b, perRound)
			tx += x.run(b, perRound)
		}
	}
	return tx, ty
}

func ptr[T any](v T) *T { return &v }

// storeIngest appends through Store.Append, each appender on its own stream
// with an exact expected revision.
type storeIngest struct {
	c   ingestCase
	s   *Store
	app []storeAppender
}

type storeAppender struct {
	stream string
	ids    *benchIDs
	exp    domain.ExpectedRevision
	seq    int
}

func newStoreIngest(b *testing.B, c ingestCase, opts Options) *storeIngest {
	s, err := Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	in := &storeIngest{c: c, s: s, app: make([]storeAppender, c.appenders)}
	for a := range in.app {
		in.app[a] = storeAppender{stream: fmt.Sprintf("kms-kms_01JNB8Y7V6QK4M2X9ZP3R%05d", a), ids: newBenchIDs(a), exp: domain.ExpectNoStream}
	}
	return in
}

// run has every appender append batches batches and returns the elapsed time.
func (in *storeIngest) run(b *testing.B, batches int) time.Duration {
	ctx := context.Background()
	var wg sync.WaitGroup
	var failed atomic.Bool
	start := time.Now()
	for a := range in.app {
		wg.Go(func() {
			ap := &in.app[a]
			evs := make([]domain.Event, in.c.batch)
			for range batches {
				for j := range evs {
					evs[j] = benchEvent(ap.stream, ap.ids.next(), ap.seq)
					ap.seq++
				}
				res, err := in.s.Append(ctx, ap.stream, ap.exp, evs)
				if err != nil {
					b.Error(err)
					failed.Store(true)
					return
				}
				ap.exp = domain.ExpectRevision(res.LastRevision)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed.Load() {
		b.FailNow()
	}
	return elapsed
}

func (in *storeIngest) check(b *testing.B, events int) {
	if h, _ := in.s.Head(context.Background()); h != uint64(events) {
		b.Fatalf("store head %d after %d events", h, events)
	}
}

// rawIngest writes the same encoded records straight into Pebble, key =
// position, one synced batch per append, on the store's options (and fs
// for Pebble's when not nil).
type rawIngest struct {
	c    ingestCase
	dir  string
	db   *pebble.DB
	next atomic.Uint64
	recs [][][]byte // per appender, one batch of records
}

func newRawIngest(b *testing.B, c ingestCase, fs vfs.FS) *rawIngest {
	dir := b.TempDir()
	po := pebbleOptions(dir, Options{}, newTableChecker(vfs.Default, dir, logStoreKind, slog.Default()))
	if fs != nil {
		po.FS = fs
	}
	db, err := pebble.Open(dir, po)
	po.Cache.Unref()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	in := &rawIngest{c: c, dir: dir, db: db, recs: make([][][]byte, c.appenders)}
	for a := range in.recs {
		stream := fmt.Sprintf("kms-kms_01JNB8Y7V6QK4M2X9ZP3R%05d", a)
		ids := newBenchIDs(a)
		in.recs[a] = make([][]byte, c.batch)
		for j := range in.recs[a] {
			in.recs[a][j] = appendRecord(nil, ptr(benchEvent(stream, ids.next(), j)))
		}
	}
	return in
}

func (in *rawIngest) run(b *testing.B, batches int) time.Duration {
	var wg sync.WaitGroup
	var failed atomic.Bool
	start := time.Now()
	for a := range in.recs {
		wg.Go(func() {
			key := make([]byte, 0, logKeyLen)
			n := uint64(in.c.batch)
			for range batches {
				first := in.next.Add(n) - n + 1
				batch := in.db.NewBatch()
				for j, rec := range in.recs[a] {
					key = appendLogKey(key[:0], first+uint64(j))
					_ = batch.Set(key, rec, nil)
				}
				err := batch.Commit(pebble.Sync)
				_ = batch.Close()
				if err != nil {
					b.Error(err)
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed.Load() {
		b.FailNow()
	}
	return elapsed
}

func (in *rawIngest) check(b *testing.B, events int) {
	if got := in.next.Load(); got != uint64(events) {
		b.Fatalf("raw wrote %d events, want %d", got, events)
	}
}
