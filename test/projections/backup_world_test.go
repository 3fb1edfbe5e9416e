package projections

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// world is a small log of KMS and backup streams, applied event by event to
// backupstate and backupdata in the real projection store, the way the
// engine feeds them: every event of the log goes to both projections, and a
// checkpoint comes with the events of its slice.
type world struct {
	tb      testing.TB
	st      *pebblestore.Projections
	acct    domain.AccountID
	region  string
	pos     uint64
	ids     uint64
	streams map[string][]domain.Event
	backups map[domain.BackupID]*domain.Backup
	log     []string // what happened, for failure reports
}

func newWorld(tb testing.TB) *world {
	tb.Helper()
	st, err := pebblestore.OpenProjections(tb.TempDir(), pebblestore.Options{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	w := &world{tb: tb, st: st, region: "cn-hangzhou", ids: 100,
		streams: map[string][]domain.Event{}, backups: map[domain.BackupID]*domain.Backup{}}
	w.acct = domain.NewAccountID(uid(1))
	return w
}

// append records an event at the head of its stream and applies it.
func (w *world) append(stream string, in domain.InstanceID, at time.Time, d domain.EventData, slice []domain.Event) domain.Event {
	w.tb.Helper()
	w.ids++
	w.pos++
	e := domain.Event{ID: uid(w.ids), Stream: stream, Revision: uint64(len(w.streams[stream])), Position: w.pos,
		Type: d.EventType(), Schema: domain.SchemaVersion, OccurredAt: at.UTC(), Account: w.acct, Region: w.region,
		Instance: in, Data: domain.EncodeData(d)}
	w.streams[stream] = append(w.streams[stream], e)
	w.log = append(w.log, fmt.Sprintf("%s %s %s %+v", at.Format(time.RFC3339), stream, e.Type, d))
	w.apply(e, slice)
	return e
}

func (w *world) apply(e domain.Event, slice []domain.Event) {
	w.tb.Helper()
	if err := w.st.Update(backupstate.Name, e.Position, func(txn projections.Txn) error { return backupstate.Apply(txn, e) }); err != nil {
		w.tb.Fatalf("backupstate: apply %s: %v", e.Type, err)
	}
	if err := w.st.Update(backupdata.Name, e.Position, func(txn projections.Txn) error {
		return backupdata.Apply(txn, e, backupdata.Data{Slice: events(slice)})
	}); err != nil {
		w.tb.Fatalf("backupdata: apply %s: %v", e.Type, err)
	}
}

// events walks a slice held in memory, as backupdata.Apply reads one.
func events(slice []domain.Event) backupdata.Events {
	if slice == nil {
		return nil
	}
	return func(fn func(*domain.Event) error) error {
		for i := range slice {
			if err := fn(&slice[i]); err != nil {
				return err
			}
		}
		return nil
	}
}

// kms appends a KMS event of instance in.
func (w *world) kms(in domain.InstanceID, at time.Time, d domain.EventData) {
	w.tb.Helper()
	w.append(domain.KMSStream(in), in, at, d, nil)
}

// backup appends a lifecycle event of a backup instance, after checking it
// against the domain's rules where the domain decides one.
func (w *world) backup(id domain.BackupID, at time.Time, d domain.EventData) {
	w.tb.Helper()
	b := w.backups[id]
	if b == nil {
		b = &domain.Backup{}
		w.backups[id] = b
	}
	e := w.append(domain.BackupStream(id), "", at, d, nil)
	b.Apply(e, d)
}

// checkpoint takes the backup's next checkpoint at at, as the engine would:
// the slice is everything of the bound KMS stream not backed up yet.
func (w *world) checkpoint(id domain.BackupID, at time.Time, full bool) *domain.BackupCheckpointed {
	w.tb.Helper()
	b := w.backups[id]
	loc, err := b.Location(time.LoadLocation)
	if err != nil {
		w.tb.Fatal(err)
	}
	kms := w.streams[domain.KMSStream(b.KMSInstance)]
	slice := kms[b.NextRevision:]
	sum := sha256.Sum256(domain.EncodeSliceV1(slice))
	c, err := b.Checkpoint(domain.Due{At: at, Full: full}, loc, uint64(len(kms)), []domain.SlicePart{{Name: fmt.Sprintf("blob-%d", w.pos+1), Digest: sum}}, false)
	if err != nil {
		w.tb.Fatalf("checkpoint at %s: %v", at, err)
	}
	e := w.append(domain.BackupStream(id), "", at, c, slice)
	b.Apply(e, c)
	return c
}

// ref is the data reference of a backup's current generation.
func (w *world) ref(id domain.BackupID) string { return w.backups[id].DataRef() }

func (w *world) nextKeyID() domain.KeyID {
	w.ids++
	return domain.NewKeyID(uid(w.ids))
}

func (w *world) history() string {
	s := ""
	for _, l := range w.log {
		s += l + "\n"
	}
	return s
}
