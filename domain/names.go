package domain

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// Unique names. Key IDs and secret names are unique within an account's
// region, across the KMS instances of the region. The log, not a process,
// keeps them so: each name has a reservation stream (NameStream) whose
// last event says who holds it, and a use case that creates, restores or
// deletes an item appends the claim (NameClaimed) or the release
// (NameReleased) of its name in one atomic write with the item's event,
// each at the revision it read. Of two writers racing for a name, on any
// nodes, the second finds the reservation stream moved and decides again.

// NameStreamPrefix starts the name of every reservation stream.
const NameStreamPrefix = "name-"

// Kinds of unique names.
const (
	NameKindKey    = "key"
	NameKindSecret = "secret"
)

// Event types of reservation streams.
const (
	TypeNameClaimed  = "NameClaimed"
	TypeNameReleased = "NameReleased"
)

// NameStream is the reservation stream of a name of kind (NameKindKey,
// NameKindSecret) in an account's region: "name-" and the hex SHA-256 of
// the four, so that any name gives a short stream name of letters and
// digits that every event log accepts, and no two names share one.
func NameStream(account AccountID, region, kind, name string) string {
	h := sha256.New()
	for _, s := range []string{string(account), region, kind, name} {
		var w wire.Writer
		w.String(s) // length-prefixed: no two tuples encode alike
		h.Write(w.B)
	}
	return NameStreamPrefix + hex.EncodeToString(h.Sum(nil))
}

// NameClaimed records that an instance holds a name: the item Owner, the
// event appended with the claim, created or restored it at revision At of
// the instance's stream.
type NameClaimed struct {
	Kind     string
	Name     string
	Instance InstanceID
	Owner    EventID
	At       uint64
}

// NameReleased records that the item holding a name was deleted: the name
// is free.
type NameReleased struct {
	Kind     string
	Name     string
	Instance InstanceID
}

func (NameClaimed) EventType() string  { return TypeNameClaimed }
func (NameReleased) EventType() string { return TypeNameReleased }

func (e *NameClaimed) encode(w *wire.Writer) {
	w.String(e.Kind)
	w.String(e.Name)
	w.String(string(e.Instance))
	w.Fixed(e.Owner[:])
	w.Uvarint(e.At)
}
func (e *NameClaimed) decode(r *wire.Reader) {
	e.Kind, e.Name, e.Instance = r.String(), r.String(), InstanceID(r.String())
	r.Fixed(e.Owner[:])
	e.At = r.Uvarint()
}

func (e *NameReleased) encode(w *wire.Writer) {
	w.String(e.Kind)
	w.String(e.Name)
	w.String(string(e.Instance))
}
func (e *NameReleased) decode(r *wire.Reader) {
	e.Kind, e.Name, e.Instance = r.String(), r.String(), InstanceID(r.String())
}

func nameData(typ string) EventData {
	switch typ {
	case TypeNameClaimed:
		return &NameClaimed{}
	case TypeNameReleased:
		return &NameReleased{}
	}
	return nil
}

// NameHold is the state of a name's reservation stream: whether it exists,
// the revision of its last event, and the claim that holds the name (nil
// when it is free).
type NameHold struct {
	Exists   bool
	Revision uint64
	Claim    *NameClaimed
}

// HoldOf folds the last event of a reservation stream (nil when the
// stream does not exist) into the hold it leaves. Errors:
// domain.ErrCorrupt for an event of another type.
func HoldOf(last *Event) (NameHold, error) {
	exists, rev, claim, err := foldClaims[*NameClaimed, *NameReleased](last, "reservation stream")
	return NameHold{Exists: exists, Revision: rev, Claim: claim}, err
}

// foldClaims folds the last event of a stream of claims (C) and releases
// (R), a reservation or a binding stream, nil when the stream does not
// exist: whether it exists, the revision of that event, and the claim
// that holds (nil after a release). Errors: domain.ErrCorrupt for an
// event of another type, named as an event of a what.
func foldClaims[C, R EventData](last *Event, what string) (exists bool, revision uint64, claim C, err error) {
	if last == nil {
		return false, 0, claim, nil
	}
	d, err := last.Decode()
	if err != nil {
		return false, 0, claim, err
	}
	switch d := d.(type) {
	case C:
		return true, last.Revision, d, nil
	case R:
		return true, last.Revision, claim, nil
	}
	return false, 0, claim, Corruption("event %s of %s %q is a %s", last.ID, what, last.Stream, last.Type)
}

// expectAfter is the revision an append to a reservation or binding
// stream expects after reading it: no stream, or its last event's revision.
func expectAfter(exists bool, revision uint64) ExpectedRevision {
	if !exists {
		return ExpectNoStream
	}
	return ExpectRevision(revision)
}

// Taken tells whether the name is held, given whether its holder is gone
// (its instance released, or its claim dead: see ClaimDead); a name held
// by a gone holder is free to claim.
func (h NameHold) Taken(holderGone bool) bool { return h.Claim != nil && !holderGone }

// ClaimFor decides a claim of the name for the item event owner, at
// revision at of instance in's stream: the claim and the revision its
// append expects. A name Taken (holderGone says whether its holder is
// gone) is ErrAlreadyExists; the item's own rule says it first, in the
// words of its kind, so this is the last guard.
func (h NameHold) ClaimFor(kind, name string, in InstanceID, owner EventID, at uint64, holderGone bool) (*NameClaimed, ExpectedRevision, error) {
	if h.Taken(holderGone) {
		return nil, ExpectedRevision{}, Errorf(ErrAlreadyExists, "claim name", name, "",
			"%s %q is held by instance %s", kind, name, h.Claim.Instance)
	}
	return &NameClaimed{Kind: kind, Name: name, Instance: in, Owner: owner, At: at}, expectAfter(h.Exists, h.Revision), nil
}

// ReleaseBy decides the release of the name by instance in, whose item of
// that name is deleted: the release and the revision its append expects,
// or ok false when in does not hold the name (a name created before
// reservation streams existed has none, and needs no release: a claim of
// it expects no stream).
func (h NameHold) ReleaseBy(in InstanceID) (d *NameReleased, expected ExpectedRevision, ok bool) {
	if h.Claim == nil || h.Claim.Instance != in {
		return nil, ExpectedRevision{}, false
	}
	return &NameReleased{Kind: h.Claim.Kind, Name: h.Claim.Name, Instance: in}, expectAfter(h.Exists, h.Revision), true
}

// ClaimDead tells whether a claim can never be followed by its item:
// the event at revision At of the claim's instance stream is known
// (atAt, read from the log) and is not the claim's Owner. It happens only
// on a log whose multi-stream append is not atomic (the item's append lost
// its race after the claim was written); a claim whose Owner is at At, or
// whose instance stream has no event at At yet, holds.
func (c *NameClaimed) ClaimDead(atAt *Event) bool { return claimDead(c.Owner, atAt) }

// claimDead tells whether the event atAt, read at the revision a claim
// names, is known and is not the claim's owner.
func claimDead(owner EventID, atAt *Event) bool { return atAt != nil && atAt.ID != owner }
