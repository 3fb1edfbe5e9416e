package pebblestore

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var crashSeed = flag.Uint64("crash.seed", 0, "seed of TestCrashRecovery (0: from the clock)")

// crashBatch is one Append the crash test attempted.
type crashBatch struct {
	stream string
	events []domain.Event
}

// crashHistory records what the appenders attempted and what was
// acknowledged. Safe for concurrent use.
type crashHistory struct {
	mu      sync.Mutex
	batches []*crashBatch
	byID    map[domain.EventID]int // event ID -> index in batches
	acked   map[int]commands.AppendResult
}

func (h *crashHistory) attempt(b *crashBatch) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.batches = append(h.batches, b)
	i := len(h.batches) - 1
	for _, e := range b.events {
		h.byID[e.ID] = i
	}
	return i
}

func (h *crashHistory) ack(i int, res commands.AppendResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acked[i] = res
}

// ackedNow copies the acknowledged set: everything in it must survive a
// crash taken afterwards.
func (h *crashHistory) ackedNow() map[int]commands.AppendResult {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[int]commands.AppendResult, len(h.acked))
	for i, r := range h.acked {
		out[i] = r
	}
	return out
}

// TestCrashRecovery runs concurrent appenders on a crashable in-memory file
// system, takes crash clones at random moments (keeping a random share of
// the unsynced data), reopens each clone and checks that every acknowledged
// append survived intact, that no append survived in part, that positions
// have no gap, and that the log goes on accepting appends.
func TestCrashRecovery(t *testing.T) {
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("reproduce with: go test -run TestCrashRecovery -crash.seed %d ./adapters/pebblestore", seed)
		}
	})
	iterations := 6
	if testing.Short() {
		iterations = 2
	}
	deadline := time.Now().Add(10 * time.Second)
	for it := range iterations {
		if it > 0 && time.Now().After(deadline) {
			t.Logf("stopping after %d iterations to stay within the time budget", it)
			break
		}
		crashIteration(t, seed+uint64(it))
		if t.Failed() {
			return
		}
	}
}

func crashIteration(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	fs := vfs.NewCrashableMem()
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatalf("seed %d: Open: %v", seed, err)
	}
	h := &crashHistory{byID: map[domain.EventID]int{}, acked: map[int]commands.AppendResult{}}
	const appenders, perAppender, clones = 4, 250, 5
	streams := []string{"kms-a", "kms-b", "kms-c", "backup-shared"}

	// Each appender draws from its own generator, seeded from rng.
	type plan struct{ seed1, seed2 uint64 }
	plans := make([]plan, appenders)
	for i := range plans {
		plans[i] = plan{rng.Uint64(), rng.Uint64()}
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(plans[a].seed1, plans[a].seed2))
			entropy := rand.NewChaCha8([32]byte{byte(a), byte(seed), byte(seed >> 8), byte(seed >> 16)})
			for i := range perAppender {
				st := streams[r.IntN(len(streams))]
				b := &crashBatch{stream: st, events: make([]domain.Event, 1+r.IntN(5))}
				for j := range b.events {
					data := make([]byte, r.IntN(2048))
					_, _ = entropy.Read(data)
					b.events[j] = domain.Event{
						ID:         ulid.MustNew(uint64(1_700_000_000_000+a*1_000_000+i*10+j), entropy),
						Stream:     st,
						Type:       "CrashEvent",
						Schema:     1,
						OccurredAt: time.UnixMilli(int64(1_700_000_000_000 + i)).UTC(),
						Account:    "acct_crash",
						Region:     "cn-hangzhou",
						Instance:   domain.InstanceID(fmt.Sprintf("kms_%d", a)),
						Data:       data,
					}
				}
				idx := h.attempt(b)
				res, err := s.Append(ctx, st, domain.ExpectAny, b.events)
				if err != nil {
					t.Errorf("seed %d: appender %d, append %d: %v", seed, a, i, err)
					return
				}
				h.ack(idx, res)
			}
		})
	}

	// Crash at random moments while the appenders run.
	type crash struct {
		fs    *vfs.MemFS
		acked map[int]commands.AppendResult
		pct   int
	}
	var crashes []crash
	appendersDone := make(chan struct{})
	go func() { wg.Wait(); close(appendersDone) }()
	// Each clone comes after a random pause; once the appenders are done
	// the remaining clones see the final state, which must hold as well.
	for len(crashes) < clones {
		select {
		case <-appendersDone:
		case <-time.After(time.Duration(rng.IntN(10_000)) * time.Microsecond):
		}
		acked := h.ackedNow()
		pct := rng.IntN(101)
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))})
		crashes = append(crashes, crash{clone, acked, pct})
	}
	<-appendersDone
	if err := s.Close(); err != nil {
		t.Fatalf("seed %d: Close: %v", seed, err)
	}
	if t.Failed() {
		return
	}
	t.Logf("seed %d: %d appends, %d crash clones", seed, len(h.batches), len(crashes))
	for i, c := range crashes {
		checkCrashClone(t, fmt.Sprintf("seed %d, crash %d of %d (%d acknowledged, %d%% of unsynced data kept)", seed, i+1, len(crashes), len(c.acked), c.pct),
			c.fs, h, c.acked)
	}
}

// checkCrashClone reopens a crash clone and checks it against the history.
func checkCrashClone(t *testing.T, what string, fs vfs.FS, h *crashHistory, acked map[int]commands.AppendResult) {
	t.Helper()
	ctx := context.Background()
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatalf("%s: reopen: %v", what, err)
	}
	defer s.Close()
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatalf("%s: Head: %v", what, err)
	}
	// Every stored event decodes, and positions run 1..head without a gap
	// (ReadAll reports a gap or an undecodable record as corruption).
	var all []domain.Event
	for after := uint64(0); after < head; {
		page, err := s.ReadAll(ctx, after, 500)
		if err != nil {
			t.Fatalf("%s: ReadAll(after %d): %v", what, after, err)
		}
		for _, e := range page {
			if e.Position != after+1 {
				t.Fatalf("%s: position %d follows %d", what, e.Position, after)
			}
			after = e.Position
		}
		all = append(all, page...)
	}
	if uint64(len(all)) != head {
		t.Fatalf("%s: read %d events, head is %d", what, len(all), head)
	}

	// Each stored batch is complete, contiguous and identical to what was
	// appended; no event comes from nowhere.
	h.mu.Lock()
	batches := h.batches
	byID := h.byID
	h.mu.Unlock()
	present := map[int]uint64{} // batch -> first position
	nextRev := map[string]uint64{}
	for i := 0; i < len(all); {
		e := all[i]
		bi, ok := byID[e.ID]
		if !ok {
			t.Fatalf("%s: event %s at position %d was never appended", what, e.ID, e.Position)
		}
		if _, dup := present[bi]; dup {
			t.Fatalf("%s: batch %d stored twice (again at position %d)", what, bi, e.Position)
		}
		b := batches[bi]
		if len(all)-i < len(b.events) {
			t.Fatalf("%s: batch %d of %d events is cut short at the end of the log (position %d)", what, bi, len(b.events), e.Position)
		}
		for j, want := range b.events {
			got := all[i+j]
			want.Revision, want.Position = nextRev[b.stream], got.Position
			if got.ID != want.ID || got.Stream != want.Stream || got.Revision != want.Revision || got.Type != want.Type ||
				got.Schema != want.Schema || !got.OccurredAt.Equal(want.OccurredAt) || got.Account != want.Account ||
				got.Region != want.Region || got.Instance != want.Instance || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("%s: batch %d event %d differs at position %d: got %s %s rev %d, want %s %s rev %d (or other fields)",
					what, bi, j, got.Position, got.ID, got.Stream, got.Revision, want.ID, want.Stream, want.Revision)
			}
			nextRev[b.stream]++
		}
		present[bi] = e.Position
		i += len(b.events)
	}

	inFlight := len(present)
	// Every acknowledged batch survived, where its result said.
	for bi, res := range acked {
		first, ok := present[bi]
		if !ok {
			t.Fatalf("%s: acknowledged batch %d (%+v) is missing", what, bi, res)
		}
		inFlight--
		n := uint64(len(batches[bi].events))
		if first != res.FirstPosition || first+n-1 != res.LastPosition {
			t.Fatalf("%s: acknowledged batch %d at positions %d..%d, result said %+v", what, bi, first, first+n-1, res)
		}
	}

	if testing.Verbose() {
		t.Logf("%s: %d events, %d batches stored, %d of them not acknowledged", what, len(all), len(present), inFlight)
	}

	// Streams agree with the log, and the log accepts appends again; an
	// acknowledged batch retried after the crash is still recognised.
	streamsSeen := map[string]bool{}
	for _, e := range all {
		streamsSeen[e.Stream] = true
	}
	for st := range streamsSeen {
		evs, err := s.ReadStream(ctx, st, 0, false, len(all)+1)
		if err != nil {
			t.Fatalf("%s: ReadStream(%s): %v", what, st, err)
		}
		if uint64(len(evs)) != nextRev[st] {
			t.Fatalf("%s: stream %s has %d events, the log %d", what, st, len(evs), nextRev[st])
		}
		for r, e := range evs {
			if e.Revision != uint64(r) {
				t.Fatalf("%s: stream %s revision %d at index %d", what, st, e.Revision, r)
			}
		}
		var idSeed [32]byte
		copy(idSeed[:], st)
		id := ulid.MustNew(1, rand.NewChaCha8(idSeed))
		res, err := s.Append(ctx, st, domain.ExpectRevision(nextRev[st]-1), []domain.Event{{ID: id, Stream: st, Type: "AfterCrash"}})
		if err != nil {
			t.Fatalf("%s: append to %s after recovery: %v", what, st, err)
		}
		head++
		if res.FirstPosition != head || res.LastRevision != nextRev[st] {
			t.Fatalf("%s: append after recovery landed at %+v, want position %d revision %d", what, res, head, nextRev[st])
		}
	}
	for bi, res := range acked {
		b := batches[bi]
		again, err := s.Append(ctx, b.stream, domain.ExpectNoStream, b.events)
		if err != nil || again != res {
			t.Fatalf("%s: retry of acknowledged batch %d after recovery = %+v, %v; want %+v", what, bi, again, err, res)
		}
		break // one is enough; the conformance suite covers the rest
	}
}
