package commands_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// The tests of PublishEvents run in synctest bubbles: time is fake (backoff
// costs nothing), and synctest.Wait tells when the loop has done all it can.

// run starts p.Run and returns a function that stops it and returns its
// error.
func startPublishEvents(t *testing.T, p *commands.PublishEvents) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

func TestPublishEventsPublishesTheLogInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		history := f.appendKeys(acctA, acctB, acctA, acctA, acctB)
		pub, pos := &recordingPublisher{}, newMemPositions()
		stop := startPublishEvents(t, &commands.PublishEvents{Log: f.log, Positions: pos, Publisher: pub})

		synctest.Wait()
		got, _, _ := pub.published()
		if diff := cmp.Diff(toPublic(t, history...), got); diff != "" {
			t.Fatalf("history published (-want +got):\n%s", diff)
		}
		if p, _ := pos.get(commands.PublicEventsProjection); p != 5 {
			t.Errorf("recorded position %d, want 5", p)
		}

		live := f.appendKeys(acctB, acctA)
		synctest.Wait()
		got, _, _ = pub.published()
		if diff := cmp.Diff(toPublic(t, append(history, live...)...), got); diff != "" {
			t.Fatalf("live events published (-want +got):\n%s", diff)
		}
		if p, _ := pos.get(commands.PublicEventsProjection); p != 7 {
			t.Errorf("recorded position %d, want 7", p)
		}
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	})
}

func TestPublishEventsResumesAfterTheRecordedPosition(t *testing.T) {
	for _, fromHead := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			f := newEventFixture(t)
			all := f.appendKeys(acctA, acctB, acctA, acctB, acctA, acctB)
			pos := newMemPositions()
			pos.pos[commands.PublicEventsProjection] = 4
			pub := &recordingPublisher{}
			stop := startPublishEvents(t, &commands.PublishEvents{Log: f.log, Positions: pos, Publisher: pub, FromHead: fromHead})
			synctest.Wait()
			got, _, _ := pub.published()
			if diff := cmp.Diff(toPublic(t, all[4:]...), got); diff != "" {
				t.Errorf("FromHead=%v: published (-want +got):\n%s", fromHead, diff)
			}
			_ = stop()
		})
	}
}

func TestPublishEventsFromHead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		f.appendKeys(acctA, acctB, acctA)
		pub, pos := &recordingPublisher{}, newMemPositions()
		stop := startPublishEvents(t, &commands.PublishEvents{Log: f.log, Positions: pos, Publisher: pub, FromHead: true})
		synctest.Wait()
		if got, _, _ := pub.published(); len(got) != 0 {
			t.Errorf("published %v from before the head", positionsOf(got))
		}
		if p, _ := pos.get(commands.PublicEventsProjection); p != 3 {
			t.Errorf("recorded position %d, want the head 3", p)
		}
		live := f.appendKeys(acctB)
		synctest.Wait()
		got, _, _ := pub.published()
		if diff := cmp.Diff(toPublic(t, live...), got); diff != "" {
			t.Errorf("published (-want +got):\n%s", diff)
		}
		_ = stop()

		// A restart resumes from the recorded position, not from the new
		// head: what was appended while it was down is published.
		missed := f.appendKeys(acctA, acctA)
		pub2 := &recordingPublisher{}
		stop = startPublishEvents(t, &commands.PublishEvents{Log: f.log, Positions: pos, Publisher: pub2, FromHead: true})
		synctest.Wait()
		got, _, _ = pub2.published()
		if diff := cmp.Diff(toPublic(t, missed...), got); diff != "" {
			t.Errorf("after restart, published (-want +got):\n%s", diff)
		}
		_ = stop()
	})
}

func TestPublishEventsBatchesWhatIsWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		const n, batch = 1000, 100
		accounts := make([]domain.AccountID, n)
		for i := range accounts {
			accounts[i] = []domain.AccountID{acctA, acctB}[i%2]
		}
		all := f.appendKeys(accounts...)
		pub := &recordingPublisher{gate: make(chan struct{})}
		pos := newMemPositions()
		stop := startPublishEvents(t, &commands.PublishEvents{Log: f.log, Positions: pos, Publisher: pub, MaxBatch: batch})

		// Let one publish through at a time, each once the reader has
		// filled everything it can: every batch between the first (taken
		// as soon as one event is ready) and the last (the rest) is full.
		for {
			synctest.Wait()
			if got, _, _ := pub.published(); len(got) == n {
				break
			}
			pub.gate <- struct{}{}
		}
		got, sizes, _ := pub.published()
		if diff := cmp.Diff(toPublic(t, all...), got); diff != "" {
			t.Fatalf("published (-want +got):\n%s", diff)
		}
		if len(sizes) > n/batch+1 {
			t.Errorf("%d batches, want at most %d (sizes %v)", len(sizes), n/batch+1, sizes)
		}
		for i, s := range sizes[1 : len(sizes)-1] {
			if s != batch {
				t.Errorf("batch %d has %d events, want %d (sizes %v)", i+1, s, batch, sizes)
			}
		}
		if p, updates := pos.get(commands.PublicEventsProjection); p != n || updates != len(sizes) {
			t.Errorf("position %d after %d updates, want %d after one update per batch (%d)", p, updates, n, len(sizes))
		}
		_ = stop()
	})
}

func TestPublishEventsRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		events := f.appendKeys(acctA) // one event: one batch
		var publishedAt time.Time
		pub := &recordingPublisher{failing: 4, onBatch: func([]publicevent.Event) { publishedAt = time.Now() }}
		pos := newMemPositions()
		pos.failing = 2
		var retried []error
		start := time.Now()
		stop := startPublishEvents(t, &commands.PublishEvents{Log: f.log, Positions: pos, Publisher: pub,
			MinBackoff: time.Second, MaxBackoff: 4 * time.Second,
			Retrying: func(err error) { retried = append(retried, err) }})

		time.Sleep(time.Hour)
		synctest.Wait()
		got, _, attempts := pub.published()
		if diff := cmp.Diff(toPublic(t, events...), got); diff != "" {
			t.Fatalf("published (-want +got):\n%s", diff)
		}
		if attempts != 5 {
			t.Errorf("%d publish attempts, want 5", attempts)
		}
		// Waits of 1s, 2s, 4s, 4s: doubling, capped at MaxBackoff.
		if d := publishedAt.Sub(start); d != 11*time.Second {
			t.Errorf("published after %v, want 11s of backoff", d)
		}
		if p, _ := pos.get(commands.PublicEventsProjection); p != 1 {
			t.Errorf("recorded position %d, want 1 after the store recovered", p)
		}
		if len(retried) != 6 {
			t.Errorf("Retrying called %d times, want 6 (4 publishes, 2 records): %v", len(retried), retried)
		}
		for _, err := range retried {
			if !isUnavailable(err) || !strings.Contains(err.Error(), "publish events") {
				t.Errorf("retried error %q: want context and domain.ErrUnavailable", err)
			}
		}
		_ = stop()
	})
}

func TestPublishEventsStopsRetryingWhenCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		f.appendKeys(acctA)
		pub, pos := &recordingPublisher{failing: 1 << 30}, newMemPositions()
		stop := startPublishEvents(t, &commands.PublishEvents{Log: f.log, Positions: pos, Publisher: pub})
		time.Sleep(time.Minute)
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
		if p, _ := pos.get(commands.PublicEventsProjection); p != 0 {
			t.Errorf("recorded position %d of an event never published", p)
		}
	})
}

func TestPublishEventsStopsAtACorruptEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		good := f.appendKeys(acctA, acctB)
		bad := good[0]
		bad.ID[15]++
		bad.Data = []byte{0xff}
		if _, err := f.log.Append(t.Context(), bad.Stream, domain.ExpectAny, []domain.Event{bad}); err != nil {
			t.Fatal(err)
		}
		f.appendKeys(acctA) // after the corrupt event: never reached
		pub, pos := &recordingPublisher{}, newMemPositions()
		err := (&commands.PublishEvents{Log: f.log, Positions: pos, Publisher: pub}).Run(t.Context())
		if !domain.IsCorruption(err) || !strings.Contains(err.Error(), "position 3") {
			t.Fatalf("Run = %v, want a corruption error naming position 3", err)
		}
		got, _, _ := pub.published()
		if diff := cmp.Diff(toPublic(t, good...), got); diff != "" {
			t.Errorf("published (-want +got): want everything before the corrupt event\n%s", diff)
		}
		if p, _ := pos.get(commands.PublicEventsProjection); p != 2 {
			t.Errorf("recorded position %d, want 2: a restart must stop at the corrupt event again", p)
		}
	})
}

func TestPublishEventsReturnsWhenTheLogCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		done := make(chan error, 1)
		go func() {
			done <- (&commands.PublishEvents{Log: f.log, Positions: newMemPositions(), Publisher: &recordingPublisher{}}).Run(t.Context())
		}()
		synctest.Wait()
		_ = f.log.Close()
		if err := <-done; !isUnavailable(err) {
			t.Errorf("Run = %v, want domain.ErrUnavailable", err)
		}
	})
}

func TestPublishEventsValidate(t *testing.T) {
	err := (&commands.PublishEvents{MaxBatch: -1, MinBackoff: time.Minute, MaxBackoff: time.Second}).Run(t.Context())
	if !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("Run = %v, want domain.ErrInvalidArgument", err)
	}
	for _, want := range []string{"no event log", "no position store", "no publisher", "batch size -1", "min backoff"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %q", err, want)
		}
	}
}
