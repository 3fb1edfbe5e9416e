package bus_test

import (
	"sync"
	"testing"
	"testing/synctest"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/adapters/bus"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// TestConsumersCanDedupeOnTheMessageUUID proves the at-least-once contract
// is usable: every event reaches a consumer four times (published twice, as
// PublishEvents does after a crash between publishing and recording its
// position, and handled twice by a duplicating middleware, as on a
// redelivery), and a consumer that keys its store on the message UUID ends
// with exactly one copy of each.
func TestConsumersCanDedupeOnTheMessageUUID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ps := bus.NewGoChannel(nil)
		defer ps.Close()
		router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}

		var mu sync.Mutex
		deliveries := 0
		store := map[string]publicevent.Event{} // the consumer's state, keyed by event ID
		router.AddConsumerHandler("dedupe-by-uuid", bus.Topic, ps, func(msg *message.Message) error {
			mu.Lock()
			defer mu.Unlock()
			deliveries++
			if _, seen := store[msg.UUID]; seen {
				return nil // a duplicate: already applied
			}
			ev, err := publicevent.Parse(msg.Payload)
			if err != nil {
				return err
			}
			store[msg.UUID] = ev
			return nil
		}).AddMiddleware(middleware.Duplicator)

		go func() { _ = router.Run(t.Context()) }()
		<-router.Running()

		events := public(t, newWriter(t).appendKeys(acctA, acctB, acctA, acctB, acctA)...)
		pub := bus.NewPublisher(ps)
		for range 2 {
			if err := pub.Publish(t.Context(), events); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		_ = router.Close()

		mu.Lock()
		defer mu.Unlock()
		if deliveries != 4*len(events) {
			t.Errorf("%d deliveries, want %d: the duplicates did not all arrive", deliveries, 4*len(events))
		}
		want := map[string]publicevent.Event{}
		for _, ev := range events {
			want[ev.ID] = ev
		}
		if diff := cmp.Diff(want, store); diff != "" {
			t.Errorf("consumer state (-want +got):\n%s", diff)
		}
	})
}
