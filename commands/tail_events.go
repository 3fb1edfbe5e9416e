package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// DefaultTailPage is how many events EventTailer reads from the log at once
// when PageSize is 0.
const DefaultTailPage = 256

// EventTailer serves `kmsbackup events tail`: the public events a caller may
// see, history first and then live, each once and in position order.
//
// The log is the source of truth and the bus only a low-latency hint: live
// events are deduplicated by position, and whenever the bus skips a
// position, reorders, or loses events, the missing range is read from the
// log. Safe for concurrent use: every call is independent.
type EventTailer struct {
	Log      LogReader
	Live     PublicEventSubscriber
	PageSize int // events per log read; DefaultTailPage when 0
}

// TailEvents calls emit with every event after position from (0: from the
// beginning of the log) that caller may see, in strictly increasing
// position order and without duplicates, first the history up to the log's
// current head, then live events as they are published. The admin sees every
// account; an account sees its own events only.
//
// It runs until ctx is done (it then returns ctx.Err()) or emit fails (it
// returns emit's error unchanged). Other errors: domain.ErrUnauthenticated
// for a caller that is neither an account nor the admin; the log's or the
// bus's errors (domain.ErrUnavailable); domain.ErrCorrupt for an event of
// the log that does not decode.
func (t *EventTailer) TailEvents(ctx context.Context, caller Caller, from uint64, emit func(publicevent.Event) error) error {
	const op = "tail events"
	if !caller.Admin && caller.Account == "" {
		return domain.Errorf(domain.ErrUnauthenticated, op, "", "present an account token or the admin token", "no caller")
	}
	if t.Log == nil || t.Live == nil {
		return domain.Invalid(op, "event tailer needs a log and a live subscriber")
	}

	// Subscribe before reading the head: an event appended after the head
	// was read is published after this point, so it arrives live; one
	// appended before is read from the log. Nothing falls in between.
	live, err := t.Live.SubscribeLive(ctx)
	if err != nil {
		return t.fail(ctx, "subscribe to the live stream", err)
	}
	defer func() { _ = live.Close() }() // nothing of it is needed any more

	c := &tailCursor{EventTailer: t, caller: caller, emit: emit, last: from}
	if err := c.catchUpToHead(ctx); err != nil {
		return err
	}
	for {
		ev, err := live.Next(ctx)
		switch {
		case errors.Is(err, ErrLagged):
			if err := c.catchUpToHead(ctx); err != nil {
				return err
			}
			continue
		case err != nil:
			return t.fail(ctx, "follow the live stream", err)
		}
		if ev.Position <= c.last {
			continue // already emitted (or skipped as another account's)
		}
		if ev.Position > c.last+1 {
			// A gap: either events of other accounts, or events the bus has
			// not delivered yet or lost. Only the log can tell.
			if err := c.catchUp(ctx, ev.Position); err != nil {
				return err
			}
			if ev.Position <= c.last {
				continue
			}
		}
		if err := c.offer(ev); err != nil {
			return err
		}
	}
}

func (t *EventTailer) fail(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("tail events: %s: %w", what, err)
}

// tailCursor is the state of one TailEvents call: the last position covered
// (emitted, or skipped as invisible to the caller).
type tailCursor struct {
	*EventTailer
	caller Caller
	emit   func(publicevent.Event) error
	last   uint64
}

// offer emits ev if the caller may see it, and moves past it either way.
func (c *tailCursor) offer(ev publicevent.Event) error {
	if c.caller.Sees(domain.AccountID(ev.Account)) {
		if err := c.emit(ev); err != nil {
			return err
		}
	}
	c.last = ev.Position
	return nil
}

func (c *tailCursor) catchUpToHead(ctx context.Context) error {
	head, err := c.Log.Head(ctx)
	if err != nil {
		return c.fail(ctx, "read the log head", err)
	}
	return c.catchUp(ctx, head)
}

// catchUp reads the log after the last position covered until it has
// covered target or the log has nothing more.
func (c *tailCursor) catchUp(ctx context.Context, target uint64) error {
	page := c.PageSize
	if page <= 0 {
		page = DefaultTailPage
	}
	for c.last < target {
		events, err := c.Log.ReadAll(ctx, c.last, page)
		if err != nil {
			return c.fail(ctx, fmt.Sprintf("read the log after position %d", c.last), err)
		}
		if len(events) == 0 {
			return nil
		}
		for _, e := range events {
			if e.Position <= c.last {
				continue
			}
			if !c.caller.Sees(e.Account) {
				c.last = e.Position // skipped without decoding
				continue
			}
			pe, err := publicevent.FromEvent(e)
			if errors.Is(err, publicevent.ErrNoPublicForm) {
				c.last = e.Position // internal events are not published
				continue
			}
			if err != nil {
				return fmt.Errorf("tail events: %w", err)
			}
			if err := c.offer(pe); err != nil {
				return err
			}
		}
		if len(events) < page {
			return nil // the log holds nothing more for now
		}
	}
	return nil
}
