package commands

import (
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// ReplaceAccountToken gives an account a new API token (admin only) and
// returns it, shown this once: the old token stops authenticating, and
// every console session opened with it ends, on every node once its read
// model has the event (AccountTokenReplaced on the accounts stream). Errors:
// ErrPermissionDenied for a caller that is not the admin; ErrNotFound for
// an unknown account; ErrUnavailable when the log fails or keeps moving.
// Safe for concurrent use; not idempotent (each call makes a new token).
func (a *Accounts) ReplaceAccountToken(ctx context.Context, c Caller, id domain.AccountID) (*kmsstate.Account, string, error) {
	const op = "replace account token"
	if !c.Admin {
		return nil, "", domain.Errorf(domain.ErrPermissionDenied, op, string(id), "use the admin token", "only the admin replaces account tokens")
	}
	token := NewToken()
	err := decide(ctx, op, nil, func() error {
		unlock, err := a.creating.lock(ctx, domain.AccountsStream)
		if err != nil {
			return err
		}
		defer unlock()
		expected, err := a.head(ctx)
		if err != nil {
			return err
		}
		if _, err := kmsstate.GetAccount(a.State, id); err != nil {
			return err
		}
		d := &domain.AccountTokenReplaced{Account: id, TokenHash: sha256.Sum256([]byte(token))}
		e := domain.Event{ID: a.IDs.NewULID(), Stream: domain.AccountsStream, Type: d.EventType(),
			Schema: domain.SchemaVersion, OccurredAt: a.Clock.Now().UTC(), Account: id, Data: domain.EncodeData(d)}
		res, err := a.Log.Append(ctx, domain.AccountsStream, expected, []domain.Event{e})
		if err != nil {
			if isRace(err) {
				return err
			}
			return fmt.Errorf("%s: %w", op, err)
		}
		return a.Applied.WaitFor(ctx, res.LastPosition)
	})
	if err != nil {
		return nil, "", err
	}
	acct, err := kmsstate.GetAccount(a.State, id)
	return acct, token, err
}
