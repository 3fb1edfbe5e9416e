package eventlog

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
)

func (s *suite) readStream(t *testing.T) {
	l, ctx := s.open(t)
	st := s.stream("read")
	all := s.events(st, 10)
	var want []domain.Event
	rev := uint64(0)
	exp := domain.ExpectNoStream
	for _, part := range [][]domain.Event{all[:3], all[3:6], all[6:]} {
		res := mustAppend(t, ctx, l, st, exp, part)
		got := mustReadStream(t, ctx, l, st, rev, false, len(part))
		want = append(want, s.placed(part, rev, res, got)...)
		rev += uint64(len(part))
		exp = domain.ExpectRevision(rev - 1)
	}
	rev0 := func(from, to int) []domain.Event { return want[from:to] }
	reversed := func(evs []domain.Event) []domain.Event {
		out := slices.Clone(evs)
		slices.Reverse(out)
		return out
	}
	cases := []struct {
		from      uint64
		backwards bool
		max       int
		want      []domain.Event
	}{
		{0, false, 100, want},
		{0, false, 1, rev0(0, 1)},
		{3, false, 4, rev0(3, 7)},
		{8, false, 10, rev0(8, 10)},
		{9, false, 1, rev0(9, 10)},
		{10, false, 5, nil},
		{math.MaxUint64, true, 3, reversed(rev0(7, 10))},
		{math.MaxUint64, true, 100, reversed(want)},
		{9, true, 2, reversed(rev0(8, 10))},
		{4, true, 10, reversed(rev0(0, 5))},
		{0, true, 5, rev0(0, 1)},
	}
	for _, c := range cases {
		got := mustReadStream(t, ctx, l, st, c.from, c.backwards, c.max)
		if d := diffEvents(c.want, got); d != "" {
			t.Errorf("ReadStream(from %d, backwards %v, max %d) (-want +got):\n%s", c.from, c.backwards, c.max, d)
		}
	}
}

func (s *suite) readMissingStream(t *testing.T) {
	l, ctx := s.open(t)
	missing := s.stream("missing")
	other := s.stream("present")
	mustAppend(t, ctx, l, other, domain.ExpectNoStream, s.events(other, 2))
	// A stream whose name extends an existing one's must not see its events.
	for _, st := range []string{missing, other + "x", other[:len(other)-1]} {
		for _, back := range []bool{false, true} {
			from := uint64(0)
			if back {
				from = math.MaxUint64
			}
			if got := mustReadStream(t, ctx, l, st, from, back, 10); len(got) != 0 {
				t.Errorf("ReadStream(%q, backwards %v) of a missing stream returned %d events", st, back, len(got))
			}
		}
	}
}

func (s *suite) readAll(t *testing.T) {
	l, ctx := s.open(t)
	a, b := s.stream("alla"), s.stream("allb")
	h0 := mustHead(t, ctx, l)
	var want []domain.Event
	revs := map[string]uint64{}
	for i := range 6 {
		st := a
		if i%2 == 1 {
			st = b
		}
		e := s.event(st, i)
		exp := domain.ExpectNoStream
		if _, ok := revs[st]; ok {
			exp = domain.ExpectRevision(revs[st] - 1)
		}
		res := mustAppend(t, ctx, l, st, exp, []domain.Event{e})
		want = append(want, s.placed([]domain.Event{e}, revs[st], res, nil)...)
		revs[st]++
	}
	got := readAllOf(t, ctx, l, h0, a, b)
	if d := diffEvents(want, got); d != "" {
		t.Fatalf("ReadAll after %d (-want +got):\n%s", h0, d)
	}
	s.positionsIncrease(t, got)
	if s.f.ContiguousPositions && got[0].Position != h0+1 {
		t.Errorf("first event after head %d has position %d", h0, got[0].Position)
	}
	page, err := l.ReadAll(ctx, want[1].Position, 2)
	if err != nil {
		t.Fatalf("ReadAll(after %d, max 2): %v", want[1].Position, err)
	}
	if d := diffEvents(want[2:4], page); d != "" {
		t.Errorf("ReadAll(after %d, max 2) (-want +got):\n%s", want[1].Position, d)
	}
	// A position between two events (when there is one) reads from the next.
	if between := want[3].Position - 1; between > want[2].Position {
		page, err := l.ReadAll(ctx, between, 1)
		if err != nil || len(page) != 1 || page[0].ID != want[3].ID {
			t.Errorf("ReadAll(after %d, max 1) = %d events, %v; want event at %d", between, len(page), err, want[3].Position)
		}
	}
	last := want[len(want)-1].Position
	if page, err := l.ReadAll(ctx, last, 10); err != nil || len(page) != 0 {
		t.Errorf("ReadAll(after the last position %d) = %d events, %v; want none", last, len(page), err)
	}
}

func (s *suite) head(t *testing.T) {
	l, ctx := s.open(t)
	st := s.stream("head")
	h0 := mustHead(t, ctx, l)
	res := mustAppend(t, ctx, l, st, domain.ExpectNoStream, s.events(st, 3))
	if h := mustHead(t, ctx, l); h != res.LastPosition {
		t.Errorf("Head after append = %d, want the last position %d", h, res.LastPosition)
	}
	if res.FirstPosition <= h0 {
		t.Errorf("first position %d not after the previous head %d", res.FirstPosition, h0)
	}
	// A rejected append leaves the head alone.
	if _, err := l.Append(ctx, st, domain.ExpectNoStream, s.events(st, 1)); !errors.Is(err, domain.ErrWrongExpectedRevision) {
		t.Fatalf("Append(no-stream) on an existing stream: %v", err)
	}
	if h := mustHead(t, ctx, l); h != res.LastPosition {
		t.Errorf("Head after a rejected append = %d, want %d", h, res.LastPosition)
	}
	res2 := mustAppend(t, ctx, l, st, domain.ExpectRevision(2), s.events(st, 1))
	if h := mustHead(t, ctx, l); h != res2.LastPosition || h <= res.LastPosition {
		t.Errorf("Head after a second append = %d, want %d", h, res2.LastPosition)
	}
}
