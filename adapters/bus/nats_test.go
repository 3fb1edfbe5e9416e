package bus_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kmsbackup/kmsbackup/adapters/bus"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// natsWait bounds every wait on the real server.
const natsWait = 20 * time.Second

// mustNATS opens the bus on the server at url, closed when the test ends.
func mustNATS(tb testing.TB, url string, opts bus.NATSOptions) *bus.NATS {
	tb.Helper()
	n, err := bus.NewNATS(url, nil, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = n.Close() })
	return n
}

// streamInfo reads a stream's state straight from the server.
func streamInfo(tb testing.TB, url, name string) *jetstream.StreamInfo {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := js.Stream(tb.Context(), name)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := st.Info(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	return info
}

// awaitAcked waits until consumer name of stream has acked the first n
// messages.
func awaitAcked(tb testing.TB, url, stream, name string, n uint64) {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(natsWait)
	for {
		c, err := js.Consumer(tb.Context(), stream, name)
		if err != nil {
			tb.Fatal(err)
		}
		info, err := c.Info(tb.Context())
		if err != nil {
			tb.Fatal(err)
		}
		if info.AckFloor.Stream >= n && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("consumer %s acked up to %d (%d pending), want %d", name, info.AckFloor.Stream, info.NumAckPending, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nextWithin calls sub.Next with natsWait as its deadline.
func nextWithin(tb testing.TB, sub commands.PublicEventSubscription) publicevent.Event {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), natsWait)
	defer cancel()
	ev, err := sub.Next(ctx)
	if err != nil {
		tb.Fatalf("Next: %v", err)
	}
	return ev
}

func TestNATSPublishAndSubscribeLive(t *testing.T) {
	url, _ := natsserver.Start(t)
	n := mustNATS(t, url, bus.NATSOptions{})
	w := newWriter(t)
	pub := bus.NewPublisher(n.Publisher)

	// Published before the subscription: not delivered.
	if err := pub.Publish(t.Context(), public(t, w.appendKeys(acctA)...)); err != nil {
		t.Fatal(err)
	}
	sub, err := bus.NewSubscriber(n.Subscriber, 0).SubscribeLive(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	raw, err := n.Subscriber.Subscribe(t.Context(), bus.Topic)
	if err != nil {
		t.Fatal(err)
	}

	const N = 50
	var events []publicevent.Event
	for i := range N {
		events = append(events, public(t, w.appendKey([]domain.AccountID{acctA, acctB}[i%2]))...)
	}
	for i := 0; i < N; i += 10 {
		if err := pub.Publish(t.Context(), events[i:i+10]); err != nil {
			t.Fatal(err)
		}
	}
	var got []publicevent.Event
	for range N {
		got = append(got, nextWithin(t, sub))
	}
	if diff := cmp.Diff(events, got); diff != "" {
		t.Errorf("live events, in order (-published +received):\n%s", diff)
	}

	// The messages themselves: UUID, metadata (no transport headers), payload.
	for i, ev := range events {
		var msg *message.Message
		select {
		case msg = <-raw:
		case <-time.After(natsWait):
			t.Fatalf("message %d not received", i)
		}
		msg.Ack()
		want := message.Metadata{"position": strconv.FormatUint(ev.Position, 10), "account": ev.Account,
			"type": ev.Type, "schema": publicevent.Schema}
		if msg.UUID != ev.ID {
			t.Errorf("message %d: UUID %s, want the event ID %s", i, msg.UUID, ev.ID)
		}
		if diff := cmp.Diff(want, msg.Metadata); diff != "" {
			t.Errorf("message %d: metadata (-want +got):\n%s", i, diff)
		}
		parsed, err := publicevent.Parse(msg.Payload)
		if err != nil || parsed.ID != ev.ID {
			t.Errorf("message %d: payload of %s, %v; want %s", i, parsed.ID, err, ev.ID)
		}
	}
}

// TestNATSDropsRepublishedEvents: two engine nodes publish the same events
// (and one of them a batch again, as after a crash): the stream stores each
// once and a live subscriber receives each once.
func TestNATSDropsRepublishedEvents(t *testing.T) {
	url, _ := natsserver.Start(t)
	node1, node2 := mustNATS(t, url, bus.NATSOptions{}), mustNATS(t, url, bus.NATSOptions{})
	sub, err := bus.NewSubscriber(node2.Subscriber, 0).SubscribeLive(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	w := newWriter(t)
	events := public(t, w.appendKeys(acctA, acctB, acctA, acctB, acctA, acctB, acctA, acctB)...)
	for _, p := range []*bus.Publisher{bus.NewPublisher(node1.Publisher), bus.NewPublisher(node2.Publisher)} {
		if err := p.Publish(t.Context(), events); err != nil {
			t.Fatal(err)
		}
	}
	if err := bus.NewPublisher(node1.Publisher).Publish(t.Context(), events[2:5]); err != nil {
		t.Fatal(err)
	}
	last := public(t, w.appendKeys(acctA)...)
	if err := bus.NewPublisher(node2.Publisher).Publish(t.Context(), last); err != nil {
		t.Fatal(err)
	}

	var got []publicevent.Event
	for range len(events) + 1 {
		got = append(got, nextWithin(t, sub))
	}
	if diff := cmp.Diff(positions(append(events, last...)), positions(got)); diff != "" {
		t.Errorf("received positions (-want +got): each event once, then the last one\n%s", diff)
	}
	if info := streamInfo(t, url, bus.Topic); info.State.Msgs != uint64(len(events)+1) {
		t.Errorf("the stream holds %d messages, want %d", info.State.Msgs, len(events)+1)
	}
}

// TestNATSStreamsAreKept: the streams are file-backed with limits
// retention, and a durable consumer's acks delete nothing: a second
// consumer replays everything.
func TestNATSStreamsAreKept(t *testing.T) {
	url, _ := natsserver.Start(t)
	n := mustNATS(t, url, bus.NATSOptions{DuplicateWindow: time.Minute})
	for _, topic := range []string{bus.Topic, bus.IngestTopic} {
		cfg := streamInfo(t, url, topic).Config
		if cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.LimitsPolicy || cfg.Duplicates != time.Minute ||
			cfg.MaxAge != 0 || cfg.MaxBytes != -1 || !cfg.DenyDelete || !slices.Equal(cfg.Subjects, []string{topic}) {
			t.Errorf("stream %s: %+v", topic, cfg)
		}
	}

	events := public(t, newWriter(t).appendKeys(acctA, acctB, acctA)...)
	msgs := make([]*message.Message, len(events))
	for i, ev := range events {
		m, err := bus.NewMessage(ev)
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = m
	}
	if err := n.Publisher.Publish(bus.IngestTopic, msgs...); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"first", "second"} {
		sub, err := n.NewIngestSubscriber(name)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		ch, err := sub.Subscribe(ctx, bus.IngestTopic)
		if err != nil {
			t.Fatal(err)
		}
		for i := range events {
			select {
			case m := <-ch:
				if m.UUID != events[i].ID {
					t.Errorf("consumer %s: message %d is %s, want %s", name, i, m.UUID, events[i].ID)
				}
				m.Ack()
			case <-time.After(natsWait):
				t.Fatalf("consumer %s: message %d not delivered", name, i)
			}
		}
		awaitAcked(t, url, bus.IngestTopic, name, uint64(len(events)))
		cancel()
		_ = sub.Close()
	}
	if info := streamInfo(t, url, bus.IngestTopic); info.State.Msgs != uint64(len(events)) {
		t.Errorf("after two consumers acked everything the stream holds %d messages, want %d", info.State.Msgs, len(events))
	}
}

func TestNATSPingAndUnavailable(t *testing.T) {
	url, stop := natsserver.Start(t)
	n := mustNATS(t, url, bus.NATSOptions{})
	if err := n.Ping(t.Context()); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	stop()
	// The client notices the server is gone a moment later; a ping sent
	// before that waits for its deadline.
	deadline := time.Now().Add(natsWait)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := n.Ping(ctx)
		cancel()
		if errors.Is(err, domain.ErrUnavailable) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ping with the server stopped = %v, want domain.ErrUnavailable", err)
		}
	}
	events := public(t, newWriter(t).appendKeys(acctA)...)
	if err := bus.NewPublisher(n.Publisher).Publish(t.Context(), events); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("Publish with the server stopped = %v, want domain.ErrUnavailable", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}

	if _, err := bus.NewNATS(url, nil, bus.NATSOptions{}); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("NewNATS with no server = %v, want domain.ErrUnavailable", err)
	}
}

func TestNATSOptionsValidate(t *testing.T) {
	if err := (bus.NATSOptions{}).Validate(); err != nil {
		t.Errorf("zero options: %v", err)
	}
	if err := (bus.NATSOptions{MaxAge: time.Minute}).Validate(); err != nil {
		t.Errorf("a max age below the default window: %v", err)
	}
	bad := bus.NATSOptions{Replicas: 7, MaxAge: time.Minute, DuplicateWindow: time.Hour, IngestConsumer: "a.b",
		MinNakDelay: time.Minute, MaxNakDelay: time.Second}
	err := bad.Validate()
	if !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("Validate = %v, want domain.ErrInvalidArgument", err)
	}
	for _, want := range []string{"replicas", "duplicate window", "ingest consumer", "min nak delay"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not mention %q", err, want)
		}
	}
	if _, err := bus.NewNATS("nats://127.0.0.1:1", nil, bad); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("NewNATS with bad options = %v, want domain.ErrInvalidArgument", err)
	}
}

// TestNATSSubscriptionsEndCleanly ends subscriptions while messages are
// still on their way to them, buffered in the client or waiting for an
// ack: the channel closes, nothing is sent on it after (the race detector
// watches), and the subscriber closes in time.
func TestNATSSubscriptionsEndCleanly(t *testing.T) {
	url, _ := natsserver.Start(t)
	n := mustNATS(t, url, bus.NATSOptions{})
	w := newWriter(t)
	pub := bus.NewPublisher(n.Publisher)
	live := bus.NewSubscriber(n.Subscriber, 4)
	for round := range 10 {
		sub, err := live.SubscribeLive(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		raw, err := n.Subscriber.Subscribe(ctx, bus.Topic)
		if err != nil {
			t.Fatal(err)
		}
		var events []publicevent.Event
		for range 32 {
			events = append(events, public(t, w.appendKeys(acctA)...)...)
		}
		if err := pub.Publish(t.Context(), events); err != nil {
			t.Fatal(err)
		}
		nctx, ncancel := context.WithTimeout(t.Context(), natsWait)
		if _, err := sub.Next(nctx); err != nil && !errors.Is(err, commands.ErrLagged) {
			t.Fatal(err)
		}
		ncancel()
		select {
		case msg := <-raw:
			if round%2 == 0 {
				msg.Ack()
			} // else left unanswered
		case <-time.After(natsWait):
			t.Fatal("no message")
		}
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		cancel()
		timeout := time.After(natsWait)
		for open := true; open; {
			select {
			case _, open = <-raw:
			case <-timeout:
				t.Fatal("the subscription's channel is still open")
			}
		}
	}
	ingest, err := n.NewIngestSubscriber("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ingest.Subscribe(t.Context(), bus.Topic); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let it fill its buffer
	start := time.Now()
	if err := n.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Close took %v", d)
	}
	if _, err := n.Subscriber.Subscribe(t.Context(), bus.Topic); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
}
