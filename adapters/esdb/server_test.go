package esdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/blobstore"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
	"github.com/kmsbackup/kmsbackup/test/conformance/keystore"
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
		// The client has no append spanning streams: see AppendMulti.
		SequentialMulti: true,
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

// The key and blob stores, against a server.

func TestKeyStoreConformance(t *testing.T) {
	serverURL(t)
	run := time.Now().UnixNano()
	var n atomic.Int64
	keystore.Run(t, func(t *testing.T) (commands.KeyStore, commands.KeyStore) {
		// Two nodes: two logs (two clients) on the server. The suite needs
		// a store without a check: one check stream for each pair.
		check := fmt.Sprintf("%s-conf%d-%d", keyCheckStream, run, n.Add(1))
		var stores [2]commands.KeyStore
		for i := range stores {
			ks := NewKeyStore(MustOpen(t, Options{Logger: testLogger(t)}))
			ks.checkStream = check
			stores[i] = ks
		}
		return stores[0], stores[1]
	})
}

func TestBlobStoreConformance(t *testing.T) {
	serverURL(t)
	blobstore.Run(t, func(t *testing.T) commands.BlobStore {
		return MustBlobs(t, Options{Logger: testLogger(t)})
	})
}

// MustBlobs opens a log (see MustOpen) and its blob store.
func MustBlobs(tb testing.TB, opts Options) *Blobs {
	tb.Helper()
	b, err := NewBlobs(MustOpen(tb, opts))
	if err != nil {
		tb.Fatalf("NewBlobs: %v", err)
	}
	return b
}

// uniqueRef is a data ref no earlier run used.
func uniqueRef(what string) string {
	return fmt.Sprintf("bkp_esdbtest%s%s/1", what, ulid.Make())
}

// mustState reads the state of a store's stream.
func mustState(t testing.TB, l *Log, stream string) streamState {
	t.Helper()
	_, state, err := l.readRaw(context.Background(), "test", stream, esdbclient.Start{}, false, 1)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return state
}

// TestStoresStayOutOfTheLog writes keys and blobs between log events:
// ReadAll, Head and subscriptions show the log events only.
func TestStoresStayOutOfTheLog(t *testing.T) {
	b := MustBlobs(t, Options{Logger: testLogger(t)})
	l := b.l
	k := NewKeyStore(l)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := l.Subscribe(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	st := uniqueStream("stores")
	evs := freshEvents(st, 2)
	ref := uniqueRef("view")
	if _, err := l.Append(ctx, st, domain.ExpectNoStream, evs[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := k.PutWrapped(context.Background(), ref, []byte("wrapped"), 0); err != nil {
		t.Fatal(err)
	}
	if err := b.PutBlob(ctx, ref, "small", []byte("small blob")); err != nil {
		t.Fatal(err)
	}
	if err := b.PutBlob(ctx, ref, "large", testBlob(3<<20, 9)); err != nil {
		t.Fatal(err)
	}
	res, err := l.Append(ctx, st, domain.ExpectRevision(0), evs[1:])
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PutBlob(ctx, ref, "after", testBlob(2<<20, 10)); err != nil {
		t.Fatal(err)
	}
	if err := b.DestroyBlobs(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if err := k.DeleteWrapped(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	page, err := l.ReadAll(ctx, h, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ours []domain.Event
	for _, e := range page {
		if isStoreStream(e.Stream) {
			t.Fatalf("ReadAll shows event %d of %q", e.Revision, e.Stream)
		}
		if e.Stream == st {
			ours = append(ours, e)
		}
	}
	if len(ours) != 2 || ours[0].ID != evs[0].ID || ours[1].ID != evs[1].ID {
		t.Fatalf("ReadAll shows %d events of %s", len(ours), st)
	}
	if head, err := l.Head(ctx); err != nil || head < res.LastPosition {
		t.Fatalf("Head = %d, %v; want at least %d", head, err, res.LastPosition)
	}
	got := 0
	for got < 2 {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if isStoreStream(e.Stream) {
			t.Fatalf("the subscription delivers event %d of %q", e.Revision, e.Stream)
		}
		if e.Stream == st {
			got++
		}
	}
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	for {
		e, err := sub.Next(short)
		if err != nil {
			break
		}
		if isStoreStream(e.Stream) {
			t.Fatalf("the subscription delivers event %d of %q", e.Revision, e.Stream)
		}
	}
}

// TestKeyStoreTombstones: DeleteWrapped tombstones the stream, and a ref
// put again goes to its next generation.
func TestKeyStoreTombstones(t *testing.T) {
	l := MustOpen(t, Options{Logger: testLogger(t)})
	k := NewKeyStore(l)
	ref := uniqueRef("key")
	for gen := range uint64(3) {
		v := fmt.Appendf(nil, "record of generation %d", gen)
		rev, err := k.PutWrapped(context.Background(), ref, v, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := keyRevision("test", ref, gen, 0); rev != want {
			t.Fatalf("generation %d: revision %d, want %d", gen, rev, want)
		}
		if got, gotRev, err := k.GetWrapped(context.Background(), ref); err != nil || gotRev != rev || string(got) != string(v) {
			t.Fatalf("generation %d: GetWrapped = %q, %d, %v", gen, got, gotRev, err)
		}
		if s := mustState(t, l, dataKeyStream(ref, gen)); s != streamLive {
			t.Fatalf("generation %d is %v, want live", gen, s)
		}
		if err := k.DeleteWrapped(context.Background(), ref); err != nil {
			t.Fatal(err)
		}
		if s := mustState(t, l, dataKeyStream(ref, gen)); s != streamDeleted {
			t.Fatalf("generation %d after DeleteWrapped is %v, want tombstoned", gen, s)
		}
		if err := k.DeleteWrapped(context.Background(), ref); err != nil {
			t.Fatal(err)
		}
		if s := mustState(t, l, dataKeyStream(ref, gen+1)); s != streamAbsent {
			t.Fatalf("a second DeleteWrapped made generation %d %v", gen+1, s)
		}
	}
}

// TestBlobTombstones: DestroyBlobs tombstones every blob stream and the
// index; the ref used again goes to its next generation.
func TestBlobTombstones(t *testing.T) {
	b := MustBlobs(t, Options{Logger: testLogger(t)})
	ctx := context.Background()
	ref := uniqueRef("tomb")
	names := []string{"a", "b/c", "slice-1-x"}
	for gen := range uint64(2) {
		for i, name := range names {
			data := testBlob(1000*i+int(gen), uint64(i))
			if err := b.PutBlob(ctx, ref, name, data); err != nil {
				t.Fatal(err)
			}
			if got, err := b.GetBlob(ctx, ref, name); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("generation %d, %q: %d bytes, %v", gen, name, len(got), err)
			}
			if s := mustState(t, b.l, blobStream(ref, name, gen)); s != streamLive {
				t.Fatalf("generation %d, %q: stream %v", gen, name, s)
			}
		}
		if err := b.DestroyBlobs(ctx, ref); err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if s := mustState(t, b.l, blobStream(ref, name, gen)); s != streamDeleted {
				t.Fatalf("generation %d, %q after DestroyBlobs: %v", gen, name, s)
			}
			if _, err := b.GetBlob(ctx, ref, name); !errors.Is(err, domain.ErrNotFound) {
				t.Fatalf("GetBlob after DestroyBlobs: %v", err)
			}
		}
		if s := mustState(t, b.l, blobIndexStream(ref, gen)); s != streamDeleted {
			t.Fatalf("index of generation %d after DestroyBlobs: %v", gen, s)
		}
	}
	if err := b.DestroyBlobs(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if s := mustState(t, b.l, blobIndexStream(ref, 2)); s != streamAbsent {
		t.Fatalf("DestroyBlobs of a destroyed ref made generation 2 %v", s)
	}
}

// TestUnfinishedBlob leaves a blob of several appends without its commit,
// as a put that failed half-way does: it reads as absent, other bytes are
// refused, and a put of the same bytes finishes it.
func TestUnfinishedBlob(t *testing.T) {
	b := MustBlobs(t, Options{Logger: testLogger(t), MaxAppendSize: 64 << 10})
	ctx := context.Background()
	ref := uniqueRef("unfinished")
	data := testBlob(300<<10, 3)
	h := newBlobHeader(data, b.chunkSize, b.budget)
	if h.Atomic() {
		t.Fatal("the test blob fits in one append")
	}
	gen, tail, err := b.writableGen(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.register(ctx, ref, "x", gen, tail); err != nil {
		t.Fatal(err)
	}
	events := blobEvents(h, h.Encode(), data)
	first := groupAppends(events, b.budget)[0]
	if _, err := b.l.appendRaw(ctx, "test", blobStream(ref, "x", gen), esdbclient.NoStream{}, first); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetBlob(ctx, ref, "x"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("GetBlob of an unfinished blob: %v, want ErrNotFound", err)
	}
	if err := b.PutBlob(ctx, ref, "x", testBlob(300<<10, 4)); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("PutBlob of other bytes over an unfinished blob: %v, want ErrAlreadyExists", err)
	}
	if err := b.PutBlob(ctx, ref, "x", data); err != nil {
		t.Fatalf("PutBlob of the same bytes: %v", err)
	}
	if got, err := b.GetBlob(ctx, ref, "x"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetBlob after the put finished it: %d bytes, %v", len(got), err)
	}
	if err := b.DestroyBlobs(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if s := mustState(t, b.l, blobStream(ref, "x", gen)); s != streamDeleted {
		t.Fatalf("blob stream after DestroyBlobs: %v", s)
	}
}

// TestInterruptedDestroy seals a ref's index without tombstoning anything,
// as a DestroyBlobs that failed half-way: the next put finishes the
// destruction before it writes to the next generation.
func TestInterruptedDestroy(t *testing.T) {
	b := MustBlobs(t, Options{Logger: testLogger(t)})
	ctx := context.Background()
	ref := uniqueRef("interrupted")
	if err := b.PutBlob(ctx, ref, "old", []byte("old bytes")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.sealIndex(ctx, "test", ref, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.PutBlob(ctx, ref, "new", []byte("new bytes")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetBlob(ctx, ref, "old"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("GetBlob of a blob of the sealed generation: %v, want ErrNotFound", err)
	}
	if got, err := b.GetBlob(ctx, ref, "new"); err != nil || string(got) != "new bytes" {
		t.Fatalf("GetBlob of the new blob = %q, %v", got, err)
	}
	for _, s := range []string{blobStream(ref, "old", 0), blobIndexStream(ref, 0)} {
		if st := mustState(t, b.l, s); st != streamDeleted {
			t.Fatalf("%s: %v, want tombstoned", s, st)
		}
	}
	if st := mustState(t, b.l, blobStream(ref, "new", 1)); st != streamLive {
		t.Fatalf("the new blob's stream: %v", st)
	}
}

// TestCorruptBlob writes a blob stream whose chunk does not match its
// header's digest: GetBlob reports corruption.
func TestCorruptBlob(t *testing.T) {
	b := MustBlobs(t, Options{Logger: testLogger(t)})
	ctx := context.Background()
	ref := uniqueRef("corrupt")
	data := testBlob(10<<10, 5)
	h := newBlobHeader(data, b.chunkSize, b.budget)
	bad := bytes.Clone(data)
	bad[100] ^= 1
	events := blobEvents(h, h.Encode(), bad)
	if _, err := b.l.appendRaw(ctx, "test", blobStream(ref, "x", 0), esdbclient.NoStream{}, events); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetBlob(ctx, ref, "x"); !domain.IsCorruption(err) {
		t.Fatalf("GetBlob of a tampered blob: %v, want corruption", err)
	}
	if err := b.PutBlob(ctx, ref, "x", data); err != nil {
		t.Fatalf("PutBlob of the header's bytes: %v (the digests agree: a no-op)", err)
	}
}

// TestLargeBlobs round-trips blobs of many appends, with a small maximum
// append size.
func TestLargeBlobs(t *testing.T) {
	for _, maxAppend := range []int{0, 64 << 10} {
		b := MustBlobs(t, Options{Logger: testLogger(t), MaxAppendSize: maxAppend})
		ctx := context.Background()
		ref := uniqueRef("large")
		for _, n := range []int{5<<20 + 3, 1 << 20} {
			data := testBlob(n, uint64(maxAppend))
			name := fmt.Sprint(n)
			if err := b.PutBlob(ctx, ref, name, data); err != nil {
				t.Fatal(err)
			}
			if got, err := b.GetBlob(ctx, ref, name); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("max append %d, %d bytes: %d bytes back, %v", maxAppend, n, len(got), err)
			}
		}
	}
}

// TestBlobReadsVersion1 writes blob streams as earlier releases did, under
// esdb's version-1 header: one in one append (atomic), one in several with
// its commit, and one left without its commit. GetBlob and OpenBlob read
// the first two; a put of the same bytes leaves them as they are, and
// finishes the third in its own header; a put of other bytes is refused.
func TestBlobReadsVersion1(t *testing.T) {
	b := MustBlobs(t, Options{Logger: testLogger(t), MaxAppendSize: 64 << 10})
	ctx := context.Background()
	ref := uniqueRef("v1")
	// write lists name in the ref's index, then appends events to its
	// stream as the earlier PutBlob did, in as few appends as b allows.
	write := func(name string, events []esdbclient.EventData) {
		t.Helper()
		gen, tail, err := b.writableGen(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.register(ctx, ref, name, gen, tail); err != nil {
			t.Fatal(err)
		}
		if err := b.write(ctx, blobStream(ref, name, gen), events, 0); err != nil {
			t.Fatal(err)
		}
	}
	small, large := testBlob(1000, 11), testBlob(300<<10, 12)
	smallEvents := legacyV1Events(small, b.chunkSize, true, false)
	largeEvents := legacyV1Events(large, b.chunkSize, false, false)
	write("atomic", smallEvents)
	write("several", largeEvents)
	write("unfinished", groupAppends(largeEvents, b.budget)[0])
	for name, data := range map[string][]byte{"atomic": small, "several": large} {
		if got, err := b.GetBlob(ctx, ref, name); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("GetBlob of the version-1 blob %q: %d bytes, %v", name, len(got), err)
		}
		r, err := b.OpenBlob(ctx, ref, name)
		if err != nil {
			t.Fatalf("OpenBlob of the version-1 blob %q: %v", name, err)
		}
		got, err := io.ReadAll(r)
		_ = r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("streamed version-1 blob %q: %d bytes, %v", name, len(got), err)
		}
		if err := b.PutBlob(ctx, ref, name, data); err != nil {
			t.Fatalf("PutBlob of the same bytes over the version-1 blob %q: %v", name, err)
		}
		if err := b.PutBlob(ctx, ref, name, append(bytes.Clone(data), 0)); !errors.Is(err, domain.ErrAlreadyExists) {
			t.Fatalf("PutBlob of other bytes over the version-1 blob %q: %v, want ErrAlreadyExists", name, err)
		}
	}
	st, err := b.state(ctx, blobStream(ref, "several", 0), "several")
	if err != nil || !bytes.Equal(st.raw, largeEvents[0].Data) || st.next != uint64(len(largeEvents)) {
		t.Fatalf("the version-1 blob after a put of its bytes: header %x, next %d, %v", st.raw, st.next, err)
	}

	if _, err := b.GetBlob(ctx, ref, "unfinished"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("GetBlob of an unfinished version-1 blob: %v, want ErrNotFound", err)
	}
	if err := b.PutBlob(ctx, ref, "unfinished", large); err != nil {
		t.Fatalf("PutBlob finishing a version-1 blob: %v", err)
	}
	if got, err := b.GetBlob(ctx, ref, "unfinished"); err != nil || !bytes.Equal(got, large) {
		t.Fatalf("GetBlob of the version-1 blob once finished: %d bytes, %v", len(got), err)
	}
	recs, _, err := b.l.readRaw(ctx, "test", blobStream(ref, "unfinished", 0), esdbclient.End{}, true, 1)
	if err != nil || len(recs) != 1 || recs[0].EventType != typeBlobCommit || !bytes.Equal(recs[0].Data, largeEvents[0].Data) {
		t.Fatalf("the finished version-1 blob does not end with a commit of its version-1 header: %v", err)
	}
	if err := b.DestroyBlobs(ctx, ref); err != nil {
		t.Fatal(err)
	}
}
