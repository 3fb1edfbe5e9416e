package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/workload"
)

// ---------------------------------------------------------------------------
// Concurrent writers of the KMS: 16 writers on one instance against 16
// writers on 16 instances, beside raw Pebble synced appends of the same
// event sizes, in one run:
//
//	go test -run '^$' -bench Writers -benchtime 20000x -count 3 ./test/bench/
//
// docs/BENCHMARKS.md ("Concurrent writers on one instance") has the results.

// writerCount is how many writers each side runs.
const writerCount = 16

// writerRounds is how many turns the sides take: the disk's fsync latency
// drifts over minutes here, so each side's rate is its operations over its
// time summed over rounds in which the sides alternate.
const writerRounds = 4

// writersSide is one side of the comparison: writerCount writers, each
// with its front, or raw Pebble.
type writersSide struct {
	name    string
	writers []*workload.Writer
	fronts  []workload.Front
	raw     *rawAppends
	elapsed time.Duration
	ops     int // acknowledged operations
	gaveUp  int // operations that gave up after losing every race (unavailable)
}

// run has every writer do per operations; a writer that gives up after
// losing every race is counted when tolerate is set, any other failure is
// returned.
func (s *writersSide) run(ctx context.Context, per int, tolerate bool) error {
	if s.raw != nil {
		start := time.Now()
		err := s.raw.run(per)
		s.elapsed += time.Since(start)
		s.ops += per * writerCount
		return err
	}
	errs := make([]error, len(s.writers))
	gaveUp := make([]int, len(s.writers))
	var wg sync.WaitGroup
	start := time.Now()
	for i, w := range s.writers {
		wg.Go(func() {
			for range per {
				op, err := w.Step(ctx, s.fronts[i])
				if tolerate && errors.Is(err, domain.ErrUnavailable) {
					gaveUp[i]++
					continue
				}
				if err != nil {
					errs[i] = fmt.Errorf("%s: writer %d: %s: %w", s.name, i, workload.OpNames[op], err)
					return
				}
			}
		})
	}
	wg.Wait()
	s.elapsed += time.Since(start)
	s.ops += per * len(s.writers)
	for _, n := range gaveUp {
		s.gaveUp += n
		s.ops -= n
	}
	return errors.Join(errs...)
}

func (s *writersSide) rate() float64 { return float64(s.ops) / s.elapsed.Seconds() }

// rawAppends writes records of the given sizes straight into Pebble, one
// synced commit each (key = a counter), from writerCount goroutines: the
// durable appends alone, with Pebble's own group commit.
type rawAppends struct {
	db    *pebble.DB
	sizes []int
	next  atomic.Uint64
}

func (r *rawAppends) run(per int) error {
	var wg sync.WaitGroup
	errs := make([]error, writerCount)
	for g := range writerCount {
		wg.Go(func() {
			var key [8]byte
			for j := range per {
				n := r.next.Add(1)
				binary.BigEndian.PutUint64(key[:], n)
				val := make([]byte, r.sizes[(g+j)%len(r.sizes)])
				binary.BigEndian.PutUint64(val, n)
				if err := r.db.Set(key[:], val, pebble.Sync); err != nil {
					errs[g] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// writersRun is a set-up of the sides on one engine.
type writersRun struct {
	e     *engine
	sides []*writersSide
	// eventBytes is the mean size of the encoded events the writers append.
	eventBytes float64
}

// newWritersRun opens an engine in dir with one instance for the
// one-instance side (and the two-node side, on a second instance) and
// writerCount instances, of one account and region, for the other, warms
// each writer up with a few operations (untimed: its first key and secret),
// and measures the events they appended for the raw side.
func newWritersRun(ctx context.Context, dir string) (*writersRun, error) {
	e, err := openEngine(dir, ingestEpoch)
	if err != nil {
		return nil, err
	}
	r := &writersRun{e: e}
	newInstance := func() (domain.InstanceID, error) {
		in, err := e.KMS.CreateInstance(ctx, e.caller, commands.CreateInstanceInput{Region: region, KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota})
		if err != nil {
			return "", err
		}
		return in.ID, nil
	}
	front := func(k *commands.KMS, in domain.InstanceID) workload.Front {
		return workload.UseCases{KMS: k, Caller: e.caller, Instance: in}
	}
	one, err := newInstance()
	if err != nil {
		return nil, errors.Join(err, e.close())
	}
	shared, err := newInstance()
	if err != nil {
		return nil, errors.Join(err, e.close())
	}
	// A second node: its own KMS use cases (its own locks) on the same log
	// and read model, as a second process sharing the log would decide.
	k := e.KMS
	other := &commands.KMS{Log: k.Log, State: k.State, Applied: k.Applied, Sealer: k.Sealer, DataKeys: k.DataKeys,
		Cipher: k.Cipher, Clock: k.Clock, IDs: k.IDs}
	sides := []*writersSide{{name: "1 instance"}, {name: "16 instances"}, {name: "raw"}, {name: "1 instance, 2 nodes"}}
	for i := range writerCount {
		own, err := newInstance()
		if err != nil {
			return nil, errors.Join(err, e.close())
		}
		node := k
		if i%2 == 1 {
			node = other
		}
		for s, f := range []workload.Front{front(k, one), front(k, own), nil, front(node, shared)} {
			if f == nil {
				continue
			}
			sides[s].writers = append(sides[s].writers, workload.NewWriter(i, fmt.Sprintf("side%d", s)))
			sides[s].fronts = append(sides[s].fronts, f)
		}
	}
	for _, s := range sides {
		if s.writers == nil {
			continue
		}
		if err := s.run(ctx, workload.NumOps, false); err != nil {
			return nil, errors.Join(err, e.close())
		}
		s.ops, s.elapsed = 0, 0
	}
	events, err := e.store.ReadStream(ctx, domain.KMSStream(one), 1, false, math.MaxInt32)
	if err != nil {
		return nil, errors.Join(err, e.close())
	}
	raw := &rawAppends{}
	total := 0
	for i := range events {
		n := domain.EventRecordSize(&events[i])
		raw.sizes = append(raw.sizes, n)
		total += n
	}
	r.eventBytes = float64(total) / float64(len(events))
	raw.db, err = pebble.Open(dir+"-raw", storeOptions())
	if err != nil {
		return nil, errors.Join(err, e.close())
	}
	sides[2].raw = raw
	r.sides = sides
	return r, nil
}

// openWritersRun sets a run up in a temporary directory (newWritersRun)
// and closes it when tb ends.
func openWritersRun(tb testing.TB) *writersRun {
	tb.Helper()
	r, err := newWritersRun(context.Background(), tb.TempDir()+"/engine")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := r.close(); err != nil {
			tb.Error(err)
		}
	})
	return r
}

func (r *writersRun) close() error {
	err := r.e.close()
	if raw := r.sides[2].raw; raw != nil {
		err = errors.Join(err, raw.db.Close())
	}
	return err
}

// run has each side do per operations per writer in each of writerRounds
// rounds, the sides taking turns in an order that rotates every round.
func (r *writersRun) run(ctx context.Context, per int) error {
	for round := range writerRounds {
		for i := range r.sides {
			s := r.sides[(round+i)%len(r.sides)]
			if err := s.run(ctx, per, s.name == "1 instance, 2 nodes"); err != nil {
				return err
			}
		}
	}
	return nil
}

// BenchmarkWriters measures the KMS use cases under 16 concurrent writers
// (workload.Writer: key creates, secret creates, key rotations and secret
// rotations in turn, each writer on items of its own), b.N operations per
// side:
//
//   - 1 instance: all 16 writers on one KMS instance, whose changes the
//     process decides one at a time (each holds the instance's stream
//     lock from its decision until the read model shows its event);
//   - 16 instances: each writer on its own instance, of one account and
//     region (changes of distinct instances are decided in parallel and
//     their appends group-committed by the store);
//   - raw: 16 goroutines committing records of the sizes those events
//     have straight into Pebble, one synced commit each;
//   - 1 instance, 2 nodes: 16 writers on one instance, half through a
//     second set of use cases (with its own locks) on the same log and
//     read model, as two processes sharing the log: their races are
//     decided by the expected revision, retried with backoff, and a
//     writer that loses every attempt gives up (counted, not failed).
//
// It reports each side's operations per second and the ratios.
func BenchmarkWriters(b *testing.B) {
	ctx := context.Background()
	r := openWritersRun(b)
	per := max(1, (b.N+writerRounds*writerCount-1)/(writerRounds*writerCount))
	b.ResetTimer()
	if err := r.run(ctx, per); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	one, sixteen, raw, nodes := r.sides[0], r.sides[1], r.sides[2], r.sides[3]
	b.ReportMetric(one.rate(), "1inst-ops/s")
	b.ReportMetric(sixteen.rate(), "16inst-ops/s")
	b.ReportMetric(raw.rate(), "raw-appends/s")
	b.ReportMetric(nodes.rate(), "2nodes-ops/s")
	b.ReportMetric(one.rate()/sixteen.rate(), "1inst/16inst")
	b.ReportMetric(one.rate()/raw.rate(), "1inst/raw")
	b.ReportMetric(sixteen.rate()/raw.rate(), "16inst/raw")
	b.ReportMetric(float64(nodes.gaveUp)/float64(nodes.ops+nodes.gaveUp), "2nodes-gave-up")
	b.ReportMetric(r.eventBytes, "B/event")
}

// TestWritersSmall runs BenchmarkWriters' sides briefly: every writer's
// operations succeed on one instance and on 16, and read back.
func TestWritersSmall(t *testing.T) {
	ctx := context.Background()
	r := openWritersRun(t)
	if err := r.run(ctx, 2*workload.NumOps); err != nil {
		t.Fatal(err)
	}
	for _, s := range r.sides[:2] {
		for i, w := range s.writers {
			workload.Check(t, ctx, s.fronts[i], w)
		}
	}
}
