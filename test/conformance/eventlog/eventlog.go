package eventlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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
	// SequentialMulti: AppendMulti appends its parts one after the other
	// and is not atomic, so a part refused after others leaves them
	// written. The suite then checks only what holds for such a log: a
	// call refused at its first part writes nothing (a claim put first
	// decides a race), and a retry completes a call.
	SequentialMulti bool
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
	t.Run("MultiAppend", s.multiAppend)
	t.Run("MultiAllOrNothing", s.multiAllOrNothing)
	t.Run("MultiRace", s.multiRace)
	t.Run("MultiInvalid", s.multiInvalid)
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
