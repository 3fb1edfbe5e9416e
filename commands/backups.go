package commands

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// The backup use cases come in five groups, by concern, each holding
// only what its own use cases use:
//
//   - BackupInstances: the lifecycle of backup instances (create, enable,
//     extend, renew, reset, expire, release, the record of a released
//     source) and what shows them (show, list, the scheduled and failing
//     ones);
//   - Checkpoints: a backup instance's chain (take a checkpoint, write a
//     base, verify, scrub, whether the clock is behind);
//   - Schedule: the scheduler's work (what is due next, doing it, the
//     catch-up after downtime, the bases due), done through the two
//     above;
//   - DayData: a backup instance's days (the viewable ones, a day's
//     checkpoints and lists, the difference of two, a restore point
//     loaded);
//   - DayFiles: backup data files (download a day, upload a file, list
//     and delete uploads).
//
// What they share is in three values that an engine makes once and every
// group holds by pointer: BackupViews (an instance as the caller may see
// it, its time zone), BackupStreams (the per-instance lock, the append at
// the revision seen, audit, what this process knows of failing work) and
// BackupStorage (the data: blobs, data keys, scratch stores, the parts of
// slices and bases).

// BackupInstances holds the lifecycle of backup instances: create a
// provisioned one (or the default one of a region), enable, extend,
// renew, reset, and the expiry, release and record of a released source
// that the scheduler and the KMS run; and the queries that show them
// (show, list, the scheduled and the failing ones, the failures counted).
// A KMS instance is bound to one backup instance at most, and the log
// decides it, between processes too (bindings.go).
type BackupInstances struct {
	*BackupStreams
	// Storage makes a generation's data key on enable and destroys its
	// data on reset and release.
	Storage *BackupStorage
	// Checkpoints takes the first full backup on enable, and the last
	// checkpoint before the release of the KMS instance is recorded.
	Checkpoints *Checkpoints
}

// Schedule holds the scheduler's work (adapters/scheduler drives it): the
// earliest work due of every backup instance (NextWork), doing it (Do,
// RunDue), the catch-up after downtime (CatchUp), and writing the bases
// due (RunRebases). It takes checkpoints and bases through Checkpoints,
// and records expiries, releases and released sources through Instances.
// A piece of work that fails is its backup instance's alone: recorded,
// retried with backoff, and shown with the instance.
type Schedule struct {
	*BackupStreams
	Instances   *BackupInstances
	Checkpoints *Checkpoints
	// Jitter draws the jitter of retry delays, in [0, 1) (default
	// math/rand/v2's Float64); see RetryDelay.
	Jitter func() float64

	rebases rebaseRetries // failing rebases, in this process
}

// Checkpoints holds the use cases of a backup instance's chain of
// checkpoints: take the one due (TakeCheckpoint), write a new base
// (RebaseBackup), verify the chain, its slices and its bases
// (VerifyBackup; ScrubBackups for every instance), and tell whether the
// clock is behind the newest checkpoint (ClockBehind).
//
// A checkpoint copies the KMS instance's events since the previous one into
// the backup instance's own blob store, resealing key material under the
// backup instance's data key (so releasing the KMS instance loses nothing),
// then claims its place in the chain by appending BackupCheckpointed with
// the revision it saw: two engines can never both take the same checkpoint.
type Checkpoints struct {
	*BackupStreams
	Storage *BackupStorage
	// Days loads the state of the checkpoint a rebase writes as a base.
	Days *DayData
	// Sealer opens the KMS instance's key material and seals it again
	// under the backup's data key; verify opens it.
	Sealer Sealer
	// Rebase is when new bases are written (nil:
	// domain.DefaultRebasePolicy).
	Rebase *domain.RebasePolicy
}

// DayData holds the use cases that read a backup instance's days: which
// days are viewable, a day's checkpoints, its lists and the difference of
// two, and a restore point loaded into a scratch store (Open: the
// RestoreSources of restores, the state a download starts from). They read
// the read models and the stored data, and change nothing.
type DayData struct {
	*BackupViews
	Storage *BackupStorage
	// BaseLimit, when set, keeps Open from reading a base of a checkpoint
	// after it (an older base and more slices instead): for tests that
	// compare the paths to one state.
	BaseLimit uint64
}

// DayFiles holds the use cases that take a day out of a backup instance
// as a backup data file and bring one back: download a viewable day (at
// once, or prepared in the shared blob store and fetched later through
// any node, then expired), upload a file as a backup instance of kind
// upload, list and delete uploads.
type DayFiles struct {
	*BackupStreams
	Storage *BackupStorage
	// Days checks the day a download asks for and loads the state it
	// starts from.
	Days *DayData
	// Sealer opens key material for a download and seals an upload's
	// under its own data key.
	Sealer Sealer
	// Files writes and reads backup data files.
	Files BackupFiles
	// PreparedPartBytes is the size of the parts a prepared download is
	// stored in (default 4 MiB: what a prepare holds in memory; tests set
	// less).
	PreparedPartBytes int

	expiry downloadExpiry // how far this process expired prepared downloads
}

// BackupViews is how the backup use cases read backup instances: from the
// read models, as the caller may see them, in their time zones. One value
// serves every backup use case of an engine, so that each time zone is
// loaded once per process. Safe for concurrent use.
type BackupViews struct {
	State projections.Reader // backupstate, backupdata and kmsstate read models
	Clock Clock
	// Zones loads a time zone by IANA name (time.LoadLocation).
	Zones func(name string) (*time.Location, error)

	zones sync.Map // time zone name -> *time.Location, loaded
}

// BackupStreams is how the backup use cases change backup instances: each
// decides against the read model under the instance's lock (one decision
// at a time per instance in this process), appends to the instance's
// stream at the revision it saw, decides again after a race lost to
// another process, and waits until both backup read models show what it
// appended. It also keeps what this process knows of the instances'
// failing scheduled work, which every view of them shows. One value serves
// every backup use case of an engine: the lock of an instance is the same
// for all of them. Safe for concurrent use.
type BackupStreams struct {
	*BackupViews
	Log interface {
		EventAppender
		MultiAppender // a binding's claim or release with its backup event (bindings.go)
		StreamReader
		LogReader
	}
	StateApplied Waiter // the backupstate projector
	DataApplied  Waiter // the backupdata projector
	IDs          IDSource
	// Audit, if set, records every lifecycle change, download and upload.
	Audit *Audit

	locks   sync.Map // backup ID -> *sync.Mutex: one decision at a time per backup in this process
	retries retries  // failing scheduled work, in this process
	// endedLeft is set when destroying the data of an ended generation
	// failed in this process: the scheduler's next round tries again.
	endedLeft atomic.Bool
}

// BackupStorage is where backup instances keep their data: a generation's
// slice and base parts in the blob store, sealed under its data key, and
// the scratch stores that bases are written from and restore points loaded
// into. One value serves every backup use case of an engine (and the
// backupdata projection reads bases through one of its own). Safe for
// concurrent use.
type BackupStorage struct {
	Blobs    BlobStore
	DataKeys DataKeys
	// Scratch makes the scratch stores that restore points are loaded into
	// (DayData.Open) and bases written from.
	Scratch ScratchStores
	IDs     IDSource // names the parts
	// SlicePartBytes is where slices are cut into parts (default
	// domain.MaxSlicePart; tests set less).
	SlicePartBytes int
	// BasePartBytes is where bases are cut into parts (default
	// MaxBasePart; tests set less).
	BasePartBytes int
}

func (s *BackupStreams) lock(id domain.BackupID) func() {
	m, _ := s.locks.LoadOrStore(id, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// backup loads a backup instance the caller may see.
func (s *BackupViews) backup(c Caller, op string, id domain.BackupID) (*domain.Backup, error) {
	if err := requireAccount(c, op); err != nil {
		return nil, err
	}
	if _, err := domain.ParseBackupID(string(id)); err != nil {
		return nil, err
	}
	b, err := backupstate.Get(s.State, id)
	if errors.Is(err, domain.ErrNotFound) || (err == nil && (!c.Sees(b.Account) || b.Deleted())) {
		return nil, domain.NotFound(op, "backup instance", string(id))
	}
	return b, err
}

// zone loads a time zone by name, once per process: the scheduler asks for
// every enabled instance's zone at every instant it plans.
func (s *BackupViews) zone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if loc, ok := s.zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := s.Zones(name)
	if err != nil {
		return nil, domain.Errorf(domain.ErrInvalidArgument, "load time zone", "", "leave it out for the region's zone",
			"time zone %s is not a known IANA time zone (such as UTC or Asia/Shanghai)", domain.Quote(name))
	}
	s.zones.Store(name, loc)
	return loc, nil
}

func (s *BackupViews) location(b *domain.Backup) (*time.Location, error) { return s.zone(b.TimeZone) }

// today is the current day in the instance's time zone.
func (s *BackupViews) today(loc *time.Location) domain.Day { return domain.DayOf(s.Clock.Now(), loc) }

// newEvent builds an event of a backup instance's stream.
func (s *BackupStreams) newEvent(b *domain.Backup, at time.Time, d domain.EventData) domain.Event {
	return domain.Event{ID: s.IDs.NewULID(), Stream: domain.BackupStream(b.ID), Type: d.EventType(),
		Schema: domain.SchemaVersion, OccurredAt: at.UTC(), Account: b.Account, Region: b.Region,
		Instance: b.KMSInstance, Data: domain.EncodeData(d)}
}

// commit appends events to a backup stream, in one atomic append, at the
// revision the decision saw (or as its first events) and waits until both
// backup read models show them.
func (s *BackupStreams) commit(ctx context.Context, b *domain.Backup, first bool, events ...domain.Event) error {
	pos, err := s.appendEvents(ctx, b, first, events...)
	if err != nil {
		return err
	}
	return s.waitApplied(ctx, pos)
}

// appendEvents is commit's append: it returns the log position of the last
// event.
func (s *BackupStreams) appendEvents(ctx context.Context, b *domain.Backup, first bool, events ...domain.Event) (uint64, error) {
	expected := domain.ExpectRevision(b.Revision)
	if first {
		expected = domain.ExpectNoStream
	}
	res, err := s.Log.Append(ctx, events[0].Stream, expected, events)
	return res.LastPosition, err
}

// waitApplied is commit's wait: until both backup read models have
// applied the log up to pos.
func (s *BackupStreams) waitApplied(ctx context.Context, pos uint64) error {
	if err := s.StateApplied.WaitFor(ctx, pos); err != nil {
		return err
	}
	return s.DataApplied.WaitFor(ctx, pos)
}

// appendRefused reports whether err, the error of an append, says that
// nothing was appended: the log refused the batch (a race lost, a batch it
// does not take). After any other error the events may be in the log (the
// append written and its reply lost). So blobs stored for events (the
// parts of a slice or of a base) are deleted after a refused append only:
// after any other failure they are kept, since a blob kept for nothing is
// storage lost until its generation is destroyed, but a blob deleted under
// a recorded event is backed-up data lost (and stops the read model that
// applies the event).
func appendRefused(err error) bool {
	return errors.Is(err, domain.ErrWrongExpectedRevision) || errors.Is(err, domain.ErrInvalidArgument)
}

// decide runs attempt until it does not lose a race (see decide), catching
// the backupstate read model up with the log after each loss.
func (s *BackupStreams) decide(ctx context.Context, op string, attempt func() error) error {
	return decide(ctx, op, caughtUp(s.Log, s.StateApplied), attempt)
}

// audit records a lifecycle change of a backup instance.
func (s *BackupStreams) audit(ctx context.Context, c Caller, b *domain.Backup, action string) error {
	if s.Audit == nil {
		return nil
	}
	return s.Audit.Record(ctx, c, b.Account, &domain.Audited{Action: action, Backup: b.ID, Target: string(b.KMSInstance)})
}

// listBackups lists the caller's backup instances that keep accepts, size
// at a time, in ID order, under page tokens of the listing named kind.
func (s *BackupStreams) listBackups(c Caller, kind, token string, size int, keep func(*domain.Backup) bool) (projections.Page[*domain.Backup], error) {
	n, err := pageSize(size)
	if err != nil {
		return projections.Page[*domain.Backup]{}, err
	}
	return pageOf(domain.PageScope(kind, string(c.Account)), token, func(cursor string) (projections.Page[*domain.Backup], error) {
		// One item more than the page tells whether a next page exists.
		var items []*domain.Backup
		for {
			p, err := backupstate.List(s.State, c.Account, cursor, n+1)
			if err != nil {
				return projections.Page[*domain.Backup]{}, err
			}
			for _, b := range p.Items {
				cursor = string(b.ID)
				if keep(b) {
					items = append(items, b)
				}
				if len(items) > n {
					break
				}
			}
			if len(items) > n || p.Next == "" {
				break
			}
		}
		out := projections.Page[*domain.Backup]{Items: items}
		if len(items) > n {
			out.Items, out.Next = items[:n], string(items[n-1].ID)
		}
		for _, b := range out.Items {
			s.retries.overlay(b)
		}
		return out, nil
	})
}

// destroyData crypto-shreds a generation (its data key goes first, so the
// bytes are unreadable at once), then deletes its blobs.
func (s *BackupStorage) destroyData(ctx context.Context, ref string) error {
	if err := s.DataKeys.DestroyDataKey(ctx, ref); err != nil {
		return fmt.Errorf("destroy data key: %w", err)
	}
	if err := s.Blobs.DestroyBlobs(ctx, ref); err != nil {
		return fmt.Errorf("destroy backup data: %w", err)
	}
	return nil
}

// DefaultBackupID is the ID of the default backup instance of an account's
// region. It is derived from both, so that creating it is idempotent and
// race-free (the first append expects no stream).
func DefaultBackupID(a domain.AccountID, region string) domain.BackupID {
	h := sha256.Sum256([]byte("kmsbackup default backup\x00" + string(a) + "\x00" + region))
	var u ulid.ULID
	copy(u[:], h[:16])
	return domain.NewBackupID(u)
}
