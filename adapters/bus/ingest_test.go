package bus_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	gocmp "github.com/google/go-cmp/cmp"
	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/adapters/bus"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// externalKMS is the stream of one KMS instance as an external KMS wrote
// it (revisions from 0, positions of its own log): the instance created, a
// key created and rotated, a secret created, rotated and deleted, the key
// deleted, and, if release is set, the instance released. seed keeps the
// IDs of two instances apart.
func externalKMS(tb testing.TB, seed byte, a domain.AccountID, in domain.InstanceID, release bool) []domain.Event {
	tb.Helper()
	id := func(i int) ulid.ULID {
		var u ulid.ULID
		_ = u.SetTime(ulid.Timestamp(base) + uint64(i))
		_ = u.SetEntropy([]byte{seed, 0, 0, 0, 0, 0, 0, 0, 0, byte(i)})
		return u
	}
	key := domain.NewKeyID(id(100))
	data := []domain.EventData{
		&domain.InstanceCreated{Instance: in, Region: "cn-hangzhou", KeyQuota: 10, SecretQuota: 10},
		&domain.KeyCreated{Key: key, Description: "orders", Spec: domain.KeySpecAES256, Material: domain.Sealed("sealed-v1-0123456789abcdef")},
		&domain.KeyRotated{Key: key, Version: 2, Material: domain.Sealed("sealed-v2-0123456789abcdef")},
		&domain.SecretCreated{Name: "db-password", Key: key, Value: []byte("kms-ciphertext-1")},
		&domain.SecretRotated{Name: "db-password", Version: 2, Key: key, Value: []byte("kms-ciphertext-2")},
		&domain.SecretCreated{Name: "api-token", Key: key, Value: []byte("kms-ciphertext-3")},
		&domain.SecretDeleted{Name: "db-password"},
	}
	if release {
		data = append(data, &domain.InstanceReleased{Instance: in})
	} else {
		data = append(data, &domain.SecretDeleted{Name: "api-token"}, &domain.KeyDeleted{Key: key})
	}
	out := make([]domain.Event, len(data))
	for i, d := range data {
		out[i] = domain.Event{ID: id(i + 1), Stream: domain.KMSStream(in), Revision: uint64(i), Position: uint64(1000 + 2*i + int(seed)),
			Type: d.EventType(), Schema: domain.SchemaVersion, OccurredAt: base.Add(time.Duration(i) * time.Minute),
			Account: a, Region: "cn-hangzhou", Instance: in, Data: domain.EncodeData(d)}
	}
	return out
}

// ingestTransport is where the ingest topic lives: a publisher for the
// external KMS, and one subscriber per engine node.
type ingestTransport struct {
	pub        message.Publisher
	nodes      []message.Subscriber
	retryDelay time.Duration
}

// syncBuffer is a log destination safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// kmsState is the kmsstate projection of store: every projection key and
// value.
func kmsState(tb testing.TB, store *pebblestore.Projections) map[string]string {
	tb.Helper()
	out := map[string]string{}
	err := store.Scan(nil, nil, func(k, v []byte) (bool, error) {
		out[string(k)] = string(v)
		return true, nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// referenceState applies events once, in the order given, straight to a
// fresh projection store.
func referenceState(tb testing.TB, events []domain.Event) map[string]string {
	tb.Helper()
	st, err := pebblestore.OpenProjections(tb.TempDir(), pebblestore.Options{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	for i, e := range events {
		if err := st.Update(kmsstate.Name, uint64(i+1), func(txn projections.Txn) error { return kmsstate.Apply(txn, e) }); err != nil {
			tb.Fatalf("apply %s: %v", e.Type, err)
		}
	}
	return kmsState(tb, st)
}

// ingestScenario publishes the events of two external KMS instances on the
// ingest topic in the order given (indexes into their concatenation), each
// twice, plus two poison messages, while every node runs the ingest
// handler on a router with a duplicating middleware (every delivery
// handled twice) into one Pebble event log. The log must end with each
// event exactly once at its revision, the poison dropped and logged, and
// the kmsstate projection of the log equal to applying the events once.
func ingestScenario(t *testing.T, tr ingestTransport, order func(events []domain.Event) []int) (events, early int) {
	a := externalKMS(t, 1, acctA, kmsA, false)
	b := externalKMS(t, 2, acctB, kmsB, true)
	all := append(slices.Clone(a), b...)

	st, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ing := &commands.KMSIngest{Log: st, Streams: st}
	var tooEarly atomic.Int64 // deliveries ahead of their predecessor
	ingest := func(ctx context.Context, e publicevent.Event) error {
		err := ing.Ingest(ctx, e)
		if errors.Is(err, domain.ErrWrongExpectedRevision) {
			tooEarly.Add(1)
		}
		return err
	}
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var routers []*message.Router
	var running sync.WaitGroup
	for _, sub := range tr.nodes {
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, bus.NewLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		bus.AddIngestHandler(router, sub, ingest, bus.IngestOptions{Logger: logger, RetryDelay: tr.retryDelay}).
			AddMiddleware(middleware.Duplicator)
		running.Go(func() {
			if err := router.Run(ctx); err != nil {
				t.Errorf("router: %v", err)
			}
		})
		<-router.Running()
		routers = append(routers, router)
	}

	publish := func(msgs ...*message.Message) {
		t.Helper()
		if err := tr.pub.Publish(bus.IngestTopic, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	poison := message.NewMessage("01KJMBQS501G60R30C1G60R3ZZ", []byte("kms1:not json"))
	notKMS := publicevent.Event{Schema: publicevent.Schema, ID: "01KJMBQS501G60R30C1G60R3ZY", Type: "AccountCreated",
		Stream: "account-" + string(acctA), OccurredAt: base, Account: string(acctA),
		Data: &publicevent.AccountCreated{AccountID: string(acctA), Name: "acme"}}
	notKMSMsg, err := bus.NewMessage(notKMS)
	if err != nil {
		t.Fatal(err)
	}
	publish(poison)
	for round := range 2 {
		for _, i := range order(all) {
			msg, err := bus.NewMessage(public(t, all[i])[0])
			if err != nil {
				t.Fatal(err)
			}
			publish(msg)
		}
		if round == 0 {
			publish(notKMSMsg)
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		head, err := st.Head(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if head >= uint64(len(all)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s the log holds %d events, want %d", head, len(all))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The log can be complete before the message that is not a KMS event
	// (published after the first round) is delivered: wait until both
	// poison messages are handled, as the checks below assert.
	for !strings.Contains(logs.String(), string(notKMS.ID)) || !strings.Contains(logs.String(), poison.UUID) {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s the poison messages are not both handled:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Stop the nodes: whatever is still being handled finishes first.
	for _, r := range routers {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	}
	cancel()
	running.Wait()

	logged, err := st.ReadAll(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(logged) != len(all) {
		t.Fatalf("the log holds %d events, want each of the %d exactly once", len(logged), len(all))
	}
	for _, stream := range [][]domain.Event{a, b} {
		got, err := st.ReadStream(t.Context(), stream[0].Stream, 0, false, 100)
		if err != nil {
			t.Fatal(err)
		}
		strip := func(events []domain.Event) []domain.Event {
			out := make([]domain.Event, len(events))
			for i, e := range events {
				e.Position = 0 // the external log's, and this log's
				out[i] = e
			}
			return out
		}
		if diff := gocmp.Diff(strip(stream), strip(got)); diff != "" {
			t.Errorf("stream %s (-published +logged):\n%s", stream[0].Stream, diff)
		}
	}

	proj, err := pebblestore.OpenProjections(t.TempDir(), pebblestore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer proj.Close()
	kp := &commands.Projector{Name: kmsstate.Name, Log: st, Store: proj, Apply: commands.Pure(kmsstate.Apply)}
	pctx, pcancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- kp.Run(pctx) }()
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	if err := kp.WaitFor(wctx, logged[len(logged)-1].Position); err != nil {
		t.Fatal(err)
	}
	pcancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if diff := gocmp.Diff(referenceState(t, all), kmsState(t, proj)); diff != "" {
		t.Errorf("kmsstate of the ingested log differs from applying the events once (-once +ingested):\n%s", diff)
	}

	out := logs.String()
	for _, want := range []string{"01KJMBQS501G60R30C1G60R3ZZ", "01KJMBQS501G60R30C1G60R3ZY"} {
		if !strings.Contains(out, want) {
			t.Errorf("the poison message %s was not logged:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "level=ERROR"); n < 2 {
		t.Errorf("%d poison messages logged, want at least 2:\n%s", n, out)
	}
	if t.Failed() {
		t.Logf("log:\n%s", out)
	}
	t.Logf("%d deliveries ahead of their predecessor", tooEarly.Load())
	return len(all), int(tooEarly.Load())
}

// Orders of publication (indexes into events): the external KMS's order,
// the instances interleaved by revision; and that backwards, so that every
// event arrives before its predecessor.
func inOrder(events []domain.Event) []int {
	out := make([]int, len(events))
	for i := range out {
		out[i] = i
	}
	slices.SortStableFunc(out, func(i, j int) int { return cmp.Compare(events[i].Revision, events[j].Revision) })
	return out
}

func backwards(events []domain.Event) []int {
	out := inOrder(events)
	slices.Reverse(out)
	return out
}

func TestIngestOverGoChannel(t *testing.T) {
	for name, order := range map[string]func([]domain.Event) []int{"in order": inOrder, "backwards": backwards} {
		t.Run(name, func(t *testing.T) {
			ps := bus.NewGoChannel(nil)
			defer ps.Close()
			_, early := ingestScenario(t, ingestTransport{pub: ps, nodes: []message.Subscriber{ps}, retryDelay: time.Millisecond}, order)
			if name == "backwards" && early == 0 {
				t.Error("no event arrived ahead of its predecessor: the scenario tests nothing")
			}
		})
	}
}

// Over NATS, two engine nodes share the durable ingest consumer, and the
// external KMS publishes every event twice (deduplicated by the stream).
func TestIngestOverNATS(t *testing.T) {
	for name, order := range map[string]func([]domain.Event) []int{"in order": inOrder, "backwards": backwards} {
		t.Run(name, func(t *testing.T) {
			url, _ := natsserver.Start(t)
			opts := bus.NATSOptions{MinNakDelay: 20 * time.Millisecond, MaxNakDelay: 200 * time.Millisecond, AckWait: 5 * time.Second}
			external := mustNATS(t, url, opts)
			var nodes []message.Subscriber
			for range 2 {
				sub, err := mustNATS(t, url, opts).NewIngestSubscriber("")
				if err != nil {
					t.Fatal(err)
				}
				nodes = append(nodes, sub)
			}
			n, early := ingestScenario(t, ingestTransport{pub: external.Publisher, nodes: nodes}, order)
			if name == "backwards" && early == 0 {
				t.Error("no event arrived ahead of its predecessor: the scenario tests nothing")
			}
			if info := streamInfo(t, url, bus.IngestTopic); info.State.Msgs != uint64(n+2) {
				t.Errorf("the ingest stream holds %d messages, want %d: each event once, and the two poison messages",
					info.State.Msgs, n+2)
			}
		})
	}
}

func TestIngestHandlerSortsFailures(t *testing.T) {
	ev := public(t, externalKMS(t, 1, acctA, kmsA, false)[1])[0]
	good, err := bus.NewMessage(ev)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		payload []byte
		err     error // what ingest returns
		nack    bool
		logged  bool
	}{
		{"ingested", good.Payload, nil, false, false},
		{"not JSON", []byte("{"), nil, false, true},
		{"another schema", []byte(`{"schema":"kmsbackup.event/v2"}`), nil, false, true},
		{"invalid", good.Payload, domain.Invalid("ingest", "not a KMS event"), false, true},
		{"corrupt", good.Payload, domain.Corruption("bad bytes"), false, true},
		{"ahead of its predecessor", good.Payload, domain.WrongRevision("kms-x", domain.ExpectRevision(0), false, 0), true, false},
		{"log unavailable", good.Payload, fmt.Errorf("append: %w", domain.ErrUnavailable), true, false},
		{"unexpected", good.Payload, errors.New("boom"), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			var got []publicevent.Event
			h := bus.IngestHandler(func(_ context.Context, e publicevent.Event) error {
				got = append(got, e)
				return tt.err
			}, bus.IngestOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			err := h(message.NewMessage(good.UUID, tt.payload))
			if (err != nil) != tt.nack {
				t.Errorf("handler = %v, want nack %v", err, tt.nack)
			}
			if tt.nack && !errors.Is(err, tt.err) {
				t.Errorf("handler = %v, want ingest's error %v", err, tt.err)
			}
			if logged := strings.Contains(logs.String(), "level=ERROR"); logged != tt.logged {
				t.Errorf("logged = %v, want %v:\n%s", logged, tt.logged, logs.String())
			}
			if logged := logs.String(); strings.Contains(logged, "sealed") || strings.Contains(logged, "material") {
				t.Errorf("the log shows event data:\n%s", logged)
			}
			if strings.HasPrefix(string(tt.payload), `{"schema":"kmsbackup.event/v1"`) && len(got) != 1 {
				t.Errorf("ingest called %d times, want once", len(got))
			}
		})
	}
}

func TestIngestHandlerWaitsBeforeNacking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		good, err := bus.NewMessage(public(t, externalKMS(t, 1, acctA, kmsA, false)[1])[0])
		if err != nil {
			t.Fatal(err)
		}
		h := bus.IngestHandler(func(context.Context, publicevent.Event) error { return domain.ErrUnavailable },
			bus.IngestOptions{RetryDelay: time.Second})
		start := time.Now()
		if err := h(good); !errors.Is(err, domain.ErrUnavailable) {
			t.Fatal(err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("nacked after %v, want 1s", d)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		good.SetContext(ctx)
		start = time.Now()
		_ = h(good)
		if d := time.Since(start); d != 0 {
			t.Errorf("with the message's context done, nacked after %v, want at once", d)
		}
	})
}
