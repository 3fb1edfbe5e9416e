package commands_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// The tests of TailEvents run in synctest bubbles: synctest.Wait tells when
// the tail has emitted all it can, without sleeping.

var (
	callerA     = commands.Caller{Account: acctA}
	adminCaller = commands.Caller{Admin: true}
)

// tailRun is one running TailEvents call and what it emitted.
type tailRun struct {
	mu   sync.Mutex
	got  []publicevent.Event
	sub  *scriptedSub
	stop func() error
}

func (r *tailRun) emitted() []publicevent.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]publicevent.Event(nil), r.got...)
}

// startTail runs TailEvents until stop; emit fails with failWith at the
// failAt-th event (1-based; 0 never).
func startTail(t *testing.T, tailer *commands.EventTailer, bus *scriptedBus, caller commands.Caller, from uint64, failAt int, failWith error) *tailRun {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &tailRun{}
	done := make(chan error, 1)
	go func() {
		done <- tailer.TailEvents(ctx, caller, from, func(e publicevent.Event) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if failAt > 0 && len(r.got)+1 == failAt {
				return failWith
			}
			r.got = append(r.got, e)
			return nil
		})
	}()
	select {
	case r.sub = <-bus.subscribed:
	case err := <-done:
		select {
		case r.sub = <-bus.subscribed: // and returned already
			done <- err
		default:
			t.Fatalf("TailEvents returned without subscribing: %v", err)
		}
	}
	var once sync.Once
	var err error
	r.stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = r.stop() })
	return r
}

func checkEmitted(t *testing.T, r *tailRun, want []publicevent.Event) {
	t.Helper()
	synctest.Wait()
	if diff := cmp.Diff(positionsOf(want), positionsOf(r.emitted())); diff != "" {
		t.Fatalf("emitted positions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, r.emitted()); diff != "" {
		t.Fatalf("emitted events (-want +got):\n%s", diff)
	}
}

// visible keeps the events caller may see.
func visibleTo(caller commands.Caller, events []domain.Event) []domain.Event {
	var out []domain.Event
	for _, e := range events {
		if caller.Sees(e.Account) {
			out = append(out, e)
		}
	}
	return out
}

func TestTailEventsHistoryThenLive(t *testing.T) {
	for _, caller := range []commands.Caller{callerA, adminCaller} {
		t.Run(caller.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newEventFixture(t)
				history := f.appendKeys(acctA, acctB, acctA, acctB, acctA)
				bus := newScriptedBus()
				r := startTail(t, &commands.EventTailer{Log: f.log, Live: bus, PageSize: 2}, bus, caller, 0, 0, nil)
				checkEmitted(t, r, toPublic(t, visibleTo(caller, history)...))

				live := f.appendKeys(acctB, acctA)
				r.sub.push(toPublic(t, live...)...)
				checkEmitted(t, r, toPublic(t, visibleTo(caller, append(history, live...))...))
				if err := r.stop(); !errors.Is(err, context.Canceled) {
					t.Errorf("TailEvents = %v, want context.Canceled", err)
				}
				if !r.sub.closed.Load() {
					t.Error("live subscription left open")
				}
			})
		})
	}
}

func TestTailEventsFromPosition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		history := f.appendKeys(acctA, acctB, acctA, acctB, acctA)
		bus := newScriptedBus()
		r := startTail(t, &commands.EventTailer{Log: f.log, Live: bus}, bus, callerA, 3, 0, nil)
		checkEmitted(t, r, toPublic(t, history[4]))
	})
}

func TestTailEventsSubscribesBeforeReadingTheLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		f.appendKeys(acctA)
		bus := newScriptedBus()
		readsBefore := int64(-1)
		bus.onSubscribe = func() { readsBefore = f.log.reads.Load() }
		startTail(t, &commands.EventTailer{Log: f.log, Live: bus}, bus, callerA, 0, 0, nil)
		synctest.Wait()
		if readsBefore != 0 {
			t.Errorf("the log was read %d times before subscribing to the live stream", readsBefore)
		}
	})
}

// headHook calls after each time Head returns: to append while a tail is
// between its history and its live part.
type headHook struct {
	*memLog
	after func()
}

func (h headHook) Head(ctx context.Context) (uint64, error) {
	pos, err := h.memLog.Head(ctx)
	if h.after != nil {
		h.after()
	}
	return pos, err
}

func TestTailEventsRacesBetweenHistoryAndLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		history := f.appendKeys(acctA, acctB)
		racing := make(chan domain.Event, 2) // appended by the hooks below
		bus := newScriptedBus()
		bus.onSubscribe = func() {
			// Appended after the subscription, before the head is read, and
			// published late: read from the log, then seen again live.
			racing <- f.appendKeys(acctA)[0]
		}
		log := headHook{memLog: f.log}
		log.after = func() {
			// Appended just after the head was read: beyond the history.
			if len(racing) == 1 {
				early := <-racing
				late := f.appendKeys(acctA)[0]
				bus.latest().push(toPublic(t, early, late)...)
				racing <- early
				racing <- late
			}
		}
		r := startTail(t, &commands.EventTailer{Log: log, Live: bus}, bus, callerA, 0, 0, nil)
		synctest.Wait()
		want := append(history, <-racing, <-racing)
		checkEmitted(t, r, toPublic(t, visibleTo(callerA, want)...))
	})
}

func TestTailEventsDedupesLateLiveCopies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		history := f.appendKeys(acctA, acctB, acctA, acctA)
		bus := newScriptedBus()
		r := startTail(t, &commands.EventTailer{Log: f.log, Live: bus}, bus, callerA, 0, 0, nil)
		live := f.appendKeys(acctA)
		r.sub.push(toPublic(t, history...)...) // published late: already read from the log
		r.sub.push(toPublic(t, live...)...)
		r.sub.push(toPublic(t, live...)...) // a redelivery
		checkEmitted(t, r, toPublic(t, visibleTo(callerA, append(history, live...))...))
	})
}

func TestTailEventsFillsGapsFromTheLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		history := f.appendKeys(acctA, acctB)
		bus := newScriptedBus()
		r := startTail(t, &commands.EventTailer{Log: f.log, Live: bus}, bus, callerA, 0, 0, nil)
		live := f.appendKeys(acctA, acctB, acctA, acctA)
		r.sub.push(toPublic(t, live[3])...) // the bus lost or has not yet delivered the others
		checkEmitted(t, r, toPublic(t, visibleTo(callerA, append(history, live...))...))
		r.sub.push(toPublic(t, live[:3]...)...) // they arrive late
		checkEmitted(t, r, toPublic(t, visibleTo(callerA, append(history, live...))...))
	})
}

func TestTailEventsReordersLiveEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		bus := newScriptedBus()
		r := startTail(t, &commands.EventTailer{Log: f.log, Live: bus}, bus, adminCaller, 0, 0, nil)
		live := f.appendKeys(acctA, acctB, acctA)
		r.sub.push(toPublic(t, live[2], live[0], live[1])...)
		checkEmitted(t, r, toPublic(t, live...))
	})
}

func TestTailEventsCatchesUpAfterALag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		bus := newScriptedBus()
		r := startTail(t, &commands.EventTailer{Log: f.log, Live: bus}, bus, callerA, 0, 0, nil)
		lost := f.appendKeys(acctA, acctB, acctA)
		r.sub.lag() // the events were dropped; no later event shows the gap
		checkEmitted(t, r, toPublic(t, visibleTo(callerA, lost)...))
	})
}

func TestTailEventsStopsWhenEmitFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		history := f.appendKeys(acctA, acctA, acctA)
		bus := newScriptedBus()
		errGone := errors.New("client went away")
		r := startTail(t, &commands.EventTailer{Log: f.log, Live: bus}, bus, callerA, 0, 2, errGone)
		synctest.Wait()
		if err := r.stop(); !errors.Is(err, errGone) {
			t.Errorf("TailEvents = %v, want emit's error", err)
		}
		checkEmitted(t, r, toPublic(t, history[0]))
		if !r.sub.closed.Load() {
			t.Error("live subscription left open")
		}
	})
}

func TestTailEventsBusFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newEventFixture(t)
		bus := newScriptedBus()
		r := startTail(t, &commands.EventTailer{Log: f.log, Live: bus}, bus, callerA, 0, 0, nil)
		r.sub.fail(fmt.Errorf("bus: %w", domain.ErrUnavailable))
		synctest.Wait()
		if err := r.stop(); !isUnavailable(err) {
			t.Errorf("TailEvents = %v, want domain.ErrUnavailable", err)
		}
	})
}

func TestTailEventsNeedsACaller(t *testing.T) {
	bus := newScriptedBus()
	err := (&commands.EventTailer{Log: newMemLog(), Live: bus}).TailEvents(t.Context(), commands.Caller{}, 0,
		func(publicevent.Event) error { return nil })
	if !errors.Is(err, domain.ErrUnauthenticated) {
		t.Errorf("TailEvents = %v, want domain.ErrUnauthenticated", err)
	}
	if len(bus.subs) != 0 {
		t.Error("subscribed for an unauthenticated caller")
	}
}

// TestTailEventsUnderAnUnreliableBus: whatever the bus does (drop, duplicate,
// delay, reorder, lag), a tail emits exactly the caller's events of the log
// after its start position, in order, once each.
func TestTailEventsUnderAnUnreliableBus(t *testing.T) {
	for range 200 {
		seed := rand.Uint64()
		rng := rand.New(rand.NewPCG(seed, 7))
		synctest.Test(t, func(t *testing.T) {
			f := newEventFixture(t)
			pick := func() domain.AccountID { return []domain.AccountID{acctA, acctB}[rng.IntN(2)] }
			var all []domain.Event
			for range rng.IntN(20) {
				all = append(all, f.appendKeys(pick())...)
			}
			caller := []commands.Caller{callerA, adminCaller}[rng.IntN(2)]
			from := uint64(rng.IntN(len(all) + 1))
			bus := newScriptedBus()
			r := startTail(t, &commands.EventTailer{Log: f.log, Live: bus, PageSize: 1 + rng.IntN(5)}, bus, caller, from, 0, nil)

			var held []publicevent.Event
			var script []string
			for range 1 + rng.IntN(30) {
				for _, e := range f.appendKeys(pick()) {
					all = append(all, e)
					pe := toPublic(t, e)[0]
					switch x := rng.IntN(10); {
					case x < 5:
						r.sub.push(pe)
						script = append(script, fmt.Sprintf("deliver %d", e.Position))
					case x < 7:
						script = append(script, fmt.Sprintf("drop %d", e.Position))
					case x < 8:
						r.sub.push(pe, pe)
						script = append(script, fmt.Sprintf("duplicate %d", e.Position))
					default:
						held = append(held, pe)
						script = append(script, fmt.Sprintf("hold %d", e.Position))
					}
				}
				if rng.IntN(4) == 0 {
					rng.Shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
					r.sub.push(held...)
					script = append(script, fmt.Sprintf("release %v", positionsOf(held)))
					held = nil
				}
				if rng.IntN(8) == 0 {
					r.sub.lag()
					script = append(script, "lag")
				}
				if rng.IntN(3) == 0 {
					synctest.Wait()
				}
			}
			r.sub.push(held...)
			r.sub.lag() // a dropped last event is found at the next lag or event
			synctest.Wait()

			var want []domain.Event
			for _, e := range visibleTo(caller, all) {
				if e.Position > from {
					want = append(want, e)
				}
			}
			if diff := cmp.Diff(positionsOf(toPublic(t, want...)), positionsOf(r.emitted())); diff != "" {
				t.Fatalf("seed %d, caller %s, from %d, script %v:\nemitted positions (-want +got):\n%s", seed, caller, from, script, diff)
			}
		})
	}
}
