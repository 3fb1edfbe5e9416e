package projections

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/audit"
)

// auditHistory is two accounts' audit records about two backups, between
// which a KMS event the audit projection ignores. Record i (from 1) of the
// log is at position i and minute i.
func auditHistory() (acme, other domain.AccountID, b1, b2 domain.BackupID, events []domain.Event) {
	acme, other = domain.NewAccountID(uid(1)), domain.NewAccountID(uid(2))
	b1, b2 = domain.NewBackupID(uid(3)), domain.NewBackupID(uid(4))
	in := domain.NewInstanceID(uid(5))
	revs := map[string]uint64{}
	add := func(a domain.AccountID, stream string, d domain.EventData) {
		n := uint64(len(events) + 1)
		events = append(events, domain.Event{ID: uid(100 + n), Stream: stream, Revision: revs[stream], Position: n,
			Type: d.EventType(), Schema: domain.SchemaVersion, OccurredAt: time.Date(2026, 5, 1, 0, int(n), 0, 0, time.UTC),
			Account: a, Data: domain.EncodeData(d)})
		revs[stream]++
	}
	audited := func(a domain.AccountID, action string, b domain.BackupID, item string) {
		add(a, domain.AuditStream(a), &domain.Audited{Action: action, Actor: string(a), Backup: b, Day: "2026-04-30",
			Target: string(in), Item: item})
	}
	audited(acme, "enable", b1, "")                                   // 1
	audited(acme, "restore-key", b1, "key_1")                         // 2
	add(acme, domain.KMSStream(in), &domain.KeyDeleted{Key: "key_1"}) // 3: ignored
	audited(other, "restore-key", b1, "key_9")                        // 4: another account
	audited(acme, "restore-secret", b2, "db")                         // 5
	audited(acme, "note", "", "")                                     // 6: about no backup
	audited(acme, "restore-secret", b1, "api")                        // 7
	return acme, other, b1, b2, events
}

func TestAuditList(t *testing.T) {
	st, err := pebblestore.OpenProjections(t.TempDir(), pebblestore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	acme, other, b1, b2, events := auditHistory()
	for _, e := range events {
		if err := st.Update(audit.Name, e.Position, func(txn projections.Txn) error { return audit.Apply(txn, e) }); err != nil {
			t.Fatalf("apply %s at %d: %v", e.Type, e.Position, err)
		}
	}
	// Applying an event again changes nothing.
	if err := st.Update(audit.Name, uint64(len(events)), func(txn projections.Txn) error { return audit.Apply(txn, events[1]) }); err != nil {
		t.Fatal(err)
	}

	at := func(min int) time.Time { return time.Date(2026, 5, 1, 0, min, 0, 0, time.UTC) }
	// list walks every page and returns the positions and actions it saw.
	list := func(t *testing.T, a domain.AccountID, b domain.BackupID, since time.Time, size int) []string {
		t.Helper()
		var out []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > len(events) {
				t.Fatal("paging does not end")
			}
			p, err := audit.List(st, a, b, since, cursor, size)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Items) > size || (p.Next != "" && len(p.Items) != size) {
				t.Fatalf("page of %d items, next %q, size %d", len(p.Items), p.Next, size)
			}
			for _, r := range p.Items {
				out = append(out, r.Action+"@"+r.At.Format("04"))
			}
			if p.Next == "" {
				return out
			}
			cursor = p.Next
		}
	}
	tests := []struct {
		name    string
		account domain.AccountID
		backup  domain.BackupID
		since   time.Time
		want    []string
	}{
		{"all", acme, "", time.Time{}, []string{"enable@01", "restore-key@02", "restore-secret@05", "note@06", "restore-secret@07"}},
		{"by backup", acme, b1, time.Time{}, []string{"enable@01", "restore-key@02", "restore-secret@07"}},
		{"other backup", acme, b2, time.Time{}, []string{"restore-secret@05"}},
		{"since (inclusive)", acme, "", at(5), []string{"restore-secret@05", "note@06", "restore-secret@07"}},
		{"by backup since", acme, b1, at(3), []string{"restore-secret@07"}},
		{"since after all", acme, "", at(8), nil},
		{"other account", other, "", time.Time{}, []string{"restore-key@04"}},
		{"other account by backup", other, b1, time.Time{}, []string{"restore-key@04"}},
		{"unknown backup", acme, domain.NewBackupID(uid(9)), time.Time{}, nil},
		{"no records", domain.NewAccountID(uid(9)), "", time.Time{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{1, 2, 3, 100} {
				if diff := cmp.Diff(tt.want, list(t, tt.account, tt.backup, tt.since, size)); diff != "" {
					t.Errorf("page size %d (-want +got):\n%s", size, diff)
				}
			}
		})
	}

	t.Run("record", func(t *testing.T) {
		p, err := audit.List(st, acme, b2, time.Time{}, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		want := []audit.Record{{Position: 5, Event: uid(105), At: at(5), Action: "restore-secret", Actor: string(acme),
			Backup: b2, Day: "2026-04-30", Target: string(domain.NewInstanceID(uid(5))), Item: "db"}}
		if diff := cmp.Diff(projections.Page[audit.Record]{Items: want}, p); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("cursor", func(t *testing.T) {
		p, err := audit.List(st, acme, "", time.Time{}, "2", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != 3 || p.Items[0].Position != 5 {
			t.Errorf("after position 2: %+v", p)
		}
		for _, bad := range []string{"x", "-1", "1.5"} {
			if _, err := audit.List(st, acme, "", time.Time{}, bad, 10); !errors.Is(err, domain.ErrInvalidArgument) {
				t.Errorf("cursor %q: %v, want ErrInvalidArgument", bad, err)
			}
		}
		if _, err := audit.List(st, acme, "", time.Time{}, "", 0); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("size 0: %v, want ErrInvalidArgument", err)
		}
	})
}

func TestAuditApplyRefusesMisplacedRecord(t *testing.T) {
	st, err := pebblestore.OpenProjections(t.TempDir(), pebblestore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	acme, other, _, _, events := auditHistory()
	e := events[0]
	e.Stream = domain.AuditStream(other) // acme's record in another account's stream
	err = st.Update(audit.Name, 1, func(txn projections.Txn) error { return audit.Apply(txn, e) })
	if !domain.IsCorruption(err) {
		t.Errorf("misplaced record: %v, want a corruption", err)
	}
	e = events[0]
	e.Data = e.Data[:len(e.Data)-2]
	err = st.Update(audit.Name, 1, func(txn projections.Txn) error { return audit.Apply(txn, e) })
	if !domain.IsCorruption(err) {
		t.Errorf("truncated record: %v, want a corruption", err)
	}
	if p, err := audit.List(st, acme, "", time.Time{}, "", 10); err != nil || len(p.Items) != 0 {
		t.Errorf("after refused events: %+v, %v", p, err)
	}
}
