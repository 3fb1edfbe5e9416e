package commands

import (
	"context"
	"errors"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// The seam between storage and the restore engine (docs/restore-engine.md):
// storage loads a restore point of a backup and hands its items over
// through these ports; the restore use cases plan, apply and validate
// against them, whatever the storage behind.

// RestorePoint is what a restore reads from a backup: a whole viewable day (items as
// they last stood within it, a deleted one as it was just before its deletion), or
// the state at one instant of it.
type RestorePoint struct {
	Day domain.Day
	At  time.Time // zero: the whole day
}

// BackedUpVersion is one version as the backup holds it (material sealed under the
// backup generation's data key, bound to SealedBy; or a secret's KMS ciphertext).
type BackedUpVersion struct {
	Version   uint32
	CreatedAt time.Time
	Material  domain.Sealed  // keys
	SealedBy  domain.EventID // keys
	KeyID     domain.KeyID   // secrets: the key this version is encrypted under
	Value     []byte         // secrets
}

// BackedUpItem is one key or secret of a restore point with every version.
type BackedUpItem struct {
	Kind        string // "key" or "secret"
	ID          string // key ID or secret name
	Description string // keys
	CreatedAt   time.Time
	DeletedAt   time.Time // whole-day points: when it was deleted within the day (zero: it was not)
	Versions    []BackedUpVersion
}

// KeyID of a secret is the key of its newest version.
func (it *BackedUpItem) KeyID() domain.KeyID {
	if it.Kind != domain.RestoreSecret || len(it.Versions) == 0 {
		return ""
	}
	return it.Versions[len(it.Versions)-1].KeyID
}

// ErrStop, returned by the function given to RestoreSource.Each, ends the
// iteration early; Each then returns nil.
var ErrStop = errors.New("commands: stop")

// RestoreSource is what a restore reads: the items of one restore point of one
// backup generation, loaded once and read as often as needed until Close.
// One goroutine uses a source at a time; Lookup may be called from within
// Each's fn. Errors: ctx's error when it ends; domain.ErrCorrupt for
// damaged backup data; domain.ErrUnavailable when the store fails; fn's
// error, as it is.
type RestoreSource interface {
	// Point is the point held; At is the instant the state is at (for a whole day:
	// the end of the day's data).
	Point() RestorePoint
	// Counts are the keys, secrets and versions the source holds.
	Counts() (keys, secrets, versions uint64)
	// Each calls fn for every item, keys first then secrets, each in ID order,
	// starting after `after` (zero: from the first), until fn returns an error or
	// ErrStop. The item is valid only during fn. Memory does not grow with the items.
	Each(ctx context.Context, after ItemRef, fn func(*BackedUpItem) error) error
	// Lookup reads one item. ok is false when the point does not hold it.
	Lookup(ctx context.Context, ref ItemRef) (it *BackedUpItem, ok bool, err error)
	// Close releases the source (a scratch database is removed). Idempotent.
	Close() error
}

// ItemRef names a key ("key", key ID) or a secret ("secret", name).
type ItemRef struct{ Kind, ID string }

// RestoreSources opens sources. The use case has checked the caller, the backup's
// state and the day's viewability; Open only reads.
type RestoreSources interface {
	// Open loads point of backup b. only, when not nil, restricts the source to
	// those items (an item-level restore reads no more than it needs).
	Open(ctx context.Context, b *domain.Backup, point RestorePoint, only []ItemRef) (RestoreSource, error)
}
