package commands

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Projector keeps one projection up to date with the log: it follows the
// log from the position the projection last recorded and applies every event
// in its own transaction, together with the event's position. Use cases call
// WaitFor after an append so that a caller reads its own writes.
type Projector struct {
	Name  string
	Log   LogSubscriber
	Store ProjectionStore
	// Apply applies e within txn; ctx ends when the projector stops. Most
	// projections are pure functions of events (see Pure).
	Apply func(ctx context.Context, txn projections.Txn, e domain.Event) error

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
		if err := p.Store.Update(p.Name, e.Position, func(txn projections.Txn) error { return p.Apply(ctx, txn, e) }); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while applying: the event applies again at the next start
			}
			err = fmt.Errorf("projection %s: apply event at position %d: %w", p.Name, e.Position, err)
			p.advance(0, err)
			return err
		}
		p.advance(e.Position, nil)
	}
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
