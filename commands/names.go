package commands

import (
	"context"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// Unique names through the log. A key ID or secret name is unique within
// an account's region, across its KMS instances; the log keeps it so, not
// a lock of this process: each name has a reservation stream
// (domain.NameStream) whose last event says which instance holds it
// (domain.NameClaimed) or that it is free (domain.NameReleased). A use
// case that creates or restores an item reads the name's stream (hold),
// and appends the claim at the revision it read together with the item's
// event at the instance's revision in one MultiAppender.AppendMulti;
// deleting an item releases its name the same way. Of two writers racing
// for a name, in one process or on two nodes of a shared log, the append
// of the second fails with domain.ErrWrongExpectedRevision and decide
// runs it again against the new state, which refuses it.
//
// A name is free when its stream says so, when its holder's instance is
// released (a release frees every name of the instance without writing
// to their streams: an instance never comes back), or when the claim is
// dead: its item's event never followed it at the revision it names in the
// instance's stream (only a log whose AppendMulti is not atomic, esdb,
// can leave one; domain.NameClaimed.ClaimDead). Names created before
// reservation streams existed have none: the read model's check of the
// region, which every decision makes as before, keeps them; deleting such
// an item writes no release, and the next claim expects no stream.

// nameHold is a name's reservation stream as a decision reads it.
type nameHold struct {
	stream     string
	kind, name string
	hold       domain.NameHold
	gone       bool // the holder is gone: the name is free to claim
}

// taken tells whether another item holds the name.
func (h *nameHold) taken() bool { return h.hold.Taken(h.gone) }

// readHold reads the reservation stream of name (of kind) in in's region.
// Errors: the log's; domain.ErrCorrupt for a stream that holds something
// else.
func (s *KMS) readHold(ctx context.Context, in *domain.Instance, kind, name string) (*nameHold, error) {
	h := &nameHold{stream: domain.NameStream(in.Account, in.Region, kind, name), kind: kind, name: name}
	last, err := lastEvent(ctx, s.Log, h.stream)
	if err != nil {
		return nil, fmt.Errorf("read the reservation of %s %s: %w", kind, name, err)
	}
	if h.hold, err = domain.HoldOf(last); err != nil {
		return nil, err
	}
	if c := h.hold.Claim; c != nil {
		if h.gone, err = s.holderGone(ctx, c); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// holderGone tells whether the instance of claim c is released, or c is
// dead (see domain.NameClaimed.ClaimDead).
func (s *KMS) holderGone(ctx context.Context, c *domain.NameClaimed) (bool, error) {
	in, err := kmsstate.GetInstance(s.State, c.Instance)
	if err == nil && in.Released {
		return true, nil
	}
	atAt, err := eventAt(ctx, s.Log, domain.KMSStream(c.Instance), c.At)
	if err != nil {
		return false, fmt.Errorf("read the claim of %s %s: %w", c.Kind, c.Name, err)
	}
	return c.ClaimDead(atAt), nil
}

// nameEvent builds an event of a reservation stream for instance in.
func (s *KMS) nameEvent(in *domain.Instance, stream string, d domain.EventData) domain.Event {
	e := s.newEvent(s.IDs.NewULID(), in, d)
	e.Stream = stream
	return e
}

// claim is the part of an AppendMulti that claims h's name for the item
// event owner, which the append writes at revision at of in's stream.
// Errors: domain.ErrAlreadyExists when the name is taken.
func (s *KMS) claim(in *domain.Instance, h *nameHold, owner domain.EventID, at uint64) (StreamAppend, error) {
	d, exp, err := h.hold.ClaimFor(h.kind, h.name, in.ID, owner, at, h.gone)
	if err != nil {
		return StreamAppend{}, err
	}
	return StreamAppend{Stream: h.stream, Expected: exp, Events: []domain.Event{s.nameEvent(in, h.stream, d)}}, nil
}

// commitDeleted appends the deletion e of the item name (of kind) to in's
// stream together with the release of its name, when in holds it in the
// log (a name from before reservation streams has nothing to release).
func (s *KMS) commitDeleted(ctx context.Context, in *domain.Instance, kind, name string, e domain.Event) error {
	h, err := s.readHold(ctx, in, kind, name)
	if err != nil {
		return err
	}
	var names []StreamAppend
	if d, exp, ok := h.hold.ReleaseBy(in.ID); ok {
		names = append(names, StreamAppend{Stream: h.stream, Expected: exp, Events: []domain.Event{s.nameEvent(in, h.stream, d)}})
	}
	return s.commitNamed(ctx, in, names, e)
}

// commitNamed appends events to in's stream at the revision the decision
// saw together with the claims and releases of names, the name parts
// first (appendHeld), and waits until the read model shows them.
func (s *KMS) commitNamed(ctx context.Context, in *domain.Instance, names []StreamAppend, events ...domain.Event) error {
	if len(names) == 0 {
		return s.commit(ctx, domain.KMSStream(in.ID), domain.ExpectRevision(in.Revision), events...)
	}
	last, err := appendHeld(ctx, s.Log, names, StreamAppend{Stream: domain.KMSStream(in.ID), Expected: domain.ExpectRevision(in.Revision), Events: events})
	if err != nil {
		return err
	}
	return s.Applied.WaitFor(ctx, last)
}
