package bus_test

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	gocmp "github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/adapters/bus"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// tryNext calls sub.Next and reports whether it returned before every
// goroutine of the bubble blocked; if not, it is cancelled.
func tryNext(t *testing.T, sub commands.PublicEventSubscription) (ev publicevent.Event, err error, ok bool) {
	t.Helper()
	type result struct {
		ev  publicevent.Event
		err error
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan result, 1)
	go func() {
		ev, err := sub.Next(ctx)
		done <- result{ev, err}
	}()
	synctest.Wait()
	select {
	case r := <-done:
		return r.ev, r.err, true
	default:
		cancel()
		<-done
		return publicevent.Event{}, nil, false
	}
}

// next is tryNext that must return.
func next(t *testing.T, sub commands.PublicEventSubscription) (publicevent.Event, error) {
	t.Helper()
	ev, err, ok := tryNext(t, sub)
	if !ok {
		t.Fatal("Next blocks, want a result")
	}
	return ev, err
}

// blocks reports whether sub.Next has nothing to return now. It consumes
// what it finds.
func blocks(t *testing.T, sub commands.PublicEventSubscription) bool {
	t.Helper()
	_, _, ok := tryNext(t, sub)
	return !ok
}

func byPosition(events []publicevent.Event) []publicevent.Event {
	return slices.SortedFunc(slices.Values(events), func(a, b publicevent.Event) int { return cmp.Compare(a.Position, b.Position) })
}

func TestSubscriberDeliversAndAcks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Publishing waits for the subscriber's ack here: a message not
		// acked would leave Publish blocked and the bubble deadlocked.
		ps := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
		defer ps.Close()
		sub, err := bus.NewSubscriber(ps, 0).SubscribeLive(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()

		events := public(t, newWriter(t).appendKeys(acctA, acctB, acctA, acctB)...)
		if err := bus.NewPublisher(ps).Publish(t.Context(), events); err != nil {
			t.Fatal(err)
		}
		var got []publicevent.Event
		for range events {
			ev, err := next(t, sub)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ev)
		}
		if diff := gocmp.Diff(events, byPosition(got)); diff != "" {
			t.Errorf("received (-want +got):\n%s", diff)
		}
		if !blocks(t, sub) {
			t.Error("Next returned more than was published")
		}
	})
}

func TestSubscriberSeesOnlyWhatIsPublishedAfterIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ps := bus.NewGoChannel(nil)
		defer ps.Close()
		pub := bus.NewPublisher(ps)
		w := newWriter(t)
		if err := pub.Publish(t.Context(), public(t, w.appendKeys(acctA)...)); err != nil {
			t.Fatal(err)
		}
		sub, err := bus.NewSubscriber(ps, 0).SubscribeLive(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		later := public(t, w.appendKeys(acctB)...)
		if err := pub.Publish(t.Context(), later); err != nil {
			t.Fatal(err)
		}
		ev, err := next(t, sub)
		if err != nil || ev.Position != later[0].Position {
			t.Errorf("Next = position %d, %v; want %d", ev.Position, err, later[0].Position)
		}
		if !blocks(t, sub) {
			t.Error("an event published before the subscription was delivered")
		}
	})
}

func TestSubscriberReportsOverflowAsLag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ps := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
		defer ps.Close()
		sub, err := bus.NewSubscriber(ps, 2).SubscribeLive(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		events := public(t, newWriter(t).appendKeys(acctA, acctA, acctA, acctA, acctA, acctA)...)
		if err := bus.NewPublisher(ps).Publish(t.Context(), events); err != nil {
			t.Fatal(err)
		}

		var got, lags int
		for {
			_, err, ok := tryNext(t, sub)
			if !ok {
				break
			}
			switch {
			case errors.Is(err, commands.ErrLagged):
				lags++
				if !strings.Contains(err.Error(), "4 event(s) dropped") || !strings.Contains(err.Error(), "buffer full") {
					t.Errorf("lag error %q does not say what was lost", err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				got++
			}
		}
		if got != 2 || lags != 1 {
			t.Errorf("got %d events and %d lag reports, want the 2 buffered and one report", got, lags)
		}
	})
}

func TestSubscriberReportsUnreadableMessagesAsLag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ps := bus.NewGoChannel(nil)
		defer ps.Close()
		sub, err := bus.NewSubscriber(ps, 0).SubscribeLive(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		v2 := message.NewMessage("01HQZ5J8Q4V6D3N2M1K0JHGFED", []byte(`{"schema":"kmsbackup.event/v2"}`))
		if err := ps.Publish(bus.Topic, v2); err != nil {
			t.Fatal(err)
		}
		_, err = next(t, sub)
		if !errors.Is(err, commands.ErrLagged) || !strings.Contains(err.Error(), "01HQZ5J8Q4V6D3N2M1K0JHGFED") ||
			!strings.Contains(err.Error(), "kmsbackup.event/v2") {
			t.Errorf("Next = %v, want ErrLagged naming the message and its schema", err)
		}
		if !blocks(t, sub) {
			t.Error("the lag was reported twice")
		}
	})
}

func TestSubscriberClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ps := bus.NewGoChannel(nil)
		defer ps.Close()
		sub, err := bus.NewSubscriber(ps, 0).SubscribeLive(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		blocked := make(chan error, 1)
		go func() {
			_, err := sub.Next(t.Context())
			blocked <- err
		}()
		synctest.Wait()
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-blocked; !errors.Is(err, domain.ErrUnavailable) {
			t.Errorf("blocked Next after Close = %v, want domain.ErrUnavailable", err)
		}
		if _, err := sub.Next(t.Context()); !errors.Is(err, domain.ErrUnavailable) {
			t.Errorf("Next after Close = %v, want domain.ErrUnavailable", err)
		}
		if err := sub.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
	})
}

func TestSubscriberEndsWithItsTransport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ps := bus.NewGoChannel(nil)
		sub, err := bus.NewSubscriber(ps, 0).SubscribeLive(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		_ = ps.Close()
		if _, err := next(t, sub); !errors.Is(err, domain.ErrUnavailable) {
			t.Errorf("Next after the pub/sub closed = %v, want domain.ErrUnavailable", err)
		}
		if _, err := bus.NewSubscriber(ps, 0).SubscribeLive(t.Context()); !errors.Is(err, domain.ErrUnavailable) {
			t.Errorf("SubscribeLive on a closed pub/sub = %v, want domain.ErrUnavailable", err)
		}
	})
}

func TestSubscriberStopsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ps := bus.NewGoChannel(nil)
		defer ps.Close()
		ctx, cancel := context.WithCancel(t.Context())
		sub, err := bus.NewSubscriber(ps, 0).SubscribeLive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		cancel()
		if _, err := next(t, sub); err == nil {
			t.Error("Next succeeded after the subscription's context ended")
		}
	})
}
