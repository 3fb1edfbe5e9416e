package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/adapters/bus"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// collector gathers what one tail emits and signals each event.
type collector struct {
	mu     sync.Mutex
	got    []publicevent.Event
	notify chan struct{}
}

func newCollector() *collector { return &collector{notify: make(chan struct{}, 1)} }

func (c *collector) emit(ev publicevent.Event) error {
	c.mu.Lock()
	c.got = append(c.got, ev)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return nil
}

func (c *collector) events() []publicevent.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]publicevent.Event(nil), c.got...)
}

// await waits until c holds at least n events or the deadline passes.
func (c *collector) await(tb testing.TB, n int, deadline <-chan time.Time) {
	tb.Helper()
	for len(c.events()) < n {
		select {
		case <-c.notify:
		case <-deadline:
			tb.Fatalf("after the deadline a tail holds %d events, want %d", len(c.events()), n)
		}
	}
}

// publishAndTail wires the real parts as the server will: the event log,
// PublishEvents publishing through bus.Publisher, and tails of three callers
// reading history from the log and live events through bus.Subscriber, all
// over one transport (pub and sub: GoChannel, NATS JetStream). Writers
// append concurrently while the tails run; settle waits until the tails
// hold n events each (or, in a synctest bubble, until everything is idle).
// Each tail must end with exactly its caller's events, in order, once each.
func publishAndTail(t *testing.T, pub message.Publisher, sub message.Subscriber, settle func(tails map[string]*collector, want map[string]int)) {
	w := newWriter(t)
	history := w.appendKeys(acctA, acctB, acctA, acctB, acctB)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var running sync.WaitGroup
	errs := make(chan error, 8)

	publisher := &commands.PublishEvents{Log: w.log, Positions: w.positions(),
		Publisher: bus.NewPublisher(pub), FromHead: true, MaxBatch: 16}
	running.Go(func() { errs <- fmt.Errorf("publish: %w", publisher.Run(ctx)) })

	// A live buffer of 4 overflows under this load, so the lag path runs too.
	live := &countingSubscriber{PublicEventSubscriber: bus.NewSubscriber(sub, 4)}
	tailer := &commands.EventTailer{Log: w.log, Live: live, PageSize: 3}
	callers := map[string]commands.Caller{
		"A": {Account: acctA}, "B": {Account: acctB}, "admin": {Admin: true},
	}
	tails := map[string]*collector{}
	for name, caller := range callers {
		c := newCollector()
		tails[name] = c
		from := uint64(0)
		if name == "B" {
			from = 2 // B starts after position 2
		}
		running.Go(func() { errs <- fmt.Errorf("tail %s: %w", name, tailer.TailEvents(ctx, caller, from, c.emit)) })
	}

	var writers sync.WaitGroup
	for g := range 4 {
		writers.Go(func() {
			for i := range 40 {
				w.appendKey([]domain.AccountID{acctA, acctB}[(g+i)%3%2])
			}
		})
	}
	writers.Wait()

	all, err := w.log.ReadAll(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(history)+160 {
		t.Fatalf("log holds %d events, want %d", len(all), len(history)+160)
	}
	want := map[string][]publicevent.Event{}
	for name, caller := range callers {
		for _, e := range all {
			if caller.Sees(e.Account) && !(name == "B" && e.Position <= 2) {
				want[name] = append(want[name], public(t, e)[0])
			}
		}
	}
	counts := map[string]int{}
	for name := range want {
		counts[name] = len(want[name])
	}
	settle(tails, counts)

	cancel()
	running.Wait()
	close(errs)
	t.Logf("live events received %d, lag reports %d", live.events.Load(), live.lags.Load())
	for err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%v, want context.Canceled", err)
		}
	}
	for name, c := range tails {
		if diff := cmp.Diff(positions(want[name]), positions(c.events())); diff != "" {
			t.Errorf("tail of %s: positions (-want +got):\n%s", name, diff)
			continue
		}
		if diff := cmp.Diff(want[name], c.events()); diff != "" {
			t.Errorf("tail of %s: events (-want +got):\n%s", name, diff)
		}
	}
}

// countingSubscriber counts what the tails' live subscriptions deliver.
type countingSubscriber struct {
	commands.PublicEventSubscriber
	events, lags atomic.Int64
}

func (c *countingSubscriber) SubscribeLive(ctx context.Context) (commands.PublicEventSubscription, error) {
	sub, err := c.PublicEventSubscriber.SubscribeLive(ctx)
	if err != nil {
		return nil, err
	}
	return &countingSubscription{PublicEventSubscription: sub, c: c}, nil
}

type countingSubscription struct {
	commands.PublicEventSubscription
	c *countingSubscriber
}

func (s *countingSubscription) Next(ctx context.Context) (publicevent.Event, error) {
	ev, err := s.PublicEventSubscription.Next(ctx)
	switch {
	case errors.Is(err, commands.ErrLagged):
		s.c.lags.Add(1)
	case err == nil:
		s.c.events.Add(1)
	}
	return ev, err
}

// awaitTails settles by waiting until every tail holds its count.
func awaitTails(t *testing.T) func(tails map[string]*collector, want map[string]int) {
	return func(tails map[string]*collector, want map[string]int) {
		deadline := time.After(20 * time.Second)
		for name, c := range tails {
			c.await(t, want[name], deadline)
		}
	}
}

func TestPublishAndTailOverGoChannel(t *testing.T) {
	ps := bus.NewGoChannel(nil)
	defer ps.Close()
	publishAndTail(t, ps, ps, awaitTails(t))
}

// The same in a synctest bubble, where "settled" means every goroutine is
// idle: no event is still on its way, so nothing more can arrive.
func TestPublishAndTailOverGoChannelSettled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ps := bus.NewGoChannel(nil)
		defer ps.Close()
		publishAndTail(t, ps, ps, func(map[string]*collector, map[string]int) { synctest.Wait() })
	})
}

// The same over a real NATS JetStream server, with two engine nodes: one
// publishes, the tails follow the other.
func TestPublishAndTailOverNATS(t *testing.T) {
	url, _ := natsserver.Start(t)
	node1, node2 := mustNATS(t, url, bus.NATSOptions{}), mustNATS(t, url, bus.NATSOptions{})
	publishAndTail(t, node1.Publisher, node2.Subscriber, awaitTails(t))
}
