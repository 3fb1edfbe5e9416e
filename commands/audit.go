package commands

import (
	"context"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/audit"
)

// Audit records and lists an account's audit records: who did what, to
// which object, from which backup and day. Records are Audited events of
// the account's stream audit-<account>, appended whatever the stream holds
// (they decide nothing, so there is no race to lose), and read back through
// the audit read model.
type Audit struct {
	Log     EventAppender
	State   projections.Reader // the audit read model
	Applied Waiter             // the projector that maintains State; Record waits for it when set
	Clock   Clock
	IDs     IDSource
}

// AuditEvent builds the event of an audit record of account, for the
// account's audit stream, at time at. The actor is the caller, whatever
// a.Actor says; a itself is not modified.
func AuditEvent(c Caller, at time.Time, ids IDSource, account domain.AccountID, a *domain.Audited) domain.Event {
	d := *a
	d.Actor = c.String()
	return domain.Event{ID: ids.NewULID(), Stream: domain.AuditStream(account), Type: d.EventType(),
		Schema: domain.SchemaVersion, OccurredAt: at.UTC(), Account: account, Data: domain.EncodeData(&d)}
}

// Record appends an audit record of account, made by c, at the clock's
// time. It returns once the record is durable in the log and, when Applied
// is set, shown by the read model. Not idempotent: a retried call records
// again.
//
// Errors: domain.ErrInvalidArgument for a malformed account or an empty
// action; the log's errors.
func (s *Audit) Record(ctx context.Context, c Caller, account domain.AccountID, a *domain.Audited) error {
	const op = "record audit"
	if _, err := domain.ParseAccountID(string(account)); err != nil {
		return err
	}
	if a == nil || a.Action == "" {
		return domain.Invalid(op, "an audit record needs an action")
	}
	e := s.event(c, account, a)
	res, err := s.Log.Append(ctx, e.Stream, domain.ExpectAny, []domain.Event{e})
	if err != nil || s.Applied == nil {
		return err
	}
	return s.Applied.WaitFor(ctx, res.LastPosition)
}

// event is the event of an audit record of account made by c, now: what
// Record appends, and a restore appends with each batch.
func (s *Audit) event(c Caller, account domain.AccountID, a *domain.Audited) domain.Event {
	return AuditEvent(c, s.Clock.Now(), s.IDs, account, a)
}

// ListAudit lists the caller's account's audit records in log order: all of
// them, or those about one backup instance, at or after since (zero: all).
// size 0 is the default page size.
//
// Errors: domain.ErrPermissionDenied for the admin; domain.ErrInvalidArgument
// for a malformed backup ID, page size or page token; domain.ErrCorrupt for a
// damaged record.
func (s *Audit) ListAudit(c Caller, backup domain.BackupID, since time.Time, token string, size int) (projections.Page[audit.Record], error) {
	const op = "list audit records"
	if err := requireAccount(c, op); err != nil {
		return projections.Page[audit.Record]{}, err
	}
	if backup != "" {
		if _, err := domain.ParseBackupID(string(backup)); err != nil {
			return projections.Page[audit.Record]{}, err
		}
	}
	n, err := pageSize(size)
	if err != nil {
		return projections.Page[audit.Record]{}, err
	}
	return pageOf(domain.PageScope("audit", string(c.Account), string(backup), since.UTC().Format(time.RFC3339Nano)), token, func(cursor string) (projections.Page[audit.Record], error) {
		return audit.List(s.State, c.Account, backup, since, cursor, n)
	})
}
