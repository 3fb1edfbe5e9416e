package eventlog

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

func (s *suite) roundTrip(t *testing.T) {
	l, ctx := s.open(t)
	st := s.stream("roundtrip")
	large := make([]byte, s.f.MaxDataSize)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range large {
		large[i] = byte(rng.Uint32())
	}
	evs := s.events(st, 5)
	evs[0].Schema = math.MaxUint16
	evs[0].Type = "Überweisung: 轉帳"
	evs[1].Data = nil
	evs[2].Data = []byte{}
	evs[3].OccurredAt = time.Date(2031, 12, 31, 23, 59, 59, 999_000_000, time.UTC)
	evs[4].Data = []byte{0, 0xff, 0, 0xfe}

	h0 := mustHead(t, ctx, l)
	res := mustAppend(t, ctx, l, st, domain.ExpectNoStream, evs)
	if res.LastRevision != 4 {
		t.Errorf("LastRevision = %d, want 4", res.LastRevision)
	}
	if res.FirstPosition <= h0 || res.LastPosition < res.FirstPosition {
		t.Errorf("AppendResult %+v after head %d: want head < first <= last", res, h0)
	}
	if s.f.ContiguousPositions && res.LastPosition != res.FirstPosition+4 {
		t.Errorf("AppendResult %+v: 5 events must take 5 contiguous positions", res)
	}
	big := []domain.Event{s.event(st, 5)}
	big[0].Data = large
	resBig := mustAppend(t, ctx, l, st, domain.ExpectRevision(4), big)
	if resBig.FirstPosition != resBig.LastPosition || resBig.FirstPosition <= res.LastPosition || resBig.LastRevision != 5 {
		t.Errorf("AppendResult of the large event %+v after %+v", resBig, res)
	}

	got := mustReadStream(t, ctx, l, st, 0, false, 100)
	want := append(s.placed(evs, 0, res, got), s.placed(big, 5, resBig, nil)...)
	if d := diffEvents(want, got); d != "" {
		t.Fatalf("ReadStream after append (-want +got):\n%s", d)
	}
	if !bytes.Equal(got[5].Data, large) {
		t.Fatalf("large data (%d bytes) did not round-trip", len(large))
	}
	s.positionsIncrease(t, got)
	if d := diffEvents(want, readAllOf(t, ctx, l, h0, st)); d != "" {
		t.Fatalf("ReadAll after append (-want +got):\n%s", d)
	}
	// Data returned is the caller's: changing it must not change the log.
	got[4].Data[0] = 42
	again := mustReadStream(t, ctx, l, st, 4, false, 1)
	if len(again) != 1 || !bytes.Equal(again[0].Data, evs[4].Data) {
		t.Fatalf("changing a returned event's Data changed the stored event")
	}
}

func (s *suite) expectedRevision(t *testing.T) {
	any_, none, exists := domain.ExpectAny, domain.ExpectNoStream, domain.ExpectStreamExists
	exact := domain.ExpectRevision
	cases := []struct {
		name     string
		pre      int // events already in the stream
		expected domain.ExpectedRevision
		ok       bool
	}{
		{"any on missing stream", 0, any_, true},
		{"any on existing stream", 2, any_, true},
		{"no-stream on missing stream", 0, none, true},
		{"no-stream on existing stream", 2, none, false},
		{"stream-exists on missing stream", 0, exists, false},
		{"stream-exists on existing stream", 2, exists, true},
		{"exact head", 2, exact(1), true},
		{"exact stale", 2, exact(0), false},
		{"exact ahead", 2, exact(2), false},
		{"exact far ahead", 2, exact(1000), false},
		{"exact 0 on missing stream", 0, exact(0), false},
	}
	l, ctx := s.open(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := s.stream("expected")
			pre := s.events(st, c.pre)
			if c.pre > 0 {
				mustAppend(t, ctx, l, st, none, pre)
			}
			evs := []domain.Event{s.event(st, 10), s.event(st, 11)}
			res, err := l.Append(ctx, st, c.expected, evs)
			after := mustReadStream(t, ctx, l, st, 0, false, 100)
			if c.ok {
				if err != nil {
					t.Fatalf("Append(expected %s) with %d events in the stream: %v", c.expected, c.pre, err)
				}
				if want := uint64(c.pre + 1); res.LastRevision != want {
					t.Errorf("LastRevision = %d, want %d", res.LastRevision, want)
				}
				if len(after) != c.pre+2 {
					t.Errorf("stream has %d events after the append, want %d", len(after), c.pre+2)
				}
				return
			}
			if !errors.Is(err, domain.ErrWrongExpectedRevision) {
				t.Fatalf("Append(expected %s) with %d events in the stream: err = %v, want ErrWrongExpectedRevision", c.expected, c.pre, err)
			}
			if len(after) != c.pre {
				t.Errorf("a rejected append changed the stream: %d events, want %d", len(after), c.pre)
			}
		})
	}
}

func (s *suite) idempotentRetry(t *testing.T) {
	l, ctx := s.open(t)
	st := s.stream("idem")
	batch := s.events(st, 3)
	res := mustAppend(t, ctx, l, st, domain.ExpectNoStream, batch)
	for _, exp := range []domain.ExpectedRevision{domain.ExpectNoStream, domain.ExpectAny, domain.ExpectRevision(0), domain.ExpectRevision(2)} {
		again, err := l.Append(ctx, st, exp, batch)
		if err != nil {
			t.Fatalf("retrying the same batch with expected %s: %v", exp, err)
		}
		if again != res {
			t.Errorf("retry with expected %s returned %+v, want the original %+v", exp, again, res)
		}
	}
	// Still the original result once more events are on top.
	mustAppend(t, ctx, l, st, domain.ExpectRevision(2), s.events(st, 2))
	again, err := l.Append(ctx, st, domain.ExpectNoStream, batch)
	if err != nil || again != res {
		t.Errorf("retry after later appends = %+v, %v; want %+v, nil", again, err, res)
	}
	got := mustReadStream(t, ctx, l, st, 0, false, 100)
	if len(got) != 5 {
		t.Fatalf("stream has %d events, want 5 (3 + 2, retries written once)", len(got))
	}
	if d := diffEvents(s.placed(batch, 0, res, got[:3]), got[:3]); d != "" {
		t.Errorf("retried batch (-want +got):\n%s", d)
	}
}

func (s *suite) partialDuplicate(t *testing.T) {
	l, ctx := s.open(t)
	st := s.stream("partial")
	batch := s.events(st, 2)
	mustAppend(t, ctx, l, st, domain.ExpectNoStream, batch)
	fresh := s.event(st, 7)
	for _, mixed := range [][]domain.Event{
		{batch[0], fresh},
		{fresh, batch[1]},
		{batch[0], batch[1], fresh},
	} {
		_, err := l.Append(ctx, st, domain.ExpectAny, mixed)
		if !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("append of %d events, some already in the stream: err = %v, want ErrInvalidArgument", len(mixed), err)
		}
	}
	if got := mustReadStream(t, ctx, l, st, 0, false, 100); len(got) != 2 {
		t.Fatalf("stream has %d events after rejected partial duplicates, want 2", len(got))
	}
}
