package projections

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/audit"
)

type auditClock struct{ t time.Time }

func (c auditClock) Now() time.Time { return c.t }

// auditIDs draws ULIDs 1, 2, 3, ...
type auditIDs struct{ n byte }

func (s *auditIDs) NewULID() ulid.ULID {
	s.n++
	var u ulid.ULID
	_ = u.SetTime(1700000000000)
	u[15] = s.n
	return u
}

// TestAuditRecordAndList drives the audit use case on the real store: the
// records' envelope, the actor set from the caller, the filters and paging.
func TestAuditRecordAndList(t *testing.T) {
	ctx := t.Context()
	acme, other := domain.NewAccountID(ulid.Make()), domain.NewAccountID(ulid.Make())
	bkp := domain.NewBackupID(ulid.Make())
	at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.FixedZone("CST", 8*3600))
	// The real stores: the log and the read models.
	log, err := pebblestore.Open(filepath.Join(t.TempDir(), "db"), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	state, err := pebblestore.OpenProjections(filepath.Join(t.TempDir(), "projections"), pebblestore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	s := &commands.Audit{Log: log, State: state, Clock: auditClock{at}, IDs: &auditIDs{}}

	in := &domain.Audited{Action: "restore-key", Actor: "forged", Backup: bkp, Day: "2026-04-30", Target: "kms_x", Item: "key_x"}
	for _, r := range []struct {
		c commands.Caller
		a domain.AccountID
	}{{commands.Caller{Account: acme}, acme}, {commands.Caller{Admin: true}, acme}, {commands.Caller{Account: other}, other}} {
		if err := s.Record(ctx, r.c, r.a, in); err != nil {
			t.Fatal(err)
		}
	}
	if in.Actor != "forged" {
		t.Error("Record modified its argument")
	}
	if err := s.Record(ctx, commands.Caller{Account: acme}, "", in); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("no account: %v, want ErrInvalidArgument", err)
	}
	if err := s.Record(ctx, commands.Caller{Account: acme}, acme, &domain.Audited{}); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("no action: %v, want ErrInvalidArgument", err)
	}

	events, err := log.ReadAll(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 {
		t.Fatalf("%d events in the log, want 3", len(events))
	}
	e := events[1]
	if e.Stream != domain.AuditStream(acme) || e.Revision != 1 || e.Account != acme || !e.OccurredAt.Equal(at) ||
		e.OccurredAt.Location() != time.UTC || e.Region != "" || e.Instance != "" {
		t.Errorf("event envelope: %+v", e)
	}
	for _, e := range events {
		if err := state.Update(audit.Name, e.Position, func(txn projections.Txn) error { return audit.Apply(txn, e) }); err != nil {
			t.Fatal(err)
		}
	}

	page, err := s.ListAudit(commands.Caller{Account: acme}, "", time.Time{}, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var actors []string
	for _, r := range page.Items {
		actors = append(actors, r.Actor)
	}
	if diff := cmp.Diff([]string{string(acme), "admin"}, actors); diff != "" || page.Next != "" {
		t.Errorf("acme's records, actors (-want +got):\n%s (next %q)", diff, page.Next)
	}
	page, err = s.ListAudit(commands.Caller{Account: acme}, bkp, time.Time{}, "", 1)
	if err != nil || len(page.Items) != 1 || page.Next == "" {
		t.Errorf("first page of one: %+v, %v", page, err)
	}
	if _, err := s.ListAudit(commands.Caller{Admin: true}, "", time.Time{}, "", 0); !errors.Is(err, domain.ErrPermissionDenied) {
		t.Errorf("admin: %v, want ErrPermissionDenied", err)
	}
	if _, err := s.ListAudit(commands.Caller{Account: acme}, "nope", time.Time{}, "", 0); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("bad backup ID: %v, want ErrInvalidArgument", err)
	}
	if _, err := s.ListAudit(commands.Caller{Account: acme}, "", time.Time{}, "", 5000); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("page size 5000: %v, want ErrInvalidArgument", err)
	}
}
