package eventlog

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// collect reads n events from sub, skipping other streams' events.
func collect(t *testing.T, ctx context.Context, sub commands.Subscription, n int, streams ...string) []domain.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var out []domain.Event
	for len(out) < n {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d of %d events: %v", len(out), n, err)
		}
		if slices.Contains(streams, e.Stream) {
			out = append(out, e)
		}
	}
	return out
}

// expectNothing checks that Next blocks (returns the context's deadline)
// when no event of streams is appended.
func expectNothing(t *testing.T, ctx context.Context, sub commands.Subscription, streams ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	for {
		e, err := sub.Next(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return
		}
		if err != nil {
			t.Fatalf("Next with nothing to deliver: %v, want context.DeadlineExceeded", err)
		}
		if slices.Contains(streams, e.Stream) {
			t.Fatalf("Next delivered %s (revision %d, position %d) again or out of nowhere", e.Stream, e.Revision, e.Position)
		}
	}
}

func (s *suite) subscribeCatchUpThenLive(t *testing.T) {
	l, ctx := s.open(t)
	st := s.stream("sub")
	evs := s.events(st, 8)
	res := mustAppend(t, ctx, l, st, domain.ExpectNoStream, evs[:5])
	stored := mustReadStream(t, ctx, l, st, 0, false, 5)
	sub, err := l.Subscribe(ctx, stored[1].Position)
	if err != nil {
		t.Fatalf("Subscribe(after %d): %v", stored[1].Position, err)
	}
	defer sub.Close()
	got := collect(t, ctx, sub, 3, st)
	if d := diffEvents(stored[2:5], got); d != "" {
		t.Fatalf("catch-up from the middle (-want +got):\n%s", d)
	}
	expectNothing(t, ctx, sub, st)

	// Live: Next is blocked when the appends happen.
	type result struct {
		evs []domain.Event
		err error
	}
	done := make(chan result, 1)
	go func() {
		var out []domain.Event
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		for len(out) < 3 {
			e, err := sub.Next(ctx)
			if err != nil {
				done <- result{out, err}
				return
			}
			if e.Stream == st {
				out = append(out, e)
			}
		}
		done <- result{out, nil}
	}()
	time.Sleep(50 * time.Millisecond)
	r1 := mustAppend(t, ctx, l, st, domain.ExpectRevision(4), evs[5:7])
	time.Sleep(20 * time.Millisecond)
	r2 := mustAppend(t, ctx, l, st, domain.ExpectRevision(6), evs[7:8])
	r := <-done
	if r.err != nil {
		t.Fatalf("Next while live, after %d events: %v", len(r.evs), r.err)
	}
	live := r.evs
	liveStored := mustReadStream(t, ctx, l, st, 5, false, 3)
	want := append(s.placed(evs[5:7], 5, r1, liveStored[:2]), s.placed(evs[7:8], 7, r2, nil)...)
	if d := diffEvents(want, live); d != "" {
		t.Fatalf("live events (-want +got):\n%s", d)
	}
	if live[0].Position <= res.LastPosition {
		t.Errorf("live event at position %d, not after the caught-up %d", live[0].Position, res.LastPosition)
	}
	s.positionsIncrease(t, append(got, live...))
	expectNothing(t, ctx, sub, st)
}

func (s *suite) subscribeFromStart(t *testing.T) {
	l, ctx := s.open(t)
	st := s.stream("subzero")
	h0 := mustHead(t, ctx, l)
	mustAppend(t, ctx, l, st, domain.ExpectNoStream, s.events(st, 4))
	sub, err := l.Subscribe(ctx, h0)
	if err != nil {
		t.Fatalf("Subscribe(after %d): %v", h0, err)
	}
	defer sub.Close()
	got := collect(t, ctx, sub, 4, st)
	if d := diffEvents(mustReadStream(t, ctx, l, st, 0, false, 10), got); d != "" {
		t.Fatalf("catch-up from the head before the appends (-want +got):\n%s", d)
	}
	expectNothing(t, ctx, sub, st)
}

func (s *suite) subscriptionContext(t *testing.T) {
	l, ctx := s.open(t)
	h := mustHead(t, ctx, l)
	sub, err := l.Subscribe(ctx, h)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sub.Close()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := sub.Next(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with a cancelled context: %v, want context.Canceled", err)
	}
	// Cancelling wakes a Next that is blocked.
	cctx, cancel = context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := sub.Next(cctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("blocked Next after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked Next did not return within 5s of its context being cancelled")
	}
	// The subscription still works after a cancelled Next.
	st := s.stream("subctx")
	mustAppend(t, ctx, l, st, domain.ExpectNoStream, s.events(st, 1))
	if got := collect(t, ctx, sub, 1, st); got[0].Revision != 0 {
		t.Errorf("Next after a cancelled Next delivered revision %d, want 0", got[0].Revision)
	}
}

func (s *suite) subscriptionClose(t *testing.T) {
	l, ctx := s.open(t)
	h := mustHead(t, ctx, l)
	sub, err := l.Subscribe(ctx, h)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := sub.Next(ctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := sub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, domain.ErrUnavailable) {
			t.Errorf("blocked Next after Close: %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked Next did not return within 5s of Close")
	}
	if err := sub.Close(); err != nil {
		t.Errorf("second Close: %v (Close is idempotent)", err)
	}
	st := s.stream("subclose")
	mustAppend(t, ctx, l, st, domain.ExpectNoStream, s.events(st, 1))
	if _, err := sub.Next(ctx); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("Next after Close: %v, want ErrUnavailable", err)
	}
}
