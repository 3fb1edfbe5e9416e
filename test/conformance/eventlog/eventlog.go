package eventlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Features lists the promises an adapter may not make. The zero value is the
// weakest adapter the suite accepts.
type Features struct {
	// ContiguousPositions: positions have no holes, so that (with no other
	// writer) each event's position is the previous one's plus one. When
	// false, the suite asserts only that positions strictly increase.
	ContiguousPositions bool
	// MaxDataSize is the largest Data the adapter accepts in one event; the
	// large-payload case uses it. 0 means 1 MiB.
	MaxDataSize int
}

// Run runs the suite. newLog must return a working log; the log need not be
// empty (stream names are unique per run), but nothing else may write to it
// while a subtest runs, and an adapter that shows its own system events in
// ReadAll or subscriptions must filter them out. Run closes every log it
// obtains, once, when the subtest that obtained it ends.
//
// Event IDs and stream names come from a seed that is logged, so a failing
// run can be reproduced by reading it off.
func Run(t *testing.T, newLog func(t *testing.T) commands.EventLog, f Features) {
	if f.MaxDataSize == 0 {
		f.MaxDataSize = 1 << 20
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("eventlog conformance: seed %d", seed)
	s := &suite{newLog: newLog, f: f, ids: newIDs(seed), run: fmt.Sprintf("%x", seed)}
	t.Run("RoundTrip", s.roundTrip)
	t.Run("ExpectedRevision", s.expectedRevision)
	t.Run("IdempotentRetry", s.idempotentRetry)
	t.Run("PartialDuplicate", s.partialDuplicate)
	t.Run("ReadStream", s.readStream)
	t.Run("ReadMissingStream", s.readMissingStream)
	t.Run("ReadAll", s.readAll)
	t.Run("Head", s.head)
	t.Run("SubscribeCatchUpThenLive", s.subscribeCatchUpThenLive)
	t.Run("SubscribeFromStart", s.subscribeFromStart)
	t.Run("SubscriptionContext", s.subscriptionContext)
	t.Run("SubscriptionClose", s.subscriptionClose)
	t.Run("ConcurrentExactRevision", s.concurrentExactRevision)
	t.Run("ConcurrentManyStreams", s.concurrentManyStreams)
	t.Run("InvalidInput", s.invalidInput)
	t.Run("Close", s.closeLog)
}

type suite struct {
	newLog func(t *testing.T) commands.EventLog
	f      Features
	ids    *ids
	run    string
	mu     sync.Mutex
	nth    int
}

// handle is a log plus a Close that runs at most once.
type handle struct {
	commands.EventLog
	once sync.Once
	err  error
}

func (h *handle) close() error {
	h.once.Do(func() { h.err = h.EventLog.Close() })
	return h.err
}

func (s *suite) open(t *testing.T) (*handle, context.Context) {
	t.Helper()
	h := &handle{EventLog: s.newLog(t)}
	t.Cleanup(func() {
		if err := h.close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return h, ctx
}

// stream returns a stream name unique to this run.
func (s *suite) stream(what string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nth++
	return fmt.Sprintf("conf%s-%s-%d", what, s.run, s.nth)
}

// ids draws reproducible ULIDs; safe for concurrent use.
type ids struct {
	mu  sync.Mutex
	rng *rand.ChaCha8
	ms  uint64
}

func newIDs(seed uint64) *ids {
	var key [32]byte
	for i := range 4 {
		for j := range 8 {
			key[i*8+j] = byte((seed + uint64(i)) >> (8 * j))
		}
	}
	return &ids{rng: rand.NewChaCha8(key), ms: uint64(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli())}
}

func (g *ids) next() domain.EventID {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ms++
	return ulid.MustNew(g.ms, g.rng)
}

var baseTime = time.Date(2025, 3, 1, 9, 30, 15, 123456789, time.FixedZone("CST", 8*3600))

// event builds an event of stream with every envelope field set.
func (s *suite) event(stream string, n int) domain.Event {
	return domain.Event{
		ID:         s.ids.next(),
		Stream:     stream,
		Type:       fmt.Sprintf("ConformanceEvent%d", n%3),
		Schema:     uint16(1 + n%5),
		OccurredAt: baseTime.Add(time.Duration(n) * 1500 * time.Millisecond),
		Account:    domain.AccountID("acct_" + strings.Repeat("A", 26)),
		Region:     "cn-hangzhou",
		Instance:   domain.InstanceID(fmt.Sprintf("kms_%026d", n)),
		Data:       fmt.Appendf(nil, "payload %d of %s", n, stream),
	}
}

// Events returns n events of stream with IDs drawn from seed, one second
// apart: the same stream and seed give the same events. For an adapter's
// own tests beside the suite.
func Events(stream string, seed uint64, n int) []domain.Event {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	copy(key[8:], stream)
	entropy := rand.NewChaCha8(key)
	out := make([]domain.Event, n)
	for i := range out {
		out[i] = domain.Event{
			ID:         ulid.MustNew(ulid.Timestamp(eventsTime)+uint64(i), entropy),
			Stream:     stream,
			Type:       "TestEvent",
			Schema:     1,
			OccurredAt: eventsTime.Add(time.Duration(i) * time.Second),
			Account:    "acct_test",
			Region:     "cn-hangzhou",
			Instance:   "kms_test",
			Data:       fmt.Appendf(nil, "data %d", i),
		}
	}
	return out
}

var eventsTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func (s *suite) events(stream string, n int) []domain.Event {
	out := make([]domain.Event, n)
	for i := range out {
		out[i] = s.event(stream, i)
	}
	return out
}

// placed returns events with the revisions and positions the log should
// have given them. With contiguous positions each is known; otherwise only
// the first and last are, and the middle ones are copied from got.
func (s *suite) placed(evs []domain.Event, firstRev uint64, res commands.AppendResult, got []domain.Event) []domain.Event {
	out := slices.Clone(evs)
	for i := range out {
		out[i].Revision = firstRev + uint64(i)
		switch {
		case i == 0:
			out[i].Position = res.FirstPosition
		case i == len(out)-1:
			out[i].Position = res.LastPosition
		case s.f.ContiguousPositions:
			out[i].Position = res.FirstPosition + uint64(i)
		case i < len(got):
			out[i].Position = got[i].Position
		}
	}
	return out
}

// normal is the comparable form of an event: time to the millisecond in
// UTC, empty data as nil, large data as a digest.
type normal struct {
	domain.Event
	DataDigest string
}

func normalize(evs []domain.Event) []normal {
	out := make([]normal, len(evs))
	for i, e := range evs {
		e.OccurredAt = time.UnixMilli(e.OccurredAt.UnixMilli()).UTC()
		n := normal{}
		if len(e.Data) > 64 {
			sum := sha256.Sum256(e.Data)
			n.DataDigest = fmt.Sprintf("%d bytes, sha256 %s", len(e.Data), hex.EncodeToString(sum[:8]))
			e.Data = nil
		} else if len(e.Data) == 0 {
			e.Data = nil
		}
		n.Event = e
		out[i] = n
	}
	return out
}

func diffEvents(want, got []domain.Event) string {
	return cmp.Diff(normalize(want), normalize(got))
}

// positionsIncrease checks that positions strictly increase, and have no
// hole when the adapter promises contiguous positions.
func (s *suite) positionsIncrease(t *testing.T, evs []domain.Event) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		p, q := evs[i-1].Position, evs[i].Position
		if q <= p {
			t.Fatalf("event %d has position %d after position %d: positions must strictly increase", i, q, p)
		}
		if s.f.ContiguousPositions && q != p+1 {
			t.Fatalf("event %d has position %d after position %d: the adapter promises contiguous positions", i, q, p)
		}
	}
}

func mustAppend(t testing.TB, ctx context.Context, l commands.EventLog, stream string, exp domain.ExpectedRevision, evs []domain.Event) commands.AppendResult {
	t.Helper()
	res, err := l.Append(ctx, stream, exp, evs)
	if err != nil {
		t.Fatalf("Append(%s, expected %s, %d events): %v", stream, exp, len(evs), err)
	}
	return res
}

func mustReadStream(t testing.TB, ctx context.Context, l commands.EventLog, stream string, from uint64, backwards bool, max int) []domain.Event {
	t.Helper()
	evs, err := l.ReadStream(ctx, stream, from, backwards, max)
	if err != nil {
		t.Fatalf("ReadStream(%s, from %d, backwards %v, max %d): %v", stream, from, backwards, max, err)
	}
	return evs
}

func mustHead(t testing.TB, ctx context.Context, l commands.EventLog) uint64 {
	t.Helper()
	h, err := l.Head(ctx)
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return h
}

// readAllOf reads the log after position after up to its head, keeping the
// events of the given streams.
func readAllOf(t *testing.T, ctx context.Context, l commands.EventLog, after uint64, streams ...string) []domain.Event {
	t.Helper()
	keep := make(map[string]bool, len(streams))
	for _, s := range streams {
		keep[s] = true
	}
	head := mustHead(t, ctx, l)
	var out []domain.Event
	for after < head {
		page, err := l.ReadAll(ctx, after, 100)
		if err != nil {
			t.Fatalf("ReadAll(after %d, max 100): %v", after, err)
		}
		if len(page) == 0 {
			t.Fatalf("ReadAll(after %d) returned nothing below head %d", after, head)
		}
		for _, e := range page {
			if e.Position <= after {
				t.Fatalf("ReadAll(after %d) returned position %d", after, e.Position)
			}
			after = e.Position
			if keep[e.Stream] {
				out = append(out, e)
			}
		}
	}
	return out
}

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

func (s *suite) invalidInput(t *testing.T) {
	l, ctx := s.open(t)
	st := s.stream("invalid")
	e1, e2 := s.event(st, 1), s.event(st, 2)
	other := e2
	other.Stream = st + "-other"
	unnamed := e2
	unnamed.Stream = ""
	zero := e2
	zero.ID = domain.EventID{}
	dup := e2
	dup.ID = e1.ID
	cases := []struct {
		name   string
		stream string
		evs    []domain.Event
	}{
		{"empty batch", st, nil},
		{"empty stream name", "", []domain.Event{unnamed}},
		{"event of another stream", st, []domain.Event{e1, other}},
		{"event without stream", st, []domain.Event{e1, unnamed}},
		{"zero event ID", st, []domain.Event{e1, zero}},
		{"duplicate event IDs", st, []domain.Event{e1, dup}},
	}
	for _, c := range cases {
		_, err := l.Append(ctx, c.stream, domain.ExpectAny, c.evs)
		if !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", c.name, err)
		}
	}
	if got := mustReadStream(t, ctx, l, st, 0, false, 10); len(got) != 0 {
		t.Errorf("invalid appends wrote %d events", len(got))
	}
	// The valid event of a rejected batch can still be appended.
	mustAppend(t, ctx, l, st, domain.ExpectNoStream, []domain.Event{e1})
}

func (s *suite) closeLog(t *testing.T) {
	l, ctx := s.open(t)
	st := s.stream("close")
	mustAppend(t, ctx, l, st, domain.ExpectNoStream, s.events(st, 1))
	sub, err := l.Subscribe(ctx, mustHead(t, ctx, l))
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sub.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := sub.Next(ctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := l.close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, domain.ErrUnavailable) {
			t.Errorf("blocked Next when the log closes: %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked Next did not return within 5s of the log closing")
	}
	if _, err := l.Append(ctx, st, domain.ExpectAny, s.events(st, 1)); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("Append after Close: %v, want ErrUnavailable", err)
	}
}
