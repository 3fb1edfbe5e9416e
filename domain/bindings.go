package domain

import "github.com/kmsbackup/kmsbackup/domain/wire"

// Bindings. A KMS instance is backed up by at most one backup instance at
// a time. The log, not a process, keeps it so, as it keeps names unique
// (names.go): each KMS instance has a binding stream (BindingStream) whose
// last event says which backup instance holds it (BindingClaimed) or that
// it is free (BindingReleased). Enabling a backup instance appends its
// BackupEnabled and the claim in one atomic write, each at the revision it
// read; every event that ends a binding (BackupReset, BackupReleased)
// appends the release the same way. Of two backup instances enabled for
// one KMS instance at once, on any nodes, the second finds the binding
// stream moved and decides again.

// BindingStreamPrefix starts the name of every binding stream.
const BindingStreamPrefix = "binding-"

// BindingStream is the binding stream of KMS instance in: "binding-" and
// its ID (instance IDs are unique across accounts and regions).
func BindingStream(in InstanceID) string { return BindingStreamPrefix + string(in) }

// Event types of binding streams.
const (
	TypeBindingClaimed  = "BindingClaimed"
	TypeBindingReleased = "BindingReleased"
)

// BindingClaimed records that a backup instance holds a KMS instance: its
// BackupEnabled event Owner, appended with the claim, bound it at revision
// At of the backup instance's stream.
type BindingClaimed struct {
	KMSInstance InstanceID
	Backup      BackupID
	Owner       EventID
	At          uint64
}

// BindingReleased records that the binding of the backup instance ended
// (it was reset or released): the KMS instance is free.
type BindingReleased struct {
	KMSInstance InstanceID
	Backup      BackupID
}

func (BindingClaimed) EventType() string  { return TypeBindingClaimed }
func (BindingReleased) EventType() string { return TypeBindingReleased }

func (e *BindingClaimed) encode(w *wire.Writer) {
	w.String(string(e.KMSInstance))
	w.String(string(e.Backup))
	w.Fixed(e.Owner[:])
	w.Uvarint(e.At)
}
func (e *BindingClaimed) decode(r *wire.Reader) {
	e.KMSInstance, e.Backup = InstanceID(r.String()), BackupID(r.String())
	r.Fixed(e.Owner[:])
	e.At = r.Uvarint()
}

func (e *BindingReleased) encode(w *wire.Writer) {
	w.String(string(e.KMSInstance))
	w.String(string(e.Backup))
}
func (e *BindingReleased) decode(r *wire.Reader) {
	e.KMSInstance, e.Backup = InstanceID(r.String()), BackupID(r.String())
}

func bindingData(typ string) EventData {
	switch typ {
	case TypeBindingClaimed:
		return &BindingClaimed{}
	case TypeBindingReleased:
		return &BindingReleased{}
	}
	return nil
}

// BindingHold is the state of a KMS instance's binding stream: whether it
// exists, the revision of its last event, and the claim that holds the
// KMS instance (nil when it is free).
type BindingHold struct {
	Exists   bool
	Revision uint64
	Claim    *BindingClaimed
}

// BindingOf folds the last event of a binding stream (nil when the stream
// does not exist) into the hold it leaves. Errors: domain.ErrCorrupt for
// an event of another type.
func BindingOf(last *Event) (BindingHold, error) {
	exists, rev, claim, err := foldClaims[*BindingClaimed, *BindingReleased](last, "binding stream")
	return BindingHold{Exists: exists, Revision: rev, Claim: claim}, err
}

// Holder is the backup instance that holds the KMS instance, "" when it is
// free: no claim, or a claim that is dead (claimDead; see ClaimDead).
func (h BindingHold) Holder(claimDead bool) BackupID {
	if h.Claim == nil || claimDead {
		return ""
	}
	return h.Claim.Backup
}

// ClaimFor decides the claim of the KMS instance in by backup instance b,
// whose BackupEnabled event owner the append writes at revision at of b's
// stream: the claim and the revision its append expects. A KMS instance
// held by any backup instance (claimDead says whether its claim is dead)
// is ErrAlreadyExists; Backup.Enable says it first, in its words, so this
// is the last guard.
func (h BindingHold) ClaimFor(in InstanceID, b BackupID, owner EventID, at uint64, claimDead bool) (*BindingClaimed, ExpectedRevision, error) {
	if holder := h.Holder(claimDead); holder != "" {
		return nil, ExpectedRevision{}, Errorf(ErrAlreadyExists, "enable backup instance", string(b), "reset "+string(holder)+" first",
			"KMS instance %s is already backed up by backup instance %s", in, holder)
	}
	return &BindingClaimed{KMSInstance: in, Backup: b, Owner: owner, At: at}, expectAfter(h.Exists, h.Revision), nil
}

// ReleaseBy decides the release of the KMS instance by backup instance b,
// whose binding ends (a reset, a release): the release and the revision
// its append expects, or ok false when b does not hold it in the stream (a
// binding made before binding streams existed has none, and needs no
// release: the next claim expects no stream).
func (h BindingHold) ReleaseBy(b BackupID) (d *BindingReleased, expected ExpectedRevision, ok bool) {
	if h.Claim == nil || h.Claim.Backup != b {
		return nil, ExpectedRevision{}, false
	}
	return &BindingReleased{KMSInstance: h.Claim.KMSInstance, Backup: b}, expectAfter(h.Exists, h.Revision), true
}

// ClaimDead tells whether a claim can never be followed by its
// BackupEnabled: the event at revision At of the backup instance's stream
// is known (atAt, read from the log) and is not the claim's Owner. As for
// names (NameClaimed.ClaimDead), only a log whose multi-stream append is
// not atomic can leave one.
func (c *BindingClaimed) ClaimDead(atAt *Event) bool { return claimDead(c.Owner, atAt) }
