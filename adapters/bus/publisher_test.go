package bus_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"testing/synctest"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/adapters/bus"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

func TestPublisherMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ps := bus.NewGoChannel(nil)
		defer ps.Close()
		msgs, err := ps.Subscribe(t.Context(), bus.Topic)
		if err != nil {
			t.Fatal(err)
		}
		w := newWriter(t)
		events := public(t, w.appendKeys(acctA, acctB, acctA)...)
		if err := bus.NewPublisher(ps).Publish(t.Context(), events); err != nil {
			t.Fatal(err)
		}

		got := map[string]*message.Message{}
		for range events {
			msg := <-msgs
			msg.Ack()
			got[msg.UUID] = msg
		}
		for _, ev := range events {
			msg, ok := got[ev.ID]
			if !ok {
				t.Fatalf("no message with UUID = event ID %s", ev.ID)
			}
			want := message.Metadata{
				"position": strconv.FormatUint(ev.Position, 10),
				"account":  ev.Account,
				"type":     ev.Type,
				"schema":   "kmsbackup.event/v1",
			}
			if diff := cmp.Diff(want, msg.Metadata); diff != "" {
				t.Errorf("metadata of %s (-want +got):\n%s", ev.ID, diff)
			}
			parsed, err := publicevent.Parse(msg.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ev, parsed); diff != "" {
				t.Errorf("payload of %s (-want +got):\n%s", ev.ID, diff)
			}
		}
	})
}

func TestPublisherErrors(t *testing.T) {
	ps := bus.NewGoChannel(nil)
	p := bus.NewPublisher(ps)
	events := public(t, newWriter(t).appendKeys(acctA)...)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Publish(ctx, events); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled context = %v, want context.Canceled", err)
	}

	bad := events[0]
	bad.Data = nil
	if err := p.Publish(t.Context(), []publicevent.Event{bad}); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("Publish of an event without data = %v, want domain.ErrInvalidArgument", err)
	}

	if err := p.Publish(t.Context(), nil); err != nil {
		t.Errorf("Publish of nothing = %v", err)
	}

	_ = ps.Close()
	if err := p.Publish(t.Context(), events); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("Publish on a closed pub/sub = %v, want domain.ErrUnavailable", err)
	}
}
