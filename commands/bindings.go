package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Bindings through the log. A KMS instance is backed up by at most one
// backup instance at a time, and the log keeps it so, not a lock of this
// process: each KMS instance has a binding stream (domain.BindingStream)
// whose last event says which backup instance holds it
// (domain.BindingClaimed) or that it is free (domain.BindingReleased).
// EnableBackupInstance reads the binding stream (readBinding) and appends
// the claim at the revision it read together with the BackupEnabled at the
// backup instance's revision in one MultiAppender.AppendMulti
// (commitBound); a reset or a release of the backup instance, the events
// that end a binding, releases it the same way (bindingRelease). Of two
// enables racing for one KMS instance, in one process or on two nodes of
// a shared log, the append of the second fails with
// domain.ErrWrongExpectedRevision and decide runs it again against the new
// state, which refuses it. An expiry ends nothing: an expired backup
// instance stays bound until it is released (or renewed).
//
// A KMS instance is free when its stream says so, or when the claim is
// dead: its BackupEnabled never followed it at the revision it names in
// the backup instance's stream (only a log whose AppendMulti is not
// atomic, esdb, can leave one; domain.BindingClaimed.ClaimDead). The
// release goes first in its append too, so on such a log a release may be
// written while the reset or release it came with lost its race: the
// read model's binding (backupstate.BoundTo), which every enable checks as
// well, keeps the KMS instance bound until the end is recorded. Bindings
// made before binding streams existed have none: that same check keeps
// them; their end writes no release, and the next claim expects no
// stream.

// bindingHold is a KMS instance's binding stream as a decision reads it.
type bindingHold struct {
	stream string
	kms    domain.InstanceID
	hold   domain.BindingHold
	dead   bool // the claim is dead: the KMS instance is free
}

// holder is the backup instance the stream says holds the KMS instance,
// "" when it is free.
func (h *bindingHold) holder() domain.BackupID { return h.hold.Holder(h.dead) }

// readBinding reads the binding stream of KMS instance kms. Errors: the
// log's; domain.ErrCorrupt for a stream that holds something else.
func (s *BackupStreams) readBinding(ctx context.Context, kms domain.InstanceID) (*bindingHold, error) {
	h := &bindingHold{stream: domain.BindingStream(kms), kms: kms}
	last, err := lastEvent(ctx, s.Log, h.stream)
	if err != nil {
		return nil, fmt.Errorf("read the binding of KMS instance %s: %w", kms, err)
	}
	if h.hold, err = domain.BindingOf(last); err != nil {
		return nil, err
	}
	if c := h.hold.Claim; c != nil {
		atAt, err := eventAt(ctx, s.Log, domain.BackupStream(c.Backup), c.At)
		if err != nil {
			return nil, fmt.Errorf("read the claim of KMS instance %s by backup instance %s: %w", kms, c.Backup, err)
		}
		h.dead = c.ClaimDead(atAt)
	}
	return h, nil
}

// bindingEvent builds an event of h's binding stream for backup b.
func (s *BackupStreams) bindingEvent(b *domain.Backup, h *bindingHold, at time.Time, d domain.EventData) domain.Event {
	e := s.newEvent(b, at, d)
	e.Stream, e.Instance = h.stream, h.kms
	return e
}

// bindingClaim is the part of an AppendMulti that claims h's KMS instance
// for b, whose BackupEnabled enabled the append writes at the revision
// after the one the decision saw. Errors: domain.ErrAlreadyExists when
// the KMS instance is held.
func (s *BackupStreams) bindingClaim(b *domain.Backup, h *bindingHold, enabled domain.Event) (StreamAppend, error) {
	d, exp, err := h.hold.ClaimFor(h.kms, b.ID, enabled.ID, b.Revision+1, h.dead)
	if err != nil {
		return StreamAppend{}, err
	}
	return StreamAppend{Stream: h.stream, Expected: exp, Events: []domain.Event{s.bindingEvent(b, h, enabled.OccurredAt, d)}}, nil
}

// bindingRelease is the part of an AppendMulti that releases the binding
// of b, whose binding ends with an event at at: none when b is bound to
// nothing, or holds its KMS instance only in the read model (a binding
// from before binding streams). Errors: readBinding's.
func (s *BackupStreams) bindingRelease(ctx context.Context, b *domain.Backup, at time.Time) ([]StreamAppend, error) {
	if b.KMSInstance == "" {
		return nil, nil
	}
	h, err := s.readBinding(ctx, b.KMSInstance)
	if err != nil {
		return nil, err
	}
	d, exp, ok := h.hold.ReleaseBy(b.ID)
	if !ok {
		return nil, nil
	}
	return []StreamAppend{{Stream: h.stream, Expected: exp, Events: []domain.Event{s.bindingEvent(b, h, at, d)}}}, nil
}

// commitBound appends events to b's stream at the revision the decision
// saw together with the claim or release of its binding, that part first
// (appendHeld), and waits until both backup read models show them.
func (s *BackupStreams) commitBound(ctx context.Context, b *domain.Backup, binding []StreamAppend, events ...domain.Event) error {
	if len(binding) == 0 {
		return s.commit(ctx, b, false, events...)
	}
	pos, err := appendHeld(ctx, s.Log, binding, StreamAppend{Stream: domain.BackupStream(b.ID), Expected: domain.ExpectRevision(b.Revision), Events: events})
	if err != nil {
		return err
	}
	return s.waitApplied(ctx, pos)
}
