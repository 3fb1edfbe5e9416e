package commands

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// Backups holds the backup instances' use cases: the lifecycle (create,
// enable, extend, renew, reset, expiry, release), checkpoints (full and
// incremental backups), the scheduler's steps, a day's data, and verify.
//
// A checkpoint copies the KMS instance's events since the previous one into
// the backup instance's own blob store, resealing key material under the
// backup instance's data key (so releasing the KMS instance loses nothing),
// then claims its place in the chain by appending BackupCheckpointed with
// the revision it saw: two engines can never both take the same checkpoint.
type Backups struct {
	Log interface {
		EventAppender
		StreamReader
		LogReader
	}
	State        projections.Reader // backupstate, backupdata and kmsstate read models
	StateApplied Waiter             // the backupstate projector
	DataApplied  Waiter             // the backupdata projector
	Sealer       Sealer
	DataKeys     DataKeys
	Blobs        BlobStore
	// Scratch makes the scratch stores that restore points are loaded into
	// (Open) and bases written from.
	Scratch ScratchStores
	// Files writes and reads backup data files (download and upload).
	Files BackupFiles
	Clock Clock
	IDs   IDSource
	// Zones loads a time zone by IANA name (time.LoadLocation).
	Zones func(name string) (*time.Location, error)
	// Audit, if set, records every lifecycle change.
	Audit *Audit
	// Jitter draws the jitter of retry delays, in [0, 1) (default
	// math/rand/v2's Float64); see RetryDelay.
	Jitter func() float64
	// SlicePartBytes is where slices are cut into parts (default
	// domain.MaxSlicePart; tests set less).
	SlicePartBytes int
	// BasePartBytes is where bases are cut into parts (default
	// MaxBasePart; tests set less).
	BasePartBytes int
	// Rebase is when new bases are written (nil:
	// domain.DefaultRebasePolicy).
	Rebase *domain.RebasePolicy
	// BaseLimit, when set, keeps Open from reading a base of a checkpoint
	// after it (an older base and more slices instead): for tests that
	// compare the paths to one state.
	BaseLimit uint64

	retries retries       // failing scheduled work, in this process
	rebases rebaseRetries // failing rebases, in this process
	zones   sync.Map      // time zone name -> *time.Location, loaded
	locks   sync.Map      // backup ID -> *sync.Mutex: one decision at a time per backup in this process
	bind    sync.Mutex
}

func (s *Backups) lock(id domain.BackupID) func() {
	m, _ := s.locks.LoadOrStore(id, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// backup loads a backup instance the caller may see.
func (s *Backups) backup(c Caller, op string, id domain.BackupID) (*domain.Backup, error) {
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
func (s *Backups) zone(name string) (*time.Location, error) {
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

func (s *Backups) location(b *domain.Backup) (*time.Location, error) { return s.zone(b.TimeZone) }

// newEvent builds an event of a backup instance's stream.
func (s *Backups) newEvent(b *domain.Backup, at time.Time, d domain.EventData) domain.Event {
	return domain.Event{ID: s.IDs.NewULID(), Stream: domain.BackupStream(b.ID), Type: d.EventType(),
		Schema: domain.SchemaVersion, OccurredAt: at.UTC(), Account: b.Account, Region: b.Region,
		Instance: b.KMSInstance, Data: domain.EncodeData(d)}
}

// commit appends events to a backup stream, in one atomic append, at the
// revision the decision saw (or as its first events) and waits until both
// backup read models show them.
func (s *Backups) commit(ctx context.Context, b *domain.Backup, first bool, events ...domain.Event) error {
	pos, err := s.appendEvents(ctx, b, first, events...)
	if err != nil {
		return err
	}
	return s.waitApplied(ctx, pos)
}

// appendEvents is commit's append: it returns the log position of the last
// event.
func (s *Backups) appendEvents(ctx context.Context, b *domain.Backup, first bool, events ...domain.Event) (uint64, error) {
	expected := domain.ExpectRevision(b.Revision)
	if first {
		expected = domain.ExpectNoStream
	}
	res, err := s.Log.Append(ctx, events[0].Stream, expected, events)
	return res.LastPosition, err
}

// waitApplied is commit's wait: until both backup read models have
// applied the log up to pos.
func (s *Backups) waitApplied(ctx context.Context, pos uint64) error {
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
func (s *Backups) decide(ctx context.Context, op string, attempt func() error) error {
	return decide(ctx, op, caughtUp(s.Log, s.StateApplied), attempt)
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

// today is the current day in the instance's time zone.
func (s *Backups) today(loc *time.Location) domain.Day { return domain.DayOf(s.Clock.Now(), loc) }

// audit records a lifecycle change of a backup instance.
func (s *Backups) audit(ctx context.Context, c Caller, b *domain.Backup, action string) error {
	if s.Audit == nil {
		return nil
	}
	return s.Audit.Record(ctx, c, b.Account, &domain.Audited{Action: action, Backup: b.ID, Target: string(b.KMSInstance)})
}
