package natsjs

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// idMessage returns the last message on id's subject, decoded.
func idMessage(tb testing.TB, l *Log, id domain.EventID) (stored, marker) {
	tb.Helper()
	m, found, err := l.getOne(tb.Context(), "test", directRequest{LastFor: l.idSubject(id)})
	if err != nil || !found {
		tb.Fatalf("the subject of event ID %s: found %v, %v", id, found, err)
	}
	mk, err := decodeMarker(m.seq, m.data)
	if err != nil {
		tb.Fatal(err)
	}
	return m, mk
}

// putClaim publishes a claim of ev's ID for revision rev after sequence
// after of ev's stream, as an appender does before its event, on
// condition that the ID's subject ends at expect.
func putClaim(tb testing.TB, l *Log, ev domain.Event, rev, after, expect uint64) uint64 {
	tb.Helper()
	b, err := l.newBatch(ev.Stream, []domain.Event{ev})
	if err != nil {
		tb.Fatal(err)
	}
	claim := appendMarker(nil, marker{claim: true, rev: rev, after: after, stream: ev.Stream})
	seq, err := l.publish(tb.Context(), b, l.idSubject(ev.ID), claim, expect)
	if err != nil {
		tb.Fatalf("publish a claim: %v", err)
	}
	return seq
}

// putEvent publishes ev at revision rev on condition that its stream ends
// at sequence after, as an appender does after its claim.
func putEvent(tb testing.TB, l *Log, ev domain.Event, rev, after uint64) (uint64, error) {
	tb.Helper()
	b, err := l.newBatch(ev.Stream, []domain.Event{ev})
	if err != nil {
		tb.Fatal(err)
	}
	domain.SetEventRecordRevision(b.recs[0], rev)
	return l.publish(tb.Context(), b, b.subject, b.recs[0], after)
}

// countID counts the events of the whole log that carry id.
func countID(tb testing.TB, l *Log, id domain.EventID) int {
	tb.Helper()
	n, after := 0, uint64(0)
	for {
		page, err := l.ReadAll(tb.Context(), after, 1000)
		if err != nil {
			tb.Fatal(err)
		}
		if len(page) == 0 {
			return n
		}
		for _, e := range page {
			if e.ID == id {
				n++
			}
		}
		after = page[len(page)-1].Position
	}
}

// TestSingleAppendClaims checks that on a one-replica stream an append of
// one event writes a claim of its ID (not a batch marker) that points at
// it, that an append of several events writes markers, and that Head
// skips a claim left at the end of the log.
func TestSingleAppendClaims(t *testing.T) {
	url, _ := natsserver.Start(t)
	l := MustOpen(t, url, uniqueOptions())
	const stream = "kms-claims"
	evs := eventlog.Events(stream, 1, 4)
	r0 := mustAppend(t, l, stream, domain.ExpectNoStream, evs[:1])
	r1 := mustAppend(t, l, stream, domain.ExpectRevision(0), evs[1:2])
	if r0.LastRevision != 0 || r1.LastRevision != 1 || r1.FirstPosition != r1.LastPosition {
		t.Fatalf("single appends: %+v, %+v", r0, r1)
	}
	m, mk := idMessage(t, l, evs[1].ID)
	if want := (marker{claim: true, rev: 1, after: r0.LastPosition, stream: stream}); mk != want {
		t.Fatalf("the ID of a single append holds %+v, want the claim %+v", mk, want)
	}
	if m.seq >= r1.LastPosition {
		t.Fatalf("the claim (sequence %d) is not before its event (%d)", m.seq, r1.LastPosition)
	}
	r2 := mustAppend(t, l, stream, domain.ExpectRevision(1), evs[2:])
	if _, mk := idMessage(t, l, evs[2].ID); mk.claim {
		t.Fatalf("the ID of a batch append holds a claim: %+v", mk)
	}
	// A claim that lost its place, left at the end of the log.
	late := eventlog.Events(stream, 2, 1)[0]
	putClaim(t, l, late, 0, 0, 0)
	if h, err := l.Head(t.Context()); err != nil || h != r2.LastPosition {
		t.Fatalf("Head with a claim at the end = %d, %v; want the last event %d", h, err, r2.LastPosition)
	}
}

// TestClaimLeftBehind plays an appender that stopped between its claim
// and its event: its retry (through another Log) writes the event once, in
// the claimed place while that is still free, in a new place once another
// event took it; and a claim blocks the ID in every other stream.
func TestClaimLeftBehind(t *testing.T) {
	url, _ := natsserver.Start(t)
	opts := uniqueOptions()
	a, b := MustOpen(t, url, opts), MustOpen(t, url, opts)
	ctx := t.Context()
	const stream = "kms-behind"
	first := mustAppend(t, a, stream, domain.ExpectNoStream, eventlog.Events(stream, 1, 1))

	// Claimed, place still free: the retry publishes the event there.
	pending := eventlog.Events(stream, 2, 1)
	putClaim(t, a, pending[0], 1, first.LastPosition, 0)
	res := mustAppend(t, b, stream, domain.ExpectRevision(0), pending)
	if res.LastRevision != 1 {
		t.Fatalf("retry of a pending claim: %+v", res)
	}
	// The appender that claimed it comes back: its event is refused.
	if _, err := putEvent(t, a, pending[0], 1, first.LastPosition); err == nil {
		t.Fatal("the late event of a claim the retry fulfilled was accepted")
	}

	// Claimed, and another event took the place: an orphan.
	orphan := eventlog.Events(stream, 3, 1)
	putClaim(t, a, orphan[0], 2, res.LastPosition, 0)
	other := mustAppend(t, b, stream, domain.ExpectRevision(1), eventlog.Events(stream, 4, 1))
	if _, err := putEvent(t, a, orphan[0], 2, res.LastPosition); err == nil {
		t.Fatal("the event of an orphan claim was accepted")
	}
	// Another stream may not take the ID, orphan or not.
	moved := orphan[0]
	moved.Stream = "kms-elsewhere"
	if _, err := b.Append(ctx, moved.Stream, domain.ExpectAny, []domain.Event{moved}); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("an ID claimed in another stream: %v, want ErrInvalidArgument", err)
	}
	if _, err := b.Append(ctx, moved.Stream, domain.ExpectAny, []domain.Event{moved, eventlog.Events(moved.Stream, 5, 1)[0]}); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("an ID claimed in another stream, in a batch: %v, want ErrInvalidArgument", err)
	}
	// Its retry in its own stream takes a new place, with a new claim.
	res = mustAppend(t, b, stream, domain.ExpectRevision(2), orphan)
	if res.LastRevision != 3 || res.FirstPosition <= other.LastPosition {
		t.Fatalf("retry of an orphan claim: %+v after %+v", res, other)
	}
	if again := mustAppend(t, a, stream, domain.ExpectNoStream, orphan); again != res {
		t.Fatalf("second retry = %+v, want %+v", again, res)
	}

	// A batch over an orphan claim.
	inBatch := eventlog.Events(stream, 6, 2)
	putClaim(t, a, inBatch[0], 4, first.LastPosition, 0)
	res = mustAppend(t, b, stream, domain.ExpectRevision(3), inBatch)
	if _, mk := idMessage(t, a, inBatch[0].ID); mk.claim {
		t.Fatalf("the batch left the orphan claim: %+v", mk)
	}
	if again := mustAppend(t, a, stream, domain.ExpectAny, inBatch); again != res {
		t.Fatalf("retry of the batch = %+v, want %+v", again, res)
	}

	// A batch over a pending claim fills the claimed place.
	last := mustReadStream(t, a, stream)
	head := last[len(last)-1]
	pendingInBatch := eventlog.Events(stream, 7, 2)
	putClaim(t, a, pendingInBatch[1], head.Revision+1, head.Position, 0)
	mustAppend(t, b, stream, domain.ExpectRevision(head.Revision), pendingInBatch)
	if _, err := putEvent(t, a, pendingInBatch[1], head.Revision+1, head.Position); err == nil {
		t.Fatal("the late event of a claim a batch replaced was accepted")
	}

	got := mustReadStream(t, a, stream)
	seen := map[domain.EventID]bool{}
	for i, e := range got {
		if e.Revision != uint64(i) {
			t.Fatalf("revision %d holds revision %d", i, e.Revision)
		}
		if seen[e.ID] {
			t.Fatalf("event ID %s is in the stream twice", e.ID)
		}
		seen[e.ID] = true
	}
	for _, e := range append(append(append(pending, orphan...), inBatch...), pendingInBatch...) {
		if !seen[e.ID] || countID(t, a, e.ID) != 1 {
			t.Fatalf("event %s: in the stream %v, %d times in the log; want once", e.ID, seen[e.ID], countID(t, a, e.ID))
		}
	}
}

// TestOneIDManyAppenders has appenders on several Logs append the same
// event IDs at once, alone, in batches and in multi-stream appends, to one
// stream and to others, with every expectation, on both paths (claims and
// batches): each ID lands at most once in the whole log, and an append
// that succeeded names where it is.
func TestOneIDManyAppenders(t *testing.T) {
	url, _ := natsserver.Start(t)
	for _, claims := range []bool{true, false} {
		t.Run(fmt.Sprintf("claims=%v", claims), func(t *testing.T) {
			testOneIDManyAppenders(t, url, claims)
		})
	}
}

func testOneIDManyAppenders(t *testing.T, url string, claims bool) {
	opts := uniqueOptions()
	logs := make([]*Log, 3)
	for i := range logs {
		logs[i] = MustOpen(t, url, opts)
		logs[i].claimSingle = claims
	}
	ctx := t.Context()
	const rounds, perLog = 15, 5
	streams := []string{"kms-one-id", "kms-one-id-other"}
	for round := range rounds {
		ev := eventlog.Events(streams[0], uint64(1000+round), 1)[0]
		partner := eventlog.Events(streams[0], uint64(2000+round), 1)[0]
		type outcome struct {
			stream string
			res    commands.AppendResult
			err    error
		}
		var mu sync.Mutex
		var outs []outcome
		var wg sync.WaitGroup
		start := make(chan struct{})
		for li, l := range logs {
			for k := range perLog {
				wg.Go(func() {
					<-start
					st := streams[(li+k)%2]
					e := ev
					e.Stream = st
					batch := []domain.Event{e}
					if k == 3 {
						p := partner
						p.Stream = st
						batch = append(batch, p)
					}
					exp := []domain.ExpectedRevision{domain.ExpectAny, domain.ExpectAny, domain.ExpectStreamExists, domain.ExpectAny, domain.ExpectAny}[k]
					var res commands.AppendResult
					var err error
					if k >= 3 && (round+li)%2 == 0 {
						// With a part of its own in another stream.
						own := fmt.Sprintf("kms-one-id-multi-%d-%d-%d", round, li, k)
						var out []commands.AppendResult
						out, err = l.AppendMulti(ctx, []commands.StreamAppend{
							{Stream: st, Expected: exp, Events: batch},
							{Stream: own, Expected: domain.ExpectNoStream, Events: eventlog.Events(own, uint64(3000+round), 1)},
						})
						if err == nil {
							res = out[0]
						}
					} else {
						res, err = l.Append(ctx, st, exp, batch)
					}
					mu.Lock()
					outs = append(outs, outcome{st, res, err})
					mu.Unlock()
				})
			}
		}
		close(start)
		wg.Wait()
		for _, o := range outs {
			if o.err != nil && !errors.Is(o.err, domain.ErrInvalidArgument) && !errors.Is(o.err, domain.ErrWrongExpectedRevision) {
				t.Fatalf("round %d: %v", round, o.err)
			}
		}
		n := countID(t, logs[0], ev.ID)
		if n > 1 {
			t.Fatalf("round %d: event ID %s is in the log %d times", round, ev.ID, n)
		}
		for _, o := range outs {
			if o.err != nil {
				continue
			}
			got, err := logs[0].ReadAll(ctx, o.res.FirstPosition-1, 1)
			if err != nil || len(got) != 1 || got[0].Position != o.res.FirstPosition || got[0].Stream != o.stream {
				t.Fatalf("round %d: a successful append to %s at %+v finds %v, %v", round, o.stream, o.res, got, err)
			}
			if got[0].ID != ev.ID && got[0].ID != partner.ID {
				t.Fatalf("round %d: a successful append at %+v names event %s", round, o.res, got[0].ID)
			}
		}
	}
	for _, st := range streams {
		for i, e := range mustReadStream(t, logs[0], st) {
			if e.Revision != uint64(i) {
				t.Fatalf("%s: revision %d holds revision %d", st, i, e.Revision)
			}
		}
	}
}
