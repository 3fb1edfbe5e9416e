package commands

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Defaults of PublishEvents.
const (
	DefaultPublishBatch      = 256
	DefaultPublishMinBackoff = 100 * time.Millisecond
	DefaultPublishMaxBackoff = 30 * time.Second
)

// PublishEvents publishes every event of the log on the public event stream
// (see docs/events.md), in log order and at least once: it follows the log
// from the position recorded under PublicEventsProjection, publishes what it
// reads in batches (as many events as are waiting, up to MaxBatch), and
// records the last published position after each batch. A crash between a
// publish and its record publishes that batch again on restart; consumers
// dedupe on the event ID.
//
// Run it once per position store: two runs on the same store race on the
// recorded position.
type PublishEvents struct {
	Log       LogFollower
	Positions PositionStore
	Publisher PublicEventPublisher

	// FromHead makes the very first start (no position recorded yet) begin
	// at the log's current head rather than at its beginning. Meant for a
	// transport that keeps nothing (the embedded GoChannel), where
	// publishing the history would reach nobody; with a durable transport
	// leave it false so that the stream carries the whole history.
	FromHead bool
	// MaxBatch bounds how many events are published and recorded together
	// (DefaultPublishBatch when 0).
	MaxBatch int
	// MinBackoff and MaxBackoff bound the wait before retrying a failed
	// publish or position record; it doubles after each failure (defaults
	// DefaultPublishMinBackoff and DefaultPublishMaxBackoff when 0).
	MinBackoff, MaxBackoff time.Duration
	// Retrying, if set, is called with every error that is about to be
	// retried, for the caller to log or count. It must not block.
	Retrying func(err error)
}

// Validate reports every configuration problem at once.
func (p *PublishEvents) Validate() error {
	const op = "publish events"
	var errs []error
	if p.Log == nil {
		errs = append(errs, domain.Invalid(op, "no event log"))
	}
	if p.Positions == nil {
		errs = append(errs, domain.Invalid(op, "no position store"))
	}
	if p.Publisher == nil {
		errs = append(errs, domain.Invalid(op, "no publisher"))
	}
	if p.MaxBatch < 0 {
		errs = append(errs, domain.Invalid(op, "batch size %d is negative", p.MaxBatch))
	}
	if p.MinBackoff < 0 || p.MaxBackoff < 0 {
		errs = append(errs, domain.Invalid(op, "backoff must not be negative"))
	}
	if p.MinBackoff > 0 && p.MaxBackoff > 0 && p.MinBackoff > p.MaxBackoff {
		errs = append(errs, domain.Invalid(op, "min backoff %v exceeds max backoff %v", p.MinBackoff, p.MaxBackoff))
	}
	return errors.Join(errs...)
}

// Run publishes until ctx is done, then returns ctx.Err(). Failures of the
// publisher or of the position store are retried with backoff, never
// skipped: the stream stalls rather than loses an event. Run returns early
// only for what a retry cannot fix: an invalid configuration, a log that
// cannot be followed (closed, failing), or an event that has no public form
// or does not decode (domain.ErrCorrupt).
func (p *PublishEvents) Run(ctx context.Context) error {
	if err := p.Validate(); err != nil {
		return err
	}
	after, err := p.start(ctx)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub, err := p.Log.Subscribe(ctx, after)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("publish events: follow the log after position %d: %w", after, err)
	}

	// A reader goroutine keeps up to one batch of events waiting, so that a
	// batch holds everything that is ready without ever waiting for more.
	size := p.MaxBatch
	if size == 0 {
		size = DefaultPublishBatch
	}
	ready := make(chan domain.Event, size)
	var readErr error // written before ready is closed
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(ready)
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				readErr = err
				return
			}
			select {
			case ready <- e:
			case <-ctx.Done():
				readErr = ctx.Err()
				return
			}
		}
	})
	defer func() {
		cancel()
		wg.Wait()
		_ = sub.Close() // the events read are all handled; nothing to report
	}()

	batch := make([]domain.Event, 0, size)
	for {
		e, ok := <-ready
		if !ok {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("publish events: follow the log: %w", readErr)
		}
		batch = append(batch[:0], e)
	fill:
		for len(batch) < size {
			select {
			case e, ok := <-ready:
				if !ok {
					break fill
				}
				batch = append(batch, e)
			default:
				break fill
			}
		}
		if err := p.publish(ctx, batch); err != nil {
			return err
		}
	}
}

// start returns the position to follow the log after.
func (p *PublishEvents) start(ctx context.Context) (uint64, error) {
	pos, err := p.Positions.Position(PublicEventsProjection)
	if err != nil {
		return 0, fmt.Errorf("publish events: read the published position: %w", err)
	}
	if pos > 0 || !p.FromHead {
		return pos, nil
	}
	head, err := p.Log.Head(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("publish events: read the log head: %w", err)
	}
	if head > 0 {
		// Recorded so that a restart resumes here instead of jumping to the
		// head again past whatever was appended in between.
		if err := p.record(ctx, head); err != nil {
			return 0, err
		}
	}
	return head, nil
}

// publish converts, publishes and records one batch. Events without a
// public form (internal bookkeeping) are skipped. An event that does not
// convert otherwise (a corrupt payload) ends the run, after everything
// before it is published: a restart stops exactly there again.
func (p *PublishEvents) publish(ctx context.Context, batch []domain.Event) error {
	pubs := make([]publicevent.Event, 0, len(batch))
	for _, e := range batch {
		pe, err := publicevent.FromEvent(e)
		if errors.Is(err, publicevent.ErrNoPublicForm) {
			continue
		}
		if err != nil {
			if len(pubs) > 0 {
				if err := p.send(ctx, pubs); err != nil {
					return err
				}
			}
			return fmt.Errorf("publish events: %w", err)
		}
		pubs = append(pubs, pe)
	}
	if len(pubs) == 0 {
		// Nothing public in the batch: remember it is done all the same.
		return p.record(ctx, batch[len(batch)-1].Position)
	}
	return p.send(ctx, pubs)
}

// send publishes pubs and records the last one's position.
func (p *PublishEvents) send(ctx context.Context, pubs []publicevent.Event) error {
	first, last := pubs[0].Position, pubs[len(pubs)-1].Position
	err := p.retry(ctx, func() error {
		if err := p.Publisher.Publish(ctx, pubs); err != nil {
			return fmt.Errorf("publish events: publish positions %d-%d: %w", first, last, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return p.record(ctx, last)
}

// record stores pos as the published position. It tries once even when ctx
// is done, so that a batch published just before shutdown is not
// published again on restart.
func (p *PublishEvents) record(ctx context.Context, pos uint64) error {
	return p.retry(ctx, func() error {
		err := p.Positions.Update(PublicEventsProjection, pos, func(projections.Txn) error { return nil })
		if err != nil {
			return fmt.Errorf("publish events: record position %d: %w", pos, err)
		}
		return nil
	})
}

// retry calls fn until it succeeds or ctx is done, backing off in between.
func (p *PublishEvents) retry(ctx context.Context, fn func() error) error {
	wait, ceiling := p.MinBackoff, p.MaxBackoff
	if wait == 0 {
		wait = DefaultPublishMinBackoff
	}
	if ceiling == 0 {
		ceiling = max(DefaultPublishMaxBackoff, wait)
	}
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p.Retrying != nil {
			p.Retrying(err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, ceiling)
	}
}
