package esdb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
)

// The tests in this file need a server: they run when KMSBACKUP_ESDB_URL
// names one.
const urlEnv = "KMSBACKUP_ESDB_URL"

// serverURL returns the server's connection string, or skips the test.
func serverURL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv(urlEnv)
	if url == "" {
		tb.Skipf("%s not set: start EventStoreDB (docker run -p 2113:2113 eventstore/eventstore --insecure --run-projections=All) and set %s=esdb://localhost:2113?tls=false", urlEnv, urlEnv)
	}
	return url
}

// testPrefixes are the default prefixes plus those of this package's
// tests and of the conformance suite (conf<what>-<run>-<n>).
func testPrefixes() []string {
	return append(DefaultStreamPrefixes(), "conf", "esdbtest-")
}

// MustOpen opens the log of the server in KMSBACKUP_ESDB_URL (skipping the
// test without one) and closes it when the test ends.
func MustOpen(tb testing.TB, opts Options) *Log {
	tb.Helper()
	url := serverURL(tb)
	if opts.StreamPrefixes == nil {
		opts.StreamPrefixes = testPrefixes()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, url, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l
}

func TestEventLogConformance(t *testing.T) {
	url := serverURL(t)
	eventlog.Run(t, func(t *testing.T) commands.EventLog {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		l, err := Open(ctx, url, Options{StreamPrefixes: testPrefixes(), Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return l
	}, eventlog.Features{
		ContiguousPositions: false,
		// The server's default maximum append size is 1 MiB for data,
		// metadata and type together.
		MaxDataSize: 512 << 10,
	})
}

// uniqueStream is a stream name no earlier run used.
func uniqueStream(what string) string {
	return fmt.Sprintf("esdbtest-%s-%s", what, ulid.Make())
}

// freshEvents returns n events of stream with new IDs.
func freshEvents(stream string, n int) []domain.Event {
	out := make([]domain.Event, n)
	for i := range out {
		out[i] = testEvent(stream, i)
		out[i].ID = ulid.Make()
		out[i].Data = fmt.Appendf(nil, "event %d of %s", i, stream)
	}
	return out
}

// TestConcurrentRetries sends the same batch from several goroutines at
// once: EventStoreDB takes one, the others find it (through the server's
// idempotency or the adapter's tail check), all get the same result, and
// the stream holds one copy.
func TestConcurrentRetries(t *testing.T) {
	l := MustOpen(t, Options{Logger: testLogger(t)})
	ctx := context.Background()
	for round := range 5 {
		st := uniqueStream(fmt.Sprintf("retry%d", round))
		evs := freshEvents(st, 3)
		exp := []domain.ExpectedRevision{domain.ExpectNoStream, domain.ExpectAny, domain.ExpectNoStream, domain.ExpectAny}
		results := make([]commands.AppendResult, len(exp))
		errs := make([]error, len(exp))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range exp {
			wg.Go(func() {
				<-start
				results[i], errs[i] = l.Append(ctx, st, exp[i], evs)
			})
		}
		close(start)
		wg.Wait()
		for i := range results {
			if errs[i] != nil || results[i] != results[0] {
				t.Fatalf("round %d: call %d (expected %s) = %+v, %v; call 0 = %+v", round, i, exp[i], results[i], errs[i], results[0])
			}
		}
		got, err := l.ReadStream(ctx, st, 0, false, 10)
		if err != nil || len(got) != 3 {
			t.Fatalf("round %d: stream has %d events, %v; want 3", round, len(got), err)
		}
	}
}

// TestWrongExpectedRevisionRace races appenders with their own batches on
// one revision: one wins, the others get ErrWrongExpectedRevision and
// nothing of theirs is written; a loser's batch then goes in on the new
// head, and the winner's retry, with its stale expectation, is still
// answered with its original result.
func TestWrongExpectedRevisionRace(t *testing.T) {
	l := MustOpen(t, Options{Logger: testLogger(t)})
	ctx := context.Background()
	st := uniqueStream("race")
	const appenders = 8
	batches := make([][]domain.Event, appenders)
	for i := range batches {
		batches[i] = freshEvents(st, 2)
	}
	results := make([]commands.AppendResult, appenders)
	errs := make([]error, appenders)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range appenders {
		wg.Go(func() {
			<-start
			results[i], errs[i] = l.Append(ctx, st, domain.ExpectNoStream, batches[i])
		})
	}
	close(start)
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if won >= 0 {
				t.Fatalf("appenders %d and %d both won", won, i)
			}
			won = i
		case !errors.Is(err, domain.ErrWrongExpectedRevision):
			t.Fatalf("appender %d: %v, want ErrWrongExpectedRevision", i, err)
		}
	}
	if won < 0 {
		t.Fatal("nobody won")
	}
	if results[won].LastRevision != 1 || results[won].FirstPosition >= results[won].LastPosition {
		t.Fatalf("winner's result %+v", results[won])
	}
	loser := (won + 1) % appenders
	res, err := l.Append(ctx, st, domain.ExpectRevision(1), batches[loser])
	if err != nil || res.LastRevision != 3 || res.FirstPosition <= results[won].LastPosition {
		t.Fatalf("loser's batch on the new head = %+v, %v", res, err)
	}
	again, err := l.Append(ctx, st, domain.ExpectNoStream, batches[won])
	if err != nil || again != results[won] {
		t.Fatalf("winner's retry = %+v, %v; want %+v", again, err, results[won])
	}
	got, err := l.ReadStream(ctx, st, 0, false, 100)
	if err != nil || len(got) != 4 || got[0].ID != batches[won][0].ID || got[2].ID != batches[loser][0].ID {
		t.Fatalf("stream after the race: %d events, %v", len(got), err)
	}
}

// TestRetryOutsideTheWindow retries a batch buried under later events,
// beyond RetryWindow: recognised when it expects what the original did.
func TestRetryOutsideTheWindow(t *testing.T) {
	l := MustOpen(t, Options{Logger: testLogger(t), RetryWindow: 2})
	ctx := context.Background()
	st := uniqueStream("window")
	batch := freshEvents(st, 3)
	res, err := l.Append(ctx, st, domain.ExpectNoStream, batch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, st, domain.ExpectRevision(2), freshEvents(st, 5)); err != nil {
		t.Fatal(err)
	}
	again, err := l.Append(ctx, st, domain.ExpectNoStream, batch)
	if err != nil || again != res {
		t.Fatalf("retry beyond the window = %+v, %v; want %+v", again, err, res)
	}
	mixed := []domain.Event{batch[0], freshEvents(st, 1)[0]}
	if _, err := l.Append(ctx, st, domain.ExpectNoStream, mixed); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("partial retry beyond the window: %v, want ErrInvalidArgument", err)
	}
}

// TestResubscribeAfterDrop drops the client subscription under a live
// subscription, twice, while events are appended: the consumer sees every
// event once, in order.
func TestResubscribeAfterDrop(t *testing.T) {
	l := MustOpen(t, Options{Logger: testLogger(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := uniqueStream("resub")
	h, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := l.Subscribe(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	s := sub.(*subscription)
	drop := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			s.mu.Lock()
			cur := s.current
			s.mu.Unlock()
			if cur != nil {
				_ = cur.Close()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("no client subscription to drop")
	}
	const total = 30
	evs := freshEvents(st, total)
	rng := rand.New(rand.NewPCG(1, 2))
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range evs {
			exp := domain.ExpectRevision(uint64(i - 1))
			if i == 0 {
				exp = domain.ExpectNoStream
			}
			if _, err := l.Append(ctx, st, exp, evs[i:i+1]); err != nil {
				t.Errorf("append %d: %v", i, err)
				return
			}
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		}
	})
	var got []domain.Event
	last := h
	for len(got) < total {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d events: %v", len(got), err)
		}
		if e.Position <= last {
			t.Fatalf("position %d delivered after %d", e.Position, last)
		}
		last = e.Position
		if e.Stream != st {
			continue
		}
		if e.Revision != uint64(len(got)) || e.ID != evs[len(got)].ID {
			t.Fatalf("got revision %d (%s), want revision %d: a gap or a duplicate", e.Revision, e.ID, len(got))
		}
		got = append(got, e)
		if len(got) == 5 || len(got) == 17 {
			drop()
		}
	}
	wg.Wait()
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	for {
		e, err := sub.Next(short)
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("Next after the last event: %v", err)
		}
		if e.Stream == st {
			t.Fatalf("revision %d delivered again", e.Revision)
		}
	}
}

// TestReadAllFromAnyPosition reads $all after positions that are no
// event's, which EventStoreDB refuses to read from.
func TestReadAllFromAnyPosition(t *testing.T) {
	l := MustOpen(t, Options{Logger: testLogger(t)})
	ctx := context.Background()
	st := uniqueStream("anypos")
	res, err := l.Append(ctx, st, domain.ExpectNoStream, freshEvents(st, 3))
	if err != nil {
		t.Fatal(err)
	}
	stored, err := l.ReadStream(ctx, st, 0, false, 3)
	if err != nil || len(stored) != 3 {
		t.Fatalf("ReadStream: %d events, %v", len(stored), err)
	}
	for _, after := range []uint64{stored[1].Position - 1, stored[0].Position + 1, stored[1].Position - 7} {
		page, err := l.ReadAll(ctx, after, 1)
		if err != nil || len(page) != 1 || page[0].ID != stored[1].ID {
			t.Errorf("ReadAll(after %d, max 1) = %d events, %v; want the event at %d", after, len(page), err, stored[1].Position)
		}
	}
	sub, err := l.Subscribe(ctx, stored[1].Position-1)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	nctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, want := range stored[1:] {
		e, err := sub.Next(nctx)
		if err != nil || e.ID != want.ID {
			t.Fatalf("Next = %s, %v; want %s", e.ID, err, want.ID)
		}
	}
	if h, err := l.Head(ctx); err != nil || h < res.LastPosition {
		t.Fatalf("Head = %d, %v", h, err)
	}
}
