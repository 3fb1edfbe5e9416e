package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// EndSession signs a session out, on every node (SessionEnded on the
// account's stream). A reference that is not a live session is left
// alone. Errors: ErrUnavailable when the log fails. Safe for concurrent
// use; idempotent.
func (a *Accounts) EndSession(ctx context.Context, ref string) error {
	const op = "sign out"
	if !strings.HasPrefix(ref, SessionPrefix) {
		return nil
	}
	h := sessionHash(ref)
	s, ok, err := kmsstate.GetSession(a.State, h)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	now := a.sessionNow().UTC()
	if !ok || !now.Before(s.ExpiresAt) {
		return nil
	}
	return a.appendAccountEvent(ctx, op, s.Account, now, &domain.SessionEnded{Session: h})
}
