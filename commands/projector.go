package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Projector keeps one projection up to date with the log: it follows the
// log from the position the projection last recorded and applies every event
// in a transaction that records the position of the last event it applied.
// The events a subscription has already read (BufferedSubscription), up to
// projectorBatch and up to the next event of a backup stream, go into one
// transaction: a burst of appends (a restore's batches) costs one commit
// per burst instead of one per event. Use cases
// call WaitFor after an append so that a caller reads its own writes.
type Projector struct {
	Name  string
	Log   LogSubscriber
	Store ProjectionStore
	// Apply applies e within txn; ctx ends when the projector stops. Most
	// projections are pure functions of events (see Pure).
	Apply func(ctx context.Context, txn projections.Txn, e domain.Event) error
	// ApplyAll, when set, applies a burst of events within one txn where
	// Apply would be called for each: a projection that rewrites a record
	// many events change writes it once a burst (see PureAll). A burst that
	// fails is applied again one event at a time, with Apply.
	ApplyAll func(ctx context.Context, txn projections.Txn, events []domain.Event) error

	mu      sync.Mutex
	pos     uint64
	changed chan struct{}
	err     error
}

// Position returns the last position applied.
func (p *Projector) Position() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pos
}

func (p *Projector) wait() (uint64, <-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	return p.pos, p.changed, p.err
}

func (p *Projector) advance(pos uint64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.pos = pos
	} else {
		p.err = err
	}
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

// Run follows the log until ctx is done or an event cannot be applied (a
// corrupt event stops the projection rather than skipping it).
func (p *Projector) Run(ctx context.Context) error {
	start, err := p.Store.Position(p.Name)
	if err != nil {
		return fmt.Errorf("projection %s: read position: %w", p.Name, err)
	}
	p.advance(start, nil)
	sub, err := p.Log.Subscribe(ctx, start)
	if err != nil {
		return fmt.Errorf("projection %s: subscribe: %w", p.Name, err)
	}
	defer sub.Close()
	var batch []domain.Event
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			err = fmt.Errorf("projection %s: %w", p.Name, err)
			p.advance(0, err)
			return err
		}
		batch = append(batch[:0], e)
		if b, ok := sub.(BufferedSubscription); ok && !endsBatch(e) {
			for n := min(b.Buffered(), projectorBatch-1); n > 0; n-- {
				e, err := sub.Next(ctx)
				if err != nil {
					break // Next fails again, after the events taken
				}
				batch = append(batch, e)
				if endsBatch(e) {
					break
				}
			}
		}
		if err := p.applyBatch(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while applying: the events apply again at the next start
			}
			p.advance(0, err)
			return err
		}
		clear(batch)
	}
}

// projectorBatch is the most events a Projector applies in one
// transaction.
const projectorBatch = 256

// endsBatch reports whether e ends a Projector's batch: an event of a
// backup stream (a checkpoint's apply may write its whole slice, a base's
// its items), so that one transaction holds at most one of those.
func endsBatch(e domain.Event) bool {
	return strings.HasPrefix(e.Stream, domain.BackupStreamPrefix)
}

// applyBatch applies events in one transaction and advances to the last.
// When that fails, it applies them one by one, advancing after each, so
// that the projection stops just before the event that fails, with its
// error.
func (p *Projector) applyBatch(ctx context.Context, events []domain.Event) error {
	last := events[len(events)-1].Position
	if len(events) > 1 {
		err := p.Store.Update(p.Name, last, func(txn projections.Txn) error {
			if p.ApplyAll != nil {
				return p.ApplyAll(ctx, txn, events)
			}
			for _, e := range events {
				if err := p.Apply(ctx, txn, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			p.advance(last, nil)
			return nil
		}
	}
	for _, e := range events {
		if err := p.Store.Update(p.Name, e.Position, func(txn projections.Txn) error { return p.Apply(ctx, txn, e) }); err != nil {
			return fmt.Errorf("projection %s: apply event at position %d: %w", p.Name, e.Position, err)
		}
		p.advance(e.Position, nil)
	}
	return nil
}

// WaitFor blocks until the projection has applied position pos. Errors: the
// projection's failure, or ctx's.
func (p *Projector) WaitFor(ctx context.Context, pos uint64) error {
	for {
		cur, ch, err := p.wait()
		if err != nil {
			return fmt.Errorf("%w: %v", domain.ErrUnavailable, err)
		}
		if cur >= pos {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return errors.Join(domain.ErrUnavailable, fmt.Errorf("waiting for projection %s to reach position %d: %w", p.Name, pos, ctx.Err()))
		}
	}
}

// Healthy reports the projection's failure, if it has failed.
func (p *Projector) Healthy() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Pure makes a projection that is a pure function of events the Apply of
// a Projector.
func Pure(apply func(txn projections.Txn, e domain.Event) error) func(context.Context, projections.Txn, domain.Event) error {
	return func(_ context.Context, txn projections.Txn, e domain.Event) error { return apply(txn, e) }
}

// PureAll is Pure for a Projector's ApplyAll.
func PureAll(apply func(txn projections.Txn, events []domain.Event) error) func(context.Context, projections.Txn, []domain.Event) error {
	return func(_ context.Context, txn projections.Txn, events []domain.Event) error { return apply(txn, events) }
}
