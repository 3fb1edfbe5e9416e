package commands_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
	"github.com/kmsbackup/kmsbackup/projections"
)

// memPositions is a test double of the position part of a ProjectionStore.
type memPositions struct {
	mu      sync.Mutex
	pos     map[string]uint64
	updates int
	failing int // the next failing Update calls fail
}

var _ commands.PositionStore = (*memPositions)(nil)

func newMemPositions() *memPositions { return &memPositions{pos: map[string]uint64{}} }

func (p *memPositions) Position(name string) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pos[name], nil
}

func (p *memPositions) Update(name string, position uint64, fn func(projections.Txn) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failing > 0 {
		p.failing--
		return domain.Errorf(domain.ErrUnavailable, "update", name, "", "store failing")
	}
	if err := fn(nil); err != nil {
		return err
	}
	p.pos[name] = position
	p.updates++
	return nil
}

func (p *memPositions) get(name string) (pos uint64, updates int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pos[name], p.updates
}

// recordingPublisher is a test double of the bus's publishing side: it
// records every successful batch and can fail on demand.
type recordingPublisher struct {
	mu       sync.Mutex
	batches  [][]publicevent.Event
	attempts int
	failing  int                         // the next failing calls fail
	gate     chan struct{}               // if set, every call waits for a token
	onBatch  func(b []publicevent.Event) // called after a recorded batch
}

var _ commands.PublicEventPublisher = (*recordingPublisher)(nil)

func (p *recordingPublisher) Publish(ctx context.Context, events []publicevent.Event) error {
	if p.gate != nil {
		select {
		case <-p.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	p.attempts++
	if p.failing > 0 {
		p.failing--
		p.mu.Unlock()
		return fmt.Errorf("bus down: %w", domain.ErrUnavailable)
	}
	b := append([]publicevent.Event(nil), events...)
	p.batches = append(p.batches, b)
	on := p.onBatch
	p.mu.Unlock()
	if on != nil {
		on(b)
	}
	return nil
}

// published returns every event published, in order, and the batch sizes.
func (p *recordingPublisher) published() (events []publicevent.Event, sizes []int, attempts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.batches {
		events = append(events, b...)
		sizes = append(sizes, len(b))
	}
	return events, sizes, p.attempts
}

// scriptedBus is a test double of the live side of the bus: each
// subscription receives exactly what the test pushes to it, in the order
// pushed, so that tests can reorder, duplicate, drop and lag at will.
type scriptedBus struct {
	mu          sync.Mutex
	subs        []*scriptedSub
	subscribed  chan *scriptedSub // receives each new subscription
	onSubscribe func()            // called inside SubscribeLive
}

var _ commands.PublicEventSubscriber = (*scriptedBus)(nil)

func newScriptedBus() *scriptedBus { return &scriptedBus{subscribed: make(chan *scriptedSub, 16)} }

func (b *scriptedBus) SubscribeLive(ctx context.Context) (commands.PublicEventSubscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.onSubscribe != nil {
		b.onSubscribe()
	}
	s := &scriptedSub{items: make(chan scriptedItem, 1024), done: make(chan struct{})}
	b.mu.Lock()
	b.subs = append(b.subs, s)
	b.mu.Unlock()
	b.subscribed <- s
	return s, nil
}

// latest returns the newest subscription.
func (b *scriptedBus) latest() *scriptedSub {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.subs[len(b.subs)-1]
}

type scriptedItem struct {
	ev  publicevent.Event
	err error
}

type scriptedSub struct {
	items     chan scriptedItem
	done      chan struct{}
	closeOnce sync.Once
	closed    atomic.Bool
}

func (s *scriptedSub) push(evs ...publicevent.Event) {
	for _, ev := range evs {
		s.items <- scriptedItem{ev: ev}
	}
}

func (s *scriptedSub) lag() {
	s.items <- scriptedItem{err: fmt.Errorf("dropped 3: %w", commands.ErrLagged)}
}

func (s *scriptedSub) fail(err error) { s.items <- scriptedItem{err: err} }

func (s *scriptedSub) Next(ctx context.Context) (publicevent.Event, error) {
	select {
	case it := <-s.items:
		return it.ev, it.err
	case <-ctx.Done():
		return publicevent.Event{}, ctx.Err()
	case <-s.done:
		return publicevent.Event{}, domain.Errorf(domain.ErrUnavailable, "next", "", "", "subscription closed")
	}
}

func (s *scriptedSub) Close() error {
	s.closeOnce.Do(func() { close(s.done); s.closed.Store(true) })
	return nil
}

// eventFixture builds events of two accounts in a memLog.
type eventFixture struct {
	tb   testing.TB
	log  *memLog
	n    int
	base time.Time
}

var (
	acctA = domain.NewAccountID(ulid.MustParse("01HQZ5J8Q4V6D3N2M1K0JHGF0A"))
	acctB = domain.NewAccountID(ulid.MustParse("01HQZ5J8Q4V6D3N2M1K0JHGF0B"))
	kmsA  = domain.NewInstanceID(ulid.MustParse("01HQZ5J8Q4V6D3N2M1K0JHGF1A"))
	kmsB  = domain.NewInstanceID(ulid.MustParse("01HQZ5J8Q4V6D3N2M1K0JHGF1B"))
)

func newEventFixture(tb testing.TB) *eventFixture {
	return &eventFixture{tb: tb, log: newMemLog(), base: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
}

func (f *eventFixture) instance(a domain.AccountID) domain.InstanceID {
	if a == acctA {
		return kmsA
	}
	return kmsB
}

// appendKeys appends one KeyCreated event per account given, in order, and
// returns them as appended.
func (f *eventFixture) appendKeys(accounts ...domain.AccountID) []domain.Event {
	f.tb.Helper()
	var out []domain.Event
	for _, a := range accounts {
		f.n++
		in := f.instance(a)
		var entropy [10]byte
		entropy[8], entropy[9] = byte(f.n>>8), byte(f.n)
		id := ulid.ULID{}
		_ = id.SetTime(ulid.Timestamp(f.base) + uint64(f.n))
		_ = id.SetEntropy(entropy[:])
		d := &domain.KeyCreated{Key: domain.NewKeyID(id), Description: fmt.Sprintf("key %d", f.n),
			Spec: domain.KeySpecAES256, Material: domain.Sealed(fmt.Sprintf("sealed-%d-0123456789abcdef", f.n))}
		e := domain.Event{ID: id, Stream: domain.KMSStream(in), Type: d.EventType(), Schema: domain.SchemaVersion,
			OccurredAt: f.base.Add(time.Duration(f.n) * time.Second), Account: a, Region: "cn-hangzhou",
			Instance: in, Data: domain.EncodeData(d)}
		res, err := f.log.Append(context.Background(), e.Stream, domain.ExpectAny, []domain.Event{e})
		if err != nil {
			f.tb.Fatalf("append: %v", err)
		}
		e.Position, e.Revision = res.LastPosition, res.LastRevision
		out = append(out, e)
	}
	return out
}

// public converts log events to their public form.
func toPublic(tb testing.TB, events ...domain.Event) []publicevent.Event {
	tb.Helper()
	out := make([]publicevent.Event, len(events))
	for i, e := range events {
		pe, err := publicevent.FromEvent(e)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = pe
	}
	return out
}

func positionsOf(events []publicevent.Event) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.Position
	}
	return out
}

func isUnavailable(err error) bool { return errors.Is(err, domain.ErrUnavailable) }
