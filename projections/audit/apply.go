package audit

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Name is the projection's name in the projection store.
const Name = "audit"

// Apply applies one event of the log to the read model: an Audited event
// becomes a record of its account at its log position (and a copy under
// its backup, when it names one); every other event is ignored, so it
// can follow the whole log. Writing the same event again writes the same
// keys, so Apply is idempotent; events must carry their log position. Apply
// the events of the log in order, one at a time: it is not safe for
// concurrent use on one store.
//
// Errors: domain.ErrCorrupt for an undecodable Audited event or one outside
// its account's audit stream; the Txn's errors.
func Apply(txn projections.Txn, e domain.Event) error {
	if e.Type != domain.TypeAudited {
		return nil
	}
	d, err := e.Decode()
	if err != nil {
		return err
	}
	a, ok := d.(*domain.Audited)
	if !ok {
		return domain.Corruption("event %s at position %d: %s decodes to %T", e.ID, e.Position, e.Type, d)
	}
	if e.Account == "" || e.Stream != domain.AuditStream(e.Account) {
		return domain.Corruption("event %s at position %d: %s of account %q in stream %q", e.ID, e.Position, e.Type, e.Account, e.Stream)
	}
	rec := &Record{Event: e.ID, At: e.OccurredAt, Action: a.Action, Actor: a.Actor, Backup: a.Backup,
		Day: a.Day, Target: a.Target, Item: a.Item, Keys: a.Keys, Secrets: a.Secrets}
	v := encodeRecord(rec)
	if err := txn.Set(recordKey(e.Account, e.Position), v); err != nil {
		return err
	}
	if a.Backup == "" {
		return nil
	}
	return txn.Set(backupKey(e.Account, a.Backup, e.Position), v)
}
