package commands

import (
	"context"
	"crypto/sha256"

	"github.com/kmsbackup/kmsbackup/domain"
)

// StartSession signs an account in with its token: it records a session
// (SessionStarted on the account's stream, known to every node of a shared
// log) that lasts SessionLifetime, and returns its reference. Errors:
// ErrUnauthenticated for a token that is not valid; ErrPermissionDenied
// for the admin token (sessions are for accounts); ErrUnavailable when the
// log fails. Safe for concurrent use; each call opens a new session.
func (a *Accounts) StartSession(ctx context.Context, token string) (Session, error) {
	const op = "sign in"
	c, err := a.Authenticate(token)
	if err != nil {
		return Session{}, err
	}
	if c.Account == "" {
		return Session{}, domain.Errorf(domain.ErrPermissionDenied, op, "", "sign in with an account token; the admin token manages accounts from the command line",
			"the console is for one account at a time")
	}
	ref := newSessionRef()
	now := a.sessionNow().UTC()
	s := Session{Ref: ref, Caller: c, ExpiresAt: now.Add(SessionLifetime)}
	d := &domain.SessionStarted{Session: sessionHash(ref), TokenHash: sha256.Sum256([]byte(token)), ExpiresAt: s.ExpiresAt}
	if err := a.appendAccountEvent(ctx, op, c.Account, now, d); err != nil {
		return Session{}, err
	}
	return s, nil
}
