package audit

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// recordVersion is the first byte of every record, so the layout can
// evolve: 1 for a record without a batch's items, 2 for one with them
// (the lists follow the other fields).
const (
	recordVersion      = 1
	recordVersionBatch = 2
)

// Record is one audit record of an account.
type Record struct {
	Position uint64         // the Audited event's log position: its place in the listing
	Event    domain.EventID // the Audited event
	At       time.Time      // when (the event's OccurredAt)
	Action   string         // restore-key, restore-secret, reset, enable, ...
	Actor    string         // an account ID, or "admin"
	Backup   domain.BackupID
	Day      domain.Day
	Target   string   // the instance or object acted on
	Item     string   // the key ID or secret name, when one
	Keys     []string // a restore's batch: the keys it wrote
	Secrets  []string // and the secrets
}

// encodeRecord writes r without its position, which is in the key.
func encodeRecord(r *Record) []byte {
	w := wire.Writer{B: make([]byte, 0, 160)}
	batch := len(r.Keys) > 0 || len(r.Secrets) > 0
	if batch {
		w.Uvarint(recordVersionBatch)
	} else {
		w.Uvarint(recordVersion)
	}
	w.Fixed(r.Event[:])
	w.Time(r.At)
	w.String(r.Action)
	w.String(r.Actor)
	w.String(string(r.Backup))
	w.String(string(r.Day))
	w.String(r.Target)
	w.String(r.Item)
	if batch {
		for _, l := range [][]string{r.Keys, r.Secrets} {
			w.Uvarint(uint64(len(l)))
			for _, x := range l {
				w.String(x)
			}
		}
	}
	return w.B
}

func decodeRecord(pos uint64, v []byte) (Record, error) {
	r := wire.Reader{B: v}
	ver := r.Uvarint()
	if r.Err() == nil && ver != recordVersion && ver != recordVersionBatch {
		return Record{}, domain.Corruption("audit record at position %d: unknown version %d", pos, ver)
	}
	rec := Record{Position: pos}
	r.Fixed(rec.Event[:])
	rec.At, rec.Action, rec.Actor = r.Time(), r.String(), r.String()
	rec.Backup, rec.Day = domain.BackupID(r.String()), domain.Day(r.String())
	rec.Target, rec.Item = r.String(), r.String()
	if ver == recordVersionBatch {
		for _, l := range []*[]string{&rec.Keys, &rec.Secrets} {
			*l = make([]string, r.Count())
			for i := range *l {
				(*l)[i] = r.String()
			}
		}
	}
	if err := r.Done(); err != nil {
		return Record{}, domain.Corruption("audit record at position %d: %v", pos, err)
	}
	return rec, nil
}
