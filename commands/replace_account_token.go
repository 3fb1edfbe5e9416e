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
// model has the event (AccountTokenReplaced on the account's stream, which
// the public event stream never shows, so that the accounts stream it does
// show keeps contiguous revisions). Of two replacements at once, the later
// in the log wins. Errors: ErrPermissionDenied for a caller that is not
// the admin; ErrNotFound for an unknown account; ErrUnavailable when the
// log fails. Safe for concurrent use; not idempotent (each call makes a
// new token).
func (a *Accounts) ReplaceAccountToken(ctx context.Context, c Caller, id domain.AccountID) (*kmsstate.Account, string, error) {
	const op = "replace account token"
	if !c.Admin {
		return nil, "", domain.Errorf(domain.ErrPermissionDenied, op, string(id), "use the admin token", "only the admin replaces account tokens")
	}
	if err := a.catchUp(ctx); err != nil {
		return nil, "", fmt.Errorf("%s: %w", op, err)
	}
	acct, err := kmsstate.GetAccount(a.State, id)
	if err != nil {
		return nil, "", err
	}
	token := NewToken()
	d := &domain.AccountTokenReplaced{Account: id, TokenHash: sha256.Sum256([]byte(token))}
	if err := a.appendAccountEvent(ctx, op, id, a.Clock.Now().UTC(), d); err != nil {
		return nil, "", err
	}
	return acct, token, nil
}
