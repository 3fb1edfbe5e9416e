package natsjs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// AppendMulti writes every part, each at the end of its stream if its
// expected revision holds, as one JetStream atomic batch: the markers of
// every event, then each part's events on its stream's subject, the first
// of each part expecting the subject's last sequence to be the part's head
// (the same messages a group commit of several Appends publishes). The
// server commits all of it or none. A refused batch is looked up as
// Append's is: every event ID already in its stream is a retry, answered
// with the original results; none means some stream moved, and every
// expectation is checked again against fresh heads.
//
// Errors: Append's, and domain.ErrInvalidArgument for a call of more than
// MaxBatchEvents events in all or of the wrong shape
// (commands.CheckMultiAppend); domain.ErrWrongExpectedRevision names the
// first part whose expectation does not hold. Safe for concurrent use: the
// heads of the parts' streams are locked in stream-name order, so that
// Appends and AppendMultis of one Log to those streams are serialised
// without deadlock; appends from several Logs race and the server decides.
// Idempotent on event IDs.
func (l *Log) AppendMulti(ctx context.Context, parts []commands.StreamAppend) ([]commands.AppendResult, error) {
	if err := commands.CheckMultiAppend(opAppend, parts); err != nil {
		return nil, err
	}
	total := 0
	bs := make([]*batch, len(parts))
	for i, p := range parts {
		total += len(p.Events)
		b, err := l.newBatch(p.Stream, p.Events)
		if err != nil {
			return nil, err
		}
		bs[i] = b
	}
	if total > MaxBatchEvents {
		return nil, domain.Invalid(opAppend, "the append has %d events in all, more than the %d an atomic append takes", total, MaxBatchEvents)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := l.enter(opAppend); err != nil {
		return nil, err
	}
	order := make([]int, len(parts))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(parts[a].Stream, parts[b].Stream) })
	hs := make([]*head, len(parts))
	defer func() {
		for _, i := range slices.Backward(order) {
			if hs[i] != nil {
				l.heads.unlock(parts[i].Stream, hs[i])
			}
		}
	}()
	for _, i := range order {
		h, err := l.heads.lock(ctx, parts[i].Stream)
		if err != nil {
			return nil, err
		}
		hs[i] = h
	}
	forget := func() {
		for _, h := range hs {
			h.known = false
		}
	}
	fromLeader := false        // read the heads from the streams' leaders
	var failingSince time.Time // of the first write no server answered
	for attempt, failovers := 0, 0; ; {
		if attempt > 0 || failovers > 0 {
			if err := backoff(ctx, attempt+failovers); err != nil {
				return nil, err
			}
		}
		cached, sure, held := true, true, -1
		for i, h := range hs {
			if !h.known {
				cached = false
				s, err := l.readHead(ctx, opAppend, bs[i].subject, h, fromLeader)
				if err != nil {
					return nil, err
				}
				sure = sure && s
			}
			if held < 0 && !parts[i].Expected.Check(h.exists, h.rev) {
				held = i
			}
		}
		if held >= 0 {
			if cached || !sure {
				// Our cache, or the replicas we read, may be behind
				// other writers: ask the leader.
				forget()
				fromLeader = true
				continue
			}
			if res, found, err := l.resolveMulti(ctx, bs); err != nil || found {
				return res, err
			}
			h := hs[held]
			return nil, domain.WrongRevision(parts[held].Stream, parts[held].Expected, h.exists, h.rev)
		}
		group := make([]*pending, len(bs))
		for i, b := range bs {
			h := hs[i]
			group[i] = &pending{ctx: ctx, b: b, prev: tail{exists: h.exists, rev: h.rev, seq: h.seq}, done: make(chan groupResp, 1)}
		}
		resps := l.publishGroup(ctx, group)
		err := resps[0].err
		if err == nil {
			out := make([]commands.AppendResult, len(resps))
			for i, r := range resps {
				out[i] = r.res
				hs[i].known, hs[i].exists, hs[i].rev, hs[i].seq = true, true, r.res.LastRevision, r.res.LastPosition
			}
			return out, nil
		}
		forget()
		fromLeader = true
		var conflict *conflictError
		if !errors.Is(err, errAlone) && !errors.As(err, &conflict) {
			return nil, err
		}
		// Some stream moved, or some event ID is already in the log or
		// claimed, or the server could not decide now.
		if res, found, err := l.resolveMulti(ctx, bs); err != nil || found {
			return res, err
		}
		if conflict != nil && conflict.failover {
			// As Append: ask again, as a retry, for a while.
			if err := stillWaiting(&failingSince, parts[0].Stream, conflict); err != nil {
				return nil, err
			}
			failovers++
			continue
		}
		if attempt++; attempt == maxAttempts {
			return nil, &domain.Error{Op: opAppend, Kind: domain.ErrUnavailable, Item: parts[0].Stream,
				Msg:  fmt.Sprintf("gave up after %d attempts of a multi-stream append lost races or found the server busy", attempt),
				Hint: "retry later"}
		}
	}
}

// resolveMulti looks the event IDs of every batch up: found, with the
// original results, when each batch is a retry; some batches retried and
// others not is domain.ErrInvalidArgument.
func (l *Log) resolveMulti(ctx context.Context, bs []*batch) ([]commands.AppendResult, bool, error) {
	out := make([]commands.AppendResult, len(bs))
	found := 0
	for i, b := range bs {
		res, ok, err := l.resolve(ctx, b)
		if err != nil {
			return nil, false, err
		}
		if ok {
			out[i] = res
			found++
		}
	}
	switch {
	case found == 0:
		return nil, false, nil
	case found < len(bs):
		return nil, false, domain.Invalid(opAppend, "%d of the %d parts of the append are already in the log", found, len(bs))
	}
	return out, true, nil
}
