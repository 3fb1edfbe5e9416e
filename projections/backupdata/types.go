package backupdata

import (
	"strings"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Item kinds.
const (
	KindKey    = "key"
	KindSecret = "secret"
)

func kindByte(kind string) byte {
	switch kind {
	case KindKey:
		return kindKey
	case KindSecret:
		return kindSecret
	}
	return 0
}

func kindName(b byte) string {
	if b == kindKey {
		return KindKey
	}
	return KindSecret
}

// Tab is one of the lists of a day's data (SPEC.md section 6).
type Tab string

// The seven tabs, in the order the console shows them.
const (
	FullKeys           Tab = "full-keys"
	IncrementalKeys    Tab = "incremental-keys"
	RotatedKeys        Tab = "rotated-keys"
	FullSecrets        Tab = "full-secrets"
	IncrementalSecrets Tab = "incremental-secrets"
	RotatedSecrets     Tab = "rotated-secrets"
	Deleted            Tab = "deleted"
)

// Tabs lists every tab in console order.
var Tabs = []Tab{FullKeys, IncrementalKeys, RotatedKeys, FullSecrets, IncrementalSecrets, RotatedSecrets, Deleted}

// ParseTab validates a tab name. Errors: domain.ErrInvalidArgument, naming
// the valid tabs.
func ParseTab(s string) (Tab, error) {
	for _, t := range Tabs {
		if string(t) == s {
			return t, nil
		}
	}
	names := make([]string, len(Tabs))
	for i, t := range Tabs {
		names[i] = string(t)
	}
	return "", domain.Invalid("parse tab", "tab %s must be one of %s", domain.Quote(s), strings.Join(names, ", "))
}

// Item is a key or secret as a listing shows it: never key material or a
// value.
type Item struct {
	Kind        string // KindKey or KindSecret
	ID          string // key ID or secret name
	Versions    uint32
	CreatedAt   time.Time // when this incarnation was created
	ChangedAt   time.Time // the change listed: create, last rotation, or deletion
	Description string    // keys
	KeyID       string    // secrets: the key encrypting the newest version
	// CreateSeq is the checkpoint that recorded the incarnation's create; it
	// tells apart the incarnations of a secret name (or key ID) deleted and
	// created again.
	CreateSeq uint64
}

func (it *Item) text() string {
	if it.Kind == KindKey {
		return it.Description
	}
	return it.KeyID
}

// DayInfo says which checkpoints a day has.
type DayInfo struct {
	Day     domain.Day
	FullSeq uint64 // the day's first full backup, 0 if it has none
	LastSeq uint64 // the day's last checkpoint
}

// Summary describes one checkpoint.
type Summary struct {
	Seq         uint64
	Full        bool
	At          time.Time  // the instant it covers up to
	Day         domain.Day // At's day in the instance's time zone
	From, Next  uint64     // KMS stream revisions covered: [From, Next)
	LiveKeys    uint64
	LiveSecrets uint64
	StateDigest [32]byte // StateDigest of the state at Seq
	// Parts lists the blobs of the checkpoint's slice, in revision order
	// (none when it holds no event, or when InBase).
	Parts []domain.SlicePart
	// InBase says that the checkpoint's revisions are held by its base
	// (the first checkpoint of a generation of this version).
	InBase bool
	// Digest is the checkpoint's own digest, its link in the chain
	// (domain.CheckpointDigest), which a base of it is chained to.
	Digest [32]byte
}

// SliceParts returns the parts of the checkpoint's slice, in revision
// order.
func (s *Summary) SliceParts() []domain.SlicePart { return s.Parts }

// Change is one difference between the states of two days.
type Change struct {
	Item Item   // the item after the change (before it, for a deletion)
	What string // "created", "rotated" or "deleted"
}

// What a Change is.
const (
	ChangeCreated = "created"
	ChangeRotated = "rotated"
	ChangeDeleted = "deleted"
)

// BaseInfo describes one base of a generation: the complete state at
// checkpoint Seq, stored as Parts in the blob store.
type BaseInfo struct {
	Seq         uint64
	At          time.Time // checkpoint Seq's instant
	Next        uint64    // the KMS revisions it covers up to
	Parts       []domain.BasePart
	Items       uint64
	Versions    uint64
	StateDigest [32]byte
}
