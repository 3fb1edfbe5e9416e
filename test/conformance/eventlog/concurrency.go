package eventlog

import (
	"errors"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// concurrentExactRevision races appenders for each revision: in every round
// they all expect the same revision, exactly one wins, the others get
// ErrWrongExpectedRevision, and the stream ends up with no gap.
func (s *suite) concurrentExactRevision(t *testing.T) {
	l, ctx := s.open(t)
	st := s.stream("race")
	const appenders, rounds, perBatch = 6, 25, 2
	var winners [][]domain.Event
	for round := range rounds {
		exp := domain.ExpectNoStream
		if round > 0 {
			exp = domain.ExpectRevision(uint64(round*perBatch - 1))
		}
		batches := make([][]domain.Event, appenders)
		for i := range batches {
			batches[i] = []domain.Event{s.event(st, round*100+i*2), s.event(st, round*100+i*2+1)}
		}
		start := make(chan struct{})
		type outcome struct {
			res commands.AppendResult
			err error
		}
		outs := make([]outcome, appenders)
		var wg sync.WaitGroup
		for i := range appenders {
			wg.Go(func() {
				<-start
				res, err := l.Append(ctx, st, exp, batches[i])
				outs[i] = outcome{res, err}
			})
		}
		close(start)
		wg.Wait()
		won := -1
		for i, o := range outs {
			switch {
			case o.err == nil:
				if won >= 0 {
					t.Fatalf("round %d (expected %s): appenders %d and %d both won", round, exp, won, i)
				}
				won = i
				if want := uint64((round+1)*perBatch - 1); o.res.LastRevision != want {
					t.Fatalf("round %d: winner's LastRevision = %d, want %d", round, o.res.LastRevision, want)
				}
			case errors.Is(o.err, domain.ErrWrongExpectedRevision):
			default:
				t.Fatalf("round %d: appender %d: %v", round, i, o.err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d (expected %s): nobody won", round, exp)
		}
		winners = append(winners, batches[won])
	}
	got := mustReadStream(t, ctx, l, st, 0, false, rounds*perBatch+10)
	if len(got) != rounds*perBatch {
		t.Fatalf("stream has %d events, want %d", len(got), rounds*perBatch)
	}
	for i, e := range got {
		w := winners[i/perBatch][i%perBatch]
		if e.Revision != uint64(i) || e.ID != w.ID {
			t.Fatalf("event %d: revision %d, ID %s; want revision %d, the winner's ID %s", i, e.Revision, e.ID, i, w.ID)
		}
	}
	s.positionsIncrease(t, got)
}

// concurrentManyStreams appends from many goroutines to several streams and
// checks that every acknowledged event is in the log exactly once, where
// its result says, and that the global order agrees with each stream's.
func (s *suite) concurrentManyStreams(t *testing.T) {
	l, ctx := s.open(t)
	const appenders, perAppender, nStreams = 8, 30, 5
	streams := make([]string, nStreams)
	for i := range streams {
		streams[i] = s.stream("many")
	}
	h0 := mustHead(t, ctx, l)
	type acked struct {
		evs []domain.Event
		res commands.AppendResult
	}
	var mu sync.Mutex
	var acks []acked
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Go(func() {
			for i := range perAppender {
				st := streams[(a+i)%nStreams]
				n := 1 + (a+i)%3
				evs := make([]domain.Event, n)
				for j := range evs {
					evs[j] = s.event(st, a*1000+i*10+j)
				}
				res, err := l.Append(ctx, st, domain.ExpectAny, evs)
				if err != nil {
					t.Errorf("appender %d, append %d: %v", a, i, err)
					return
				}
				mu.Lock()
				acks = append(acks, acked{evs, res})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	all := readAllOf(t, ctx, l, h0, streams...)
	s.positionsIncrease(t, all)
	byID := make(map[domain.EventID]domain.Event, len(all))
	for _, e := range all {
		if _, dup := byID[e.ID]; dup {
			t.Fatalf("event %s appears twice in ReadAll", e.ID)
		}
		byID[e.ID] = e
	}
	total := 0
	for _, ack := range acks {
		got := make([]domain.Event, len(ack.evs))
		for j, e := range ack.evs {
			g, ok := byID[e.ID]
			if !ok {
				t.Fatalf("acknowledged event %s of %s is not in ReadAll", e.ID, e.Stream)
			}
			got[j] = g
		}
		want := s.placed(ack.evs, ack.res.LastRevision+1-uint64(len(ack.evs)), ack.res, got)
		if d := diffEvents(want, got); d != "" {
			t.Fatalf("acknowledged batch %+v (-want +got):\n%s", ack.res, d)
		}
		s.positionsIncrease(t, got)
		total += len(ack.evs)
	}
	if len(all) != total {
		t.Fatalf("ReadAll has %d events of these streams, %d were acknowledged", len(all), total)
	}
	// Global order agrees with every stream's order, and streams have no gap.
	next := map[string]uint64{}
	perStream := map[string][]domain.Event{}
	for _, e := range all {
		if e.Revision != next[e.Stream] {
			t.Fatalf("in global order, %s revision %d comes where revision %d was due", e.Stream, e.Revision, next[e.Stream])
		}
		next[e.Stream]++
		perStream[e.Stream] = append(perStream[e.Stream], e)
	}
	for _, st := range streams {
		got := mustReadStream(t, ctx, l, st, 0, false, total+1)
		if d := diffEvents(perStream[st], got); d != "" {
			t.Fatalf("ReadStream(%s) differs from its events in ReadAll (-all +stream):\n%s", st, d)
		}
	}
}
