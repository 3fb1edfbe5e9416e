package domain

import (
	"fmt"
	"slices"
)

// Restore item kinds.
const (
	RestoreKey    = "key"
	RestoreSecret = "secret"
)

// Restore finding codes: every reason a plan cannot be applied.
const (
	FindingTargetNotFound   = "target-not-found"
	FindingTargetReleased   = "target-released"
	FindingRegionMismatch   = "region-mismatch"
	FindingKeyQuota         = "key-quota-exceeded"
	FindingSecretQuota      = "secret-quota-exceeded"
	FindingKeyExists        = "key-exists"
	FindingSecretExists     = "secret-exists"
	FindingSecretKeyMissing = "secret-key-missing"
	FindingBackupExpired    = "backup-expired"
	FindingDayNotViewable   = "day-not-viewable"
	FindingItemNotInBackup  = "item-not-in-backup"
)

// Restore item statuses.
const (
	// RestorePlanned: the item will be written.
	RestorePlanned = "planned"
	// RestorePresent: the target already holds the item, identical to the
	// backup's (restored before, or never deleted there): it is skipped.
	RestorePresent = "already-present"
	// RestoreRestored: the item was written by this restore.
	RestoreRestored = "restored"
)

// RestoreFinding is one reason a restore plan cannot be applied.
type RestoreFinding struct {
	Code    string
	Item    string
	Message string
}

func finding(code, item, format string, args ...any) RestoreFinding {
	return RestoreFinding{Code: code, Item: item, Message: fmt.Sprintf(format, args...)}
}

// Err is the finding as the error of an operation op: already exists for a
// key or secret in the way, quota exceeded for a quota, failed
// precondition otherwise.
func (f RestoreFinding) Err(op string) error {
	kind := ErrFailedPrecondition
	switch f.Code {
	case FindingKeyExists, FindingSecretExists:
		kind = ErrAlreadyExists
	case FindingKeyQuota, FindingSecretQuota:
		kind = ErrQuotaExceeded
	case FindingTargetNotFound:
		kind = ErrNotFound
	}
	return &Error{Op: op, Kind: kind, Item: f.Item, Msg: f.Code + ": " + f.Message}
}

// RestoreSelection is what a restore takes from its point: everything, or
// the keys and secrets it names. Build it with SelectAll or
// ParseRestoreSelection; the zero value selects nothing.
type RestoreSelection struct {
	all     bool
	keys    []KeyID  // sorted, without duplicates
	secrets []string // sorted, without duplicates
}

// SelectAll selects every key and secret of the point.
func SelectAll() RestoreSelection { return RestoreSelection{all: true} }

// ParseRestoreSelection parses a selection as requests give it: all, or
// the key IDs and secret names to restore (duplicates are restored once).
// Errors: ErrInvalidArgument when all is combined with names, when nothing
// is selected, or for a malformed key ID or secret name.
func ParseRestoreSelection(all bool, keys, secrets []string) (RestoreSelection, error) {
	const op = "restore"
	switch {
	case all && (len(keys) > 0 || len(secrets) > 0):
		return RestoreSelection{}, Invalid(op, "restore everything (all) or name keys and secrets, not both")
	case all:
		return SelectAll(), nil
	case len(keys) == 0 && len(secrets) == 0:
		return RestoreSelection{}, Invalid(op, "name what to restore: keys, secrets, or all")
	}
	s := RestoreSelection{}
	for _, k := range keys {
		id, err := ParseKeyID(k)
		if err != nil {
			return RestoreSelection{}, err
		}
		s.keys = append(s.keys, id)
	}
	for _, n := range secrets {
		if err := ValidateSecretName(n); err != nil {
			return RestoreSelection{}, err
		}
		s.secrets = append(s.secrets, n)
	}
	slices.Sort(s.keys)
	slices.Sort(s.secrets)
	s.keys, s.secrets = slices.Compact(s.keys), slices.Compact(s.secrets)
	return s, nil
}

// All reports whether everything is selected.
func (s RestoreSelection) All() bool { return s.all }

// Keys are the named key IDs, sorted (none when All).
func (s RestoreSelection) Keys() []KeyID { return slices.Clone(s.keys) }

// Secrets are the named secret names, sorted (none when All).
func (s RestoreSelection) Secrets() []string { return slices.Clone(s.secrets) }

// IsZero reports whether nothing is selected.
func (s RestoreSelection) IsZero() bool { return !s.all && len(s.keys) == 0 && len(s.secrets) == 0 }

// Selects reports whether the item of that kind and ID is selected.
func (s RestoreSelection) Selects(kind, id string) bool {
	if s.all {
		return true
	}
	if kind == RestoreKey {
		_, ok := slices.BinarySearch(s.keys, KeyID(id))
		return ok
	}
	_, ok := slices.BinarySearch(s.secrets, id)
	return ok
}

// RestoreStart is what a restore plan knows before it reads any item.
type RestoreStart struct {
	Account AccountID // the caller's account
	Backup  *Backup   // the backup restored from
	Day     Day       // the day read ("" for an upload: its day)
	Today   Day       // today in the backup's time zone
	// TargetID is the KMS instance asked for, Target the instance with that
	// ID (nil when there is none), Region the region asked for ("" when
	// none: the target's).
	TargetID InstanceID
	Target   *Instance
	Region   string
}

// RestorePresence is where the target's region already holds an item's
// key ID or secret name.
type RestorePresence int

// The places an item's ID or name can be in the target's region.
const (
	// Absent: nowhere in the region.
	Absent RestorePresence = iota
	// PresentIdentical: in the target, with the backup's versions.
	PresentIdentical
	// PresentDifferent: in the target, with other versions.
	PresentDifferent
	// PresentElsewhere: in another instance of the region.
	PresentElsewhere
)

// RestoreCandidate is a backed-up item as a plan weighs it.
type RestoreCandidate struct {
	Kind     string // RestoreKey or RestoreSecret
	ID       string // key ID or secret name
	Versions uint32
	KeyID    KeyID // secrets: the key of the newest version
}

// RestoreItemFacts is what the target says about one item.
type RestoreItemFacts struct {
	Presence RestorePresence
	// KeyInTarget (secrets): the secret's key is live in the target.
	KeyInTarget bool
	// KeyRestoredWith (secrets): the secret's key is restored by the same
	// plan (selected, and held by the point).
	KeyRestoredWith bool
}

// RestorePlanner decides a restore plan as a fold over its items: Start
// with what is known before any item, then Item for every backed-up item
// selected (keys first), Missing for every named item the point does not
// hold, and Finish for the findings about the whole (quotas). It keeps
// only counts, whatever the number of items. The same fold decides a plan
// shown before anything is written and each batch of an apply, against
// the target as it is then. Pure; not safe for concurrent use.
type RestorePlanner struct {
	day        Day
	target     *Instance // nil: no target to check the items against
	readable   bool
	newKeys    uint64
	newSecrets uint64
}

// StartRestore begins a plan and returns the findings about the backup,
// the day and the target: the backup is usable (not expired, not
// released), the day viewable, the target an instance of the caller's
// account (another account's instance answers exactly as a missing one),
// live, and in the region asked for.
func StartRestore(s RestoreStart) (*RestorePlanner, []RestoreFinding) {
	const op = "plan restore"
	p := &RestorePlanner{day: s.Day, readable: true}
	var out []RestoreFinding
	b := s.Backup
	if err := b.Usable(op); err != nil {
		hint := "renew it first"
		if b.State == StateReleased {
			hint = "its data is destroyed"
		}
		out = append(out, finding(FindingBackupExpired, string(b.ID), "backup instance %s is %s: %s", b.ID, b.State, hint))
		p.readable = false
	} else if err := b.CheckDay(op, s.Day, s.Today); err != nil {
		out = append(out, finding(FindingDayNotViewable, string(s.Day), "%v", err))
		p.readable = false
	}
	if t := s.Target; t == nil || t.Account != s.Account {
		out = append(out, finding(FindingTargetNotFound, string(s.TargetID), "KMS instance %s not found", s.TargetID))
	} else {
		p.target = t
		if t.Released {
			out = append(out, finding(FindingTargetReleased, string(t.ID), "KMS instance %s is released", t.ID))
		}
		if s.Region != "" && s.Region != t.Region {
			out = append(out, finding(FindingRegionMismatch, string(t.ID), "KMS instance %s is in region %s, not %s", t.ID, t.Region, s.Region))
		}
	}
	return p, out
}

// Readable reports whether the backup's items can be read: it is usable
// and the day viewable.
func (p *RestorePlanner) Readable() bool { return p.readable }

// Target is the instance the items are checked against, nil when there
// is none (not found): the items are then planned without checks.
func (p *RestorePlanner) Target() *Instance { return p.target }

// Item decides one backed-up item: already present and identical in the
// target (skipped), or planned; and the findings that keep it from being
// restored: its key ID or secret name taken in the target's region (by
// another instance, or by the target with other versions), or, for a
// secret, its key neither in the target nor restored with it.
func (p *RestorePlanner) Item(c RestoreCandidate, f RestoreItemFacts) (string, []RestoreFinding) {
	t := p.target
	if t == nil {
		return RestorePlanned, nil
	}
	var out []RestoreFinding
	status := RestorePlanned
	switch f.Presence {
	case PresentIdentical:
		status = RestorePresent
	case PresentDifferent, PresentElsewhere:
		if c.Kind == RestoreKey {
			out = append(out, finding(FindingKeyExists, c.ID, "a key with ID %s already exists in region %s: delete it there first", c.ID, t.Region))
		} else {
			out = append(out, finding(FindingSecretExists, c.ID, "a secret named %s already exists in region %s: delete it there first", c.ID, t.Region))
		}
	default:
		if c.Kind == RestoreKey {
			p.newKeys++
		} else {
			p.newSecrets++
		}
	}
	if c.Kind == RestoreSecret && status != RestorePresent && !f.KeyInTarget && !f.KeyRestoredWith {
		out = append(out, finding(FindingSecretKeyMissing, c.ID, "secret %s is encrypted under key %s, which is neither in %s nor restored with it", c.ID, c.KeyID, t.ID))
	}
	return status, out
}

// Missing is the finding of a named item the point does not hold (items
// deleted before the backup was enabled never are).
func (p *RestorePlanner) Missing(kind, id string) RestoreFinding {
	return finding(FindingItemNotInBackup, id, "%s %s is not in the data of %s", kind, id, p.day)
}

// Finish returns the findings about the plan as a whole: the target's key
// and secret quotas leave room for the items it writes.
func (p *RestorePlanner) Finish() []RestoreFinding {
	t := p.target
	if t == nil || t.Released {
		return nil
	}
	var out []RestoreFinding
	if uint64(t.LiveKeys)+p.newKeys > uint64(t.KeyQuota) {
		out = append(out, finding(FindingKeyQuota, string(t.ID), "%d keys to restore, %d of the key quota of %d left", p.newKeys, int(t.KeyQuota)-int(t.LiveKeys), t.KeyQuota))
	}
	if uint64(t.LiveSecrets)+p.newSecrets > uint64(t.SecretQuota) {
		out = append(out, finding(FindingSecretQuota, string(t.ID), "%d secrets to restore, %d of the secret quota of %d left", p.newSecrets, int(t.SecretQuota)-int(t.LiveSecrets), t.SecretQuota))
	}
	return out
}
