package commands

import (
	"context"
	"errors"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// The seam between the storage of backups and the restore engine
// (docs/restore-engine.md): the restore engine (plan, apply, validate,
// replay, download) reads a backup's data through RestoreSources alone,
// never through the read models or the blobs that hold it.

// Item kinds of a BackedUpItem and an ItemRef.
const (
	ItemKindKey    = "key"
	ItemKindSecret = "secret"
)

// ErrStop, returned by the callback of RestoreSource.Each, ends the walk
// early; Each then returns nil.
var ErrStop = errors.New("commands: stop")

// RestorePoint is what a restore reads from a backup: a whole viewable day
// (items as they last stood within it, a deleted one as it was just before
// its deletion), or the state at one instant of it.
type RestorePoint struct {
	Day domain.Day
	At  time.Time // zero: the whole day; else an instant of Day: the state of every event that occurred at or before it
}

// BackedUpVersion is one version as the backup holds it (material sealed
// under the backup generation's data key, bound to SealedBy: open it with
// the associated data BackupAAD(account, dataRef, SealedBy); or a secret's
// KMS ciphertext).
type BackedUpVersion struct {
	Version   uint32
	CreatedAt time.Time
	Material  domain.Sealed  // keys
	SealedBy  domain.EventID // keys
	KeyID     domain.KeyID   // secrets: the key this version is encrypted under
	Value     []byte         // secrets
}

// BackedUpItem is one key or secret of a restore point with every version,
// in version order (1, 2, ...). The KeyID of a secret is the key of its
// newest version.
type BackedUpItem struct {
	Kind        string // ItemKindKey or ItemKindSecret
	ID          string // key ID or secret name
	Description string // keys
	CreatedAt   time.Time
	DeletedAt   time.Time // whole-day points: when it was deleted within the day (zero: it was not)
	Versions    []BackedUpVersion
}

// KeyID of a secret is the key of its newest version; "" for a key.
func (it *BackedUpItem) KeyID() domain.KeyID {
	if it.Kind != ItemKindSecret || len(it.Versions) == 0 {
		return ""
	}
	return it.Versions[len(it.Versions)-1].KeyID
}

// ItemRef names one key or secret: Kind ItemKindKey or ItemKindSecret, and
// its key ID or secret name. The zero ItemRef comes before every item.
type ItemRef struct{ Kind, ID string }

// RestoreSource is what a restore reads: the items of one restore point of
// one backup generation, loaded once and read as often as needed until
// Close. Its methods may be called one at a time (not safe for concurrent
// use); reads never change it, so they are idempotent.
type RestoreSource interface {
	// Point is the point held, as it was opened.
	Point() RestorePoint
	// Covered is how far the data held goes: the instant the state is at
	// (Point().At for an instant, or the instant of the last checkpoint
	// when the backup holds nothing later yet; for a whole day, the end of
	// the day, or, for a day still in progress, the instant of the last
	// checkpoint), and
	// the last checkpoint of the generation whose data it holds (for
	// domain.RestoredFrom.Seq).
	Covered() (at time.Time, seq uint64)
	// Counts are the keys, secrets and versions the source holds (of the
	// items it was restricted to, if it was).
	Counts(ctx context.Context) (keys, secrets, versions uint64, err error)
	// Each calls fn for every item, keys first then secrets, each in ID
	// order, starting after `after` (zero: from the first), until fn
	// returns an error or ErrStop. The item and its versions are valid only
	// during fn. Memory does not grow with the items. Errors: fn's (not
	// ErrStop); domain.ErrCorrupt for data that does not decode;
	// domain.ErrUnavailable once the source is closed; ctx's.
	Each(ctx context.Context, after ItemRef, fn func(*BackedUpItem) error) error
	// Lookup reads one item, the caller's to keep. ok is false when the
	// point does not hold it. Errors as Each's.
	Lookup(ctx context.Context, ref ItemRef) (it *BackedUpItem, ok bool, err error)
	// Close releases the source (a scratch database is removed).
	// Idempotent.
	Close() error
}

// RestoreSources opens sources. The use case has checked the caller, the
// backup's state and the day's viewability; Open only reads.
type RestoreSources interface {
	// Open loads point of backup b's current generation. only, when not
	// nil, restricts the source to those items (an item-level restore
	// reads no more than it needs; an item the point does not hold is left
	// out). The caller closes the source.
	//
	// Errors: domain.ErrFailedPrecondition when b holds no data for the
	// point (a day without a checkpoint, an instant before the first);
	// domain.ErrInvalidArgument for an instant outside Day; domain.ErrCorrupt
	// when the stored data fails its checks (a digest, a chain, a record
	// that does not decode); domain.ErrUnavailable when a store cannot be
	// read; ctx's. Safe for concurrent use; each source is independent.
	Open(ctx context.Context, b *domain.Backup, point RestorePoint, only []ItemRef) (RestoreSource, error)
}
