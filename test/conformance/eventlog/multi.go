package eventlog

import (
	"errors"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// multiAppend writes two new streams in one call, reads them back, and
// retries the call: the retry is a no-op with the original results.
func (s *suite) multiAppend(t *testing.T) {
	l, ctx := s.open(t)
	a, b := s.stream("multia"), s.stream("multib")
	mustAppend(t, ctx, l, b, domain.ExpectNoStream, s.events(b, 2))
	parts := []commands.StreamAppend{
		{Stream: a, Expected: domain.ExpectNoStream, Events: s.events(a, 3)},
		{Stream: b, Expected: domain.ExpectRevision(1), Events: []domain.Event{s.event(b, 2)}},
	}
	h0 := mustHead(t, ctx, l)
	res, err := l.AppendMulti(ctx, parts)
	if err != nil {
		t.Fatalf("AppendMulti: %v", err)
	}
	if len(res) != 2 || res[0].LastRevision != 2 || res[1].LastRevision != 2 {
		t.Fatalf("AppendMulti results %+v: want 2 results, last revisions 2 and 2", res)
	}
	for i, r := range res {
		if r.FirstPosition <= h0 || r.LastPosition < r.FirstPosition {
			t.Errorf("result %d %+v after head %d: want head < first <= last", i, r, h0)
		}
	}
	gotA := mustReadStream(t, ctx, l, a, 0, false, 10)
	if d := diffEvents(s.placed(parts[0].Events, 0, res[0], gotA), gotA); d != "" {
		t.Fatalf("stream a after AppendMulti (-want +got):\n%s", d)
	}
	gotB := mustReadStream(t, ctx, l, b, 2, false, 10)
	if d := diffEvents(s.placed(parts[1].Events, 2, res[1], gotB), gotB); d != "" {
		t.Fatalf("stream b after AppendMulti (-want +got):\n%s", d)
	}
	again, err := l.AppendMulti(ctx, parts)
	if err != nil {
		t.Fatalf("retried AppendMulti: %v", err)
	}
	if len(again) != 2 || again[0] != res[0] || again[1] != res[1] {
		t.Fatalf("retried AppendMulti = %+v, want the original %+v", again, res)
	}
	if n := len(mustReadStream(t, ctx, l, a, 0, false, 10)); n != 3 {
		t.Fatalf("stream a holds %d events after the retry, want 3", n)
	}
}

// multiAllOrNothing refuses a call of which one part's expectation does
// not hold, and writes none of its parts.
func (s *suite) multiAllOrNothing(t *testing.T) {
	l, ctx := s.open(t)
	a, b := s.stream("multia"), s.stream("multib")
	mustAppend(t, ctx, l, b, domain.ExpectNoStream, s.events(b, 2))
	for _, exp := range s.wrongAfterFirst([]domain.ExpectedRevision{domain.ExpectNoStream, domain.ExpectRevision(0), domain.ExpectRevision(2)}) {
		_, err := l.AppendMulti(ctx, []commands.StreamAppend{
			{Stream: a, Expected: domain.ExpectNoStream, Events: s.events(a, 2)},
			{Stream: b, Expected: exp, Events: []domain.Event{s.event(b, 2)}},
		})
		if !errors.Is(err, domain.ErrWrongExpectedRevision) {
			t.Fatalf("AppendMulti with stream b expecting %s at revision 1: %v, want ErrWrongExpectedRevision", exp, err)
		}
		if got := mustReadStream(t, ctx, l, a, 0, false, 10); len(got) != 0 {
			t.Fatalf("a refused AppendMulti wrote %d events of its other part", len(got))
		}
		if got := mustReadStream(t, ctx, l, b, 0, false, 10); len(got) != 2 {
			t.Fatalf("a refused AppendMulti left stream b with %d events, want 2", len(got))
		}
	}
	// The first part's expectation fails, the second's holds.
	_, err := l.AppendMulti(ctx, []commands.StreamAppend{
		{Stream: b, Expected: domain.ExpectNoStream, Events: []domain.Event{s.event(b, 3)}},
		{Stream: a, Expected: domain.ExpectNoStream, Events: s.events(a, 1)},
	})
	if !errors.Is(err, domain.ErrWrongExpectedRevision) {
		t.Fatalf("AppendMulti with its first part wrong: %v, want ErrWrongExpectedRevision", err)
	}
	if got := mustReadStream(t, ctx, l, a, 0, false, 10); len(got) != 0 {
		t.Fatalf("a refused AppendMulti wrote %d events of its second part", len(got))
	}
}

// multiRace races callers that each claim one shared stream expecting it
// not to exist and write a stream of their own: exactly one wins, and the
// losers' own streams stay empty.
func (s *suite) multiRace(t *testing.T) {
	l, ctx := s.open(t)
	const racers, rounds = 6, 10
	for round := range rounds {
		claim := s.stream("claim")
		own := make([]string, racers)
		errs := make([]error, racers)
		parts := make([][]commands.StreamAppend, racers)
		for i := range racers {
			own[i] = s.stream("own")
			parts[i] = []commands.StreamAppend{
				{Stream: claim, Expected: domain.ExpectNoStream, Events: []domain.Event{s.event(claim, i)}},
				{Stream: own[i], Expected: domain.ExpectNoStream, Events: s.events(own[i], 1)},
			}
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				<-start
				_, errs[i] = l.AppendMulti(ctx, parts[i])
			})
		}
		close(start)
		wg.Wait()
		won := -1
		for i, err := range errs {
			n := len(mustReadStream(t, ctx, l, own[i], 0, false, 10))
			switch {
			case err == nil:
				if won >= 0 {
					t.Fatalf("round %d: racers %d and %d both won the claim", round, won, i)
				}
				won = i
				if n != 1 {
					t.Fatalf("round %d: the winner's own stream holds %d events, want 1", round, n)
				}
			case errors.Is(err, domain.ErrWrongExpectedRevision):
				if n != 0 {
					t.Fatalf("round %d: loser %d's own stream holds %d events, want 0", round, i, n)
				}
			default:
				t.Fatalf("round %d: racer %d: %v", round, i, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: no racer won the claim", round)
		}
		got := mustReadStream(t, ctx, l, claim, 0, false, 10)
		if len(got) != 1 || got[0].ID != parts[won][0].Events[0].ID {
			t.Fatalf("round %d: the claim stream holds %d events, want the winner's one", round, len(got))
		}
	}
}

// multiInvalid refuses calls of the wrong shape, writing nothing.
func (s *suite) multiInvalid(t *testing.T) {
	l, ctx := s.open(t)
	a, b := s.stream("multia"), s.stream("multib")
	e := s.events(a, 2)
	wrongStream := s.events(b, 1)
	cases := map[string][]commands.StreamAppend{
		"no part":           nil,
		"one stream twice":  {{Stream: a, Expected: domain.ExpectAny, Events: e[:1]}, {Stream: a, Expected: domain.ExpectAny, Events: e[1:]}},
		"an empty part":     {{Stream: a, Expected: domain.ExpectAny, Events: e}, {Stream: b, Expected: domain.ExpectAny}},
		"an ID in two":      {{Stream: a, Expected: domain.ExpectAny, Events: e[:1]}, {Stream: b, Expected: domain.ExpectAny, Events: []domain.Event{withStream(e[0], b)}}},
		"a stream mismatch": {{Stream: a, Expected: domain.ExpectAny, Events: wrongStream}},
	}
	for name, parts := range cases {
		if _, err := l.AppendMulti(ctx, parts); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("%s: AppendMulti = %v, want ErrInvalidArgument", name, err)
		}
	}
	for _, st := range []string{a, b} {
		if got := mustReadStream(t, ctx, l, st, 0, false, 10); len(got) != 0 {
			t.Fatalf("refused calls wrote %d events to %s", len(got), st)
		}
	}
	if s.f.SequentialMulti {
		return
	}
	// Event IDs partly present: one part a retry, the other new.
	first := []commands.StreamAppend{{Stream: a, Expected: domain.ExpectNoStream, Events: e}}
	if _, err := l.AppendMulti(ctx, first); err != nil {
		t.Fatalf("AppendMulti: %v", err)
	}
	mixed := append(first, commands.StreamAppend{Stream: b, Expected: domain.ExpectAny, Events: s.events(b, 1)})
	if _, err := l.AppendMulti(ctx, mixed); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("AppendMulti with one part already written = %v, want ErrInvalidArgument", err)
	}
	if got := mustReadStream(t, ctx, l, b, 0, false, 10); len(got) != 0 {
		t.Fatalf("a refused AppendMulti wrote %d events to its new part", len(got))
	}
}

func withStream(e domain.Event, stream string) domain.Event {
	e.Stream = stream
	return e
}

// wrongAfterFirst returns exps, or none when the log's AppendMulti is
// sequential (a part refused after the first leaves the first written).
func (s *suite) wrongAfterFirst(exps []domain.ExpectedRevision) []domain.ExpectedRevision {
	if s.f.SequentialMulti {
		return nil
	}
	return exps
}
