package commands

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// How a use case decides again after losing an optimistic-concurrency race
// (another writer appended to the stream between its read and its append).
// Within one process the use cases serialise the writers of a stream, so a
// race is lost only to another process sharing the log (or to ingestion):
// the retries wait with exponential backoff and full jitter, so that nodes
// that collided do not collide again in step.
const (
	// maxAttempts bounds the attempts of one decision.
	maxAttempts = 16
	// retryBase and retryCap bound the backoff after the n-th lost race
	// (n from 1): a uniform random wait in [0, min(retryCap,
	// retryBase·2^(n-1))): at most 1.9 s in all (0.9 s on average) over
	// maxAttempts.
	retryBase = 2 * time.Millisecond
	retryCap  = 200 * time.Millisecond
)

// decide runs attempt (a decision against the read model and its append at
// the revision the decision saw) until it does not lose a race. Any other
// outcome, success or a refusal of the decision itself (already exists,
// not found, ...), is returned as it is. After a lost race it waits (the
// backoff, then catchUp, when set, until the read model has caught up with
// the log) and decides again, against the new state. It gives up after
// maxAttempts attempts, or earlier when the next wait would outlast ctx's
// deadline, with a domain.ErrUnavailable naming the stream that kept
// moving. The backoff waits real time, not the Clock: it paces retries and
// decides nothing.
func decide(ctx context.Context, op string, catchUp func(context.Context) error, attempt func() error) error {
	start := time.Now()
	var err error
	n := 1
	for ; ; n++ {
		if err = attempt(); !isRace(err) {
			return err
		}
		if n == maxAttempts {
			break
		}
		wait := time.Duration(rand.Int64N(int64(min(retryCap, retryBase<<(n-1)))))
		if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
			break
		}
		if werr := sleep(ctx, wait); werr != nil {
			return werr
		}
		if catchUp != nil {
			if werr := catchUp(ctx); werr != nil {
				return werr
			}
		}
	}
	stream := "the stream"
	var de *domain.Error
	if errors.As(err, &de) && de.Item != "" {
		stream = de.Item
	}
	return &domain.Error{Op: op, Kind: domain.ErrUnavailable, Item: stream, Hint: "retry the request",
		Msg: fmt.Sprintf("gave up after %d attempts in %s: other writers kept appending to the stream first",
			n, time.Since(start).Round(time.Millisecond))}
}

// sleep waits d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return errors.Join(domain.ErrUnavailable, fmt.Errorf("waiting to decide again: %w", ctx.Err()))
	}
}

// caughtUp returns a catch-up for decide: wait until applied has applied
// the head of the log.
func caughtUp(log LogReader, applied Waiter) func(context.Context) error {
	return func(ctx context.Context) error {
		head, err := log.Head(ctx)
		if err != nil {
			return err
		}
		return applied.WaitFor(ctx, head)
	}
}

func isRace(err error) bool { return errors.Is(err, domain.ErrWrongExpectedRevision) }
