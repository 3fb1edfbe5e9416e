package natsjs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// logN numbers the logs of a test binary, so that each gets its own
// JetStream stream and subjects.
var logN atomic.Int64

// uniqueOptions returns options naming a stream and subject prefix no other
// log of this test binary uses.
func uniqueOptions() Options {
	n := logN.Add(1)
	return Options{Stream: fmt.Sprintf("TEST_LOG_%d", n), SubjectPrefix: fmt.Sprintf("test.log%d", n)}
}

// MustOpen opens a log on the server at url and closes it when the test
// ends.
func MustOpen(tb testing.TB, url string, opts Options) *Log {
	tb.Helper()
	l, err := Open(tb.Context(), url, opts)
	if err != nil {
		tb.Fatalf("Open(%s, %+v): %v", url, opts, err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l
}

// TestEventLogConformance runs the suite on one server, with single-event
// appends as a claim and the event (the default on one replica) and as
// atomic batches.
func TestEventLogConformance(t *testing.T) {
	url, _ := natsserver.Start(t)
	for _, claims := range []bool{true, false} {
		t.Run(fmt.Sprintf("claims=%v", claims), func(t *testing.T) {
			eventlog.Run(t, func(t *testing.T) commands.EventLog {
				l, err := Open(t.Context(), url, uniqueOptions())
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				l.claimSingle = claims
				return l
			}, eventlog.Features{ContiguousPositions: false, MaxDataSize: 4 << 20})
		})
	}
}

func mustAppend(tb testing.TB, l *Log, stream string, exp domain.ExpectedRevision, evs []domain.Event) commands.AppendResult {
	tb.Helper()
	res, err := l.Append(tb.Context(), stream, exp, evs)
	if err != nil {
		tb.Fatalf("Append(%s, %s, %d events): %v", stream, exp, len(evs), err)
	}
	return res
}

func mustReadStream(tb testing.TB, l *Log, stream string) []domain.Event {
	tb.Helper()
	evs, err := l.ReadStream(tb.Context(), stream, 0, false, 1<<20)
	if err != nil {
		tb.Fatalf("ReadStream(%s): %v", stream, err)
	}
	return evs
}

// TestRaceBetweenLogs has two Logs, each on its own connection, append to
// one stream, all expecting the same revision in each round: exactly one
// batch wins each revision, whichever Log it came from.
func TestRaceBetweenLogs(t *testing.T) {
	url, _ := natsserver.Start(t)
	opts := uniqueOptions()
	for _, claims := range []bool{true, false} {
		t.Run(fmt.Sprintf("claims=%v", claims), func(t *testing.T) {
			logs := []*Log{MustOpen(t, url, opts), MustOpen(t, url, opts)}
			for _, l := range logs {
				l.claimSingle = claims
			}
			raceBetweenLogs(t, logs, fmt.Sprintf("kms-race-%v", claims))
		})
	}
}

// raceBetweenLogs has logs append single events to stream, all expecting
// the same revision in each round: exactly one wins each revision.
func raceBetweenLogs(t *testing.T, logs []*Log, stream string) {
	const rounds, perLog = 20, 3
	var winners []domain.Event
	seed := uint64(0)
	for round := range rounds {
		exp := domain.ExpectNoStream
		if round > 0 {
			exp = domain.ExpectRevision(uint64(round - 1))
		}
		type outcome struct {
			ev  domain.Event
			err error
		}
		outs := make(chan outcome, len(logs)*perLog)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, l := range logs {
			for range perLog {
				seed++
				ev := eventlog.Events(stream, seed, 1)[0]
				wg.Go(func() {
					<-start
					res, err := l.Append(t.Context(), stream, exp, []domain.Event{ev})
					if err == nil && res.LastRevision != uint64(round) {
						err = fmt.Errorf("won with revision %d, want %d", res.LastRevision, round)
					}
					outs <- outcome{ev, err}
				})
			}
		}
		close(start)
		wg.Wait()
		close(outs)
		won := 0
		for o := range outs {
			switch {
			case o.err == nil:
				won++
				winners = append(winners, o.ev)
			case !errors.Is(o.err, domain.ErrWrongExpectedRevision):
				t.Fatalf("round %d: %v", round, o.err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d (expected %s): %d appends won, want exactly 1", round, exp, won)
		}
	}
	for i, l := range logs {
		got := mustReadStream(t, l, stream)
		if len(got) != rounds {
			t.Fatalf("log %d reads %d events, want %d", i, len(got), rounds)
		}
		for r, e := range got {
			if e.Revision != uint64(r) || e.ID != winners[r].ID {
				t.Fatalf("log %d: revision %d holds %s (revision %d), want the winner %s", i, r, e.ID, e.Revision, winners[r].ID)
			}
		}
	}
}

// TestRetryAcrossLogs retries a batch through another Log (which has no
// cached state): it is recognised as a retry, and its IDs in another stream
// are refused.
func TestRetryAcrossLogs(t *testing.T) {
	url, _ := natsserver.Start(t)
	opts := uniqueOptions()
	a, b := MustOpen(t, url, opts), MustOpen(t, url, opts)
	evs := eventlog.Events("kms-retry", 1, 3)
	res := mustAppend(t, a, "kms-retry", domain.ExpectNoStream, evs)
	again, err := b.Append(t.Context(), "kms-retry", domain.ExpectNoStream, evs)
	if err != nil || again != res {
		t.Fatalf("retry through another log = %+v, %v; want %+v", again, err, res)
	}
	moved := slices.Clone(evs)
	for i := range moved {
		moved[i].Stream = "kms-other"
	}
	if _, err := b.Append(t.Context(), "kms-other", domain.ExpectAny, moved); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("event IDs of another stream: %v, want ErrInvalidArgument", err)
	}
	if got := mustReadStream(t, b, "kms-other"); len(got) != 0 {
		t.Fatalf("refused batch wrote %d events", len(got))
	}
}

// TestRestart appends, restarts the server on the same store and port, and
// reads everything back; a subscription opened before the restart resumes
// where it was, and appends work again through the same Log.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	srv := natsserver.StartAt(t, dir, -1)
	opts := uniqueOptions()
	l := MustOpen(t, srv.URL, opts)
	ctx := t.Context()

	const stream = "kms-restart"
	evs := eventlog.Events(stream, 7, 12)
	r1 := mustAppend(t, l, stream, domain.ExpectNoStream, evs[:5])
	r2 := mustAppend(t, l, stream, domain.ExpectRevision(4), evs[5:8])
	sub, err := l.Subscribe(ctx, 0)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sub.Close()
	before := collect(t, sub, 8)
	before8 := mustReadStream(t, l, stream)

	srv.Stop()
	srv = natsserver.StartAt(t, dir, srv.Port)

	// Reads work again once the client has reconnected.
	var after []domain.Event
	waitFor(t, 10*time.Second, func() error {
		after, err = l.ReadStream(ctx, stream, 0, false, 100)
		return err
	})
	if d := cmp.Diff(before8, after); d != "" {
		t.Fatalf("stream after restart (-before +after):\n%s", d)
	}
	if h, err := l.Head(ctx); err != nil || h != r2.LastPosition {
		t.Fatalf("Head after restart = %d, %v; want %d", h, err, r2.LastPosition)
	}
	// A retry of a batch written before the restart is still recognised.
	if again, err := l.Append(ctx, stream, domain.ExpectNoStream, evs[:5]); err != nil || again != r1 {
		t.Fatalf("retry after restart = %+v, %v; want %+v", again, err, r1)
	}
	var r3 commands.AppendResult
	waitFor(t, 10*time.Second, func() error {
		r3, err = l.Append(ctx, stream, domain.ExpectRevision(7), evs[8:])
		return err
	})
	if r3.LastRevision != 11 || r3.FirstPosition <= r2.LastPosition {
		t.Fatalf("append after restart = %+v, after %+v", r3, r2)
	}
	// The subscription resumes after the last event it delivered.
	live := collect(t, sub, 4)
	all := mustReadStream(t, l, stream)
	if d := cmp.Diff(all, append(before, live...)); d != "" {
		t.Fatalf("subscription across the restart (-stream +delivered):\n%s", d)
	}

	// A new Log on the restarted server sees the same log.
	l2 := MustOpen(t, srv.URL, opts)
	if d := cmp.Diff(all, mustReadStream(t, l2, stream)); d != "" {
		t.Fatalf("new log after restart (-old +new):\n%s", d)
	}
}

// TestReadStreamSearch reads from every revision of streams interleaved with
// others, forwards and backwards, so that the binary search for a
// revision's sequence meets every shape of gap.
func TestReadStreamSearch(t *testing.T) {
	url, _ := natsserver.Start(t)
	l := MustOpen(t, url, uniqueOptions())
	rng := rand.New(rand.NewPCG(3, 4))
	streams := []string{"kms-a", "kms-b", "kms-c.with dots*and>wild~cards"}
	want := map[string][]domain.Event{}
	for i := range 60 {
		st := streams[rng.IntN(len(streams))]
		n := 1 + rng.IntN(4)
		evs := eventlog.Events(st, uint64(i), n)
		mustAppend(t, l, st, domain.ExpectAny, evs)
		want[st] = append(want[st], evs...)
	}
	for _, st := range streams {
		all := mustReadStream(t, l, st)
		if len(all) != len(want[st]) {
			t.Fatalf("%s: %d events, want %d", st, len(all), len(want[st]))
		}
		for i, e := range all {
			if e.ID != want[st][i].ID || e.Revision != uint64(i) || e.Stream != st {
				t.Fatalf("%s revision %d: got %s (revision %d, stream %q)", st, i, e.ID, e.Revision, e.Stream)
			}
		}
		for from := range len(all) {
			for _, limit := range []int{1, 2, 5} {
				got, err := l.ReadStream(t.Context(), st, uint64(from), false, limit)
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(all[from:min(from+limit, len(all))], got); d != "" {
					t.Fatalf("%s from %d limit %d (-want +got):\n%s", st, from, limit, d)
				}
				got, err = l.ReadStream(t.Context(), st, uint64(from), true, limit)
				if err != nil {
					t.Fatal(err)
				}
				wantBack := slices.Clone(all[max(0, from-limit+1) : from+1])
				slices.Reverse(wantBack)
				if d := cmp.Diff(wantBack, got); d != "" {
					t.Fatalf("%s from %d backwards limit %d (-want +got):\n%s", st, from, limit, d)
				}
			}
		}
	}
}

// TestOpenErrors checks the errors of Open.
func TestOpenErrors(t *testing.T) {
	if _, err := Open(t.Context(), "nats://127.0.0.1:1", Options{}); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("Open with no server: %v, want ErrUnavailable", err)
	}
	err := Options{Stream: "a.b", SubjectPrefix: "x.*", Replicas: 9}.Validate()
	if !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("Validate: %v, want ErrInvalidArgument", err)
	}
	url, _ := natsserver.Start(t)
	opts := uniqueOptions()
	l := MustOpen(t, url, opts)
	if err := l.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	// Opening again is idempotent.
	MustOpen(t, url, opts)
	_ = l.Close()
	if err := l.Ping(t.Context()); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("Ping after Close: %v, want ErrUnavailable", err)
	}
}

// TestTooLarge checks the batch and event size limits.
func TestTooLarge(t *testing.T) {
	url, _ := natsserver.Start(t)
	l := MustOpen(t, url, uniqueOptions())
	evs := eventlog.Events("kms-big", 1, MaxBatchEvents+1)
	if _, err := l.Append(t.Context(), "kms-big", domain.ExpectAny, evs); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("batch of %d events: %v, want ErrInvalidArgument", len(evs), err)
	}
	mustAppend(t, l, "kms-big", domain.ExpectNoStream, evs[:MaxBatchEvents])
	big := eventlog.Events("kms-big", 2, 1)
	big[0].Data = make([]byte, natsserver.MaxPayload)
	if _, err := l.Append(t.Context(), "kms-big", domain.ExpectAny, big); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("event of %d bytes: %v, want ErrInvalidArgument", len(big[0].Data), err)
	}
	if got := mustReadStream(t, l, "kms-big"); len(got) != MaxBatchEvents {
		t.Errorf("stream has %d events, want %d", len(got), MaxBatchEvents)
	}
}

func TestSubjectToken(t *testing.T) {
	tests := map[string]string{
		"kms-kms_01ARZ3NDEKTSV4RRFFQ69G5FAV": "kms-kms_01ARZ3NDEKTSV4RRFFQ69G5FAV",
		"a.b":                                "a~2Eb",
		"a b*>~":                             "a~20b~2A~3E~7E",
		"ü":                                  "~C3~BC",
	}
	for in, want := range tests {
		if got := subjectToken(in); got != want {
			t.Errorf("subjectToken(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSubjectToken(f *testing.F) {
	f.Add("kms-x", "kms-x~2E")
	f.Add("a.b", "a~2Eb")
	f.Fuzz(func(t *testing.T, a, b string) {
		ta, tb := subjectToken(a), subjectToken(b)
		if (a == b) != (ta == tb) {
			t.Fatalf("subjectToken(%q) = %q, subjectToken(%q) = %q", a, ta, b, tb)
		}
		for i := 0; i < len(ta); i++ {
			if c := ta[i]; !tokenSafe(c) && c != escape {
				t.Fatalf("subjectToken(%q) = %q holds %q", a, ta, c)
			}
		}
	})
}

// collect reads n events from sub.
func collect(tb testing.TB, sub commands.Subscription, n int) []domain.Event {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 20*time.Second)
	defer cancel()
	out := make([]domain.Event, 0, n)
	for len(out) < n {
		e, err := sub.Next(ctx)
		if err != nil {
			tb.Fatalf("Next after %d of %d events: %v", len(out), n, err)
		}
		out = append(out, e)
	}
	return out
}

// waitFor retries fn until it succeeds or d has passed.
func waitFor(tb testing.TB, d time.Duration, fn func() error) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("still failing after %s: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestInterruptedAppends plays an appender that dies in the middle of a
// batch (no commit: nothing is visible, and the batch can be appended
// again) and one whose commit goes through but whose answer is lost (the
// retry returns the original result).
func TestInterruptedAppends(t *testing.T) {
	url, _ := natsserver.Start(t)
	l := MustOpen(t, url, uniqueOptions())
	ctx := t.Context()
	const stream = "kms-interrupted"
	mustAppend(t, l, "kms-before", domain.ExpectNoStream, eventlog.Events("kms-before", 1, 1))
	h0, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}

	evs := eventlog.Events(stream, 2, 3)
	b, err := l.newBatch(stream, evs)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := l.groupMsgs([]*pending{{b: b}}, "dies-before-commit")
	for _, m := range msgs[:len(msgs)-1] {
		if err := l.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := mustReadStream(t, l, stream); len(got) != 0 {
		t.Fatalf("an uncommitted batch shows %d events", len(got))
	}
	if h, err := l.Head(ctx); err != nil || h != h0 {
		t.Fatalf("Head with an uncommitted batch = %d, %v; want %d", h, err, h0)
	}
	res := mustAppend(t, l, stream, domain.ExpectNoStream, evs)
	if res.LastRevision != 2 || res.FirstPosition <= h0 {
		t.Fatalf("append after an abandoned batch = %+v", res)
	}

	// The commit arrives but its answer does not (no reply subject).
	more := eventlog.Events(stream, 3, 2)
	b, err = l.newBatch(stream, more)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ = l.groupMsgs([]*pending{{b: b, prev: tail{exists: true, rev: res.LastRevision, seq: res.LastPosition}}}, "answer-lost")
	for _, m := range msgs {
		if err := l.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	var got []domain.Event
	waitFor(t, 5*time.Second, func() error {
		if got = mustReadStream(t, l, stream); len(got) != 5 {
			return fmt.Errorf("stream has %d events, want 5", len(got))
		}
		return nil
	})
	want := commands.AppendResult{FirstPosition: got[3].Position, LastPosition: got[4].Position, LastRevision: 4}
	for _, exp := range []domain.ExpectedRevision{domain.ExpectRevision(2), domain.ExpectAny, domain.ExpectNoStream} {
		again, err := l.Append(ctx, stream, exp, more)
		if err != nil || again != want {
			t.Fatalf("retry (expected %s) of a batch whose answer was lost = %+v, %v; want %+v", exp, again, err, want)
		}
	}
	if got := mustReadStream(t, l, stream); len(got) != 5 {
		t.Fatalf("retries wrote: stream has %d events, want 5", len(got))
	}
}

// TestGroupCommit appends from many goroutines while another Log appends to
// the same streams, so that groups form and some are refused (a member's
// cached head is stale, or it expects a wrong revision): every append still
// gets its own answer, and the streams end up gapless with every
// acknowledged event once.
func TestGroupCommit(t *testing.T) {
	url, _ := natsserver.Start(t)
	opts := uniqueOptions()
	a, other := MustOpen(t, url, opts), MustOpen(t, url, opts)
	a.claimSingle = false // single events go through the committers too
	ctx := t.Context()
	const nStreams, rounds = 6, 15
	streams := make([]string, nStreams)
	for i := range streams {
		streams[i] = fmt.Sprintf("kms-group-%d", i)
	}
	var mu sync.Mutex
	acked := map[string][]domain.EventID{}
	seed := uint64(0)
	for round := range rounds {
		// The other Log moves every stream: a's cached heads go stale.
		for _, st := range streams {
			seed++
			ev := eventlog.Events(st, seed, 1)
			mustAppend(t, other, st, domain.ExpectAny, ev)
			acked[st] = append(acked[st], ev[0].ID)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, st := range streams {
			seed++
			evs := eventlog.Events(st, seed, 1+i%3)
			wrong := i == 0 && round%2 == 0
			wg.Go(func() {
				<-start
				exp := domain.ExpectAny
				if wrong {
					exp = domain.ExpectRevision(1 << 40)
				}
				res, err := a.Append(ctx, st, exp, evs)
				if wrong {
					if !errors.Is(err, domain.ErrWrongExpectedRevision) {
						t.Errorf("round %d, %s: expected a wrong revision: %v", round, st, err)
					}
					return
				}
				if err != nil {
					t.Errorf("round %d, %s: %v", round, st, err)
					return
				}
				if res.LastPosition-res.FirstPosition != uint64(len(evs)-1) {
					t.Errorf("round %d, %s: %d events at %+v", round, st, len(evs), res)
				}
				mu.Lock()
				for _, e := range evs {
					acked[st] = append(acked[st], e.ID)
				}
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	for _, st := range streams {
		got := mustReadStream(t, a, st)
		ids := make(map[domain.EventID]bool, len(got))
		for i, e := range got {
			if e.Revision != uint64(i) {
				t.Fatalf("%s: event %d has revision %d", st, i, e.Revision)
			}
			ids[e.ID] = true
		}
		if len(got) != len(acked[st]) {
			t.Fatalf("%s has %d events, %d were acknowledged", st, len(got), len(acked[st]))
		}
		for _, id := range acked[st] {
			if !ids[id] {
				t.Fatalf("%s: acknowledged event %s is missing", st, id)
			}
		}
	}
	t.Logf("%d groups of several appends, %d refused", a.groups.Load(), a.groupsRefused.Load())
	if a.groups.Load() == 0 || a.groupsRefused.Load() == 0 {
		t.Logf("the test did not exercise refused groups this time")
	}
}
