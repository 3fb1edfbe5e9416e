package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// SessionLifetime is how long a console session lasts from its sign-in.
const SessionLifetime = 12 * time.Hour

// SessionPrefix starts every session reference, so that a leaked one is
// easy to recognise; a session reference is never an API token.
const SessionPrefix = "kmss_"

// sessionCatchUp bounds how long resolving a session waits for this node's
// read model to reach the log's head when it does not know the session:
// another node may have opened it a moment ago.
const sessionCatchUp = 2 * time.Second

// Session is a console session as its sign-in returns it. Ref is the
// browser's cookie: 256 random bits, shown this once; the log and the read
// model keep only its SHA-256.
type Session struct {
	Ref       string
	Caller    Caller
	ExpiresAt time.Time
}

// newSessionRef draws a 256-bit random session reference.
func newSessionRef() string { return SessionPrefix + rand.Text() + rand.Text() }

// sessionHash is what the log and the read model keep of a reference.
func sessionHash(ref string) [32]byte { return sha256.Sum256([]byte(ref)) }

// sessionNow is the wall clock of sessions: a manual --dev clock does not
// move their expiry.
func (a *Accounts) sessionNow() time.Time {
	if a.SessionClock != nil {
		return a.SessionClock.Now()
	}
	return a.Clock.Now()
}

// SessionCaller maps a session reference to its account. A reference this
// node does not know makes it catch up with the log first (for up to
// sessionCatchUp). Errors: ErrUnauthenticated for a reference that is not
// a live session: unknown, signed out, expired, or opened with a token
// that was replaced since. Safe for concurrent use.
func (a *Accounts) SessionCaller(ctx context.Context, ref string) (Caller, error) {
	const op = "resume session"
	ended := func(why string) (Caller, error) {
		return Caller{}, domain.Errorf(domain.ErrUnauthenticated, op, "", "sign in again", "%s", why)
	}
	if !strings.HasPrefix(ref, SessionPrefix) {
		return ended("not a session")
	}
	h := sessionHash(ref)
	s, ok, err := kmsstate.GetSession(a.State, h)
	if err == nil && !ok {
		if err = a.catchUpLog(ctx); err == nil {
			s, ok, err = kmsstate.GetSession(a.State, h)
		}
	}
	switch {
	case err != nil:
		return Caller{}, fmt.Errorf("%s: %w", op, err)
	case !ok:
		return ended("the session has ended")
	case !a.sessionNow().Before(s.ExpiresAt):
		return ended("the session has expired")
	}
	owner, ok, err := kmsstate.AccountByTokenHash(a.State, s.TokenHash)
	if err != nil {
		return Caller{}, fmt.Errorf("%s: %w", op, err)
	}
	if !ok || owner != s.Account {
		return ended("the account's token was replaced")
	}
	return Caller{Account: s.Account}, nil
}

// appendAccountEvent appends d to the account's stream and waits until the
// read model shows it. Its events (sessions, token replacements) decide
// nothing against each other, so the append expects any revision.
func (a *Accounts) appendAccountEvent(ctx context.Context, op string, acct domain.AccountID, at time.Time, d domain.EventData) error {
	stream := domain.AccountStream(acct)
	e := domain.Event{ID: a.IDs.NewULID(), Stream: stream, Type: d.EventType(), Schema: domain.SchemaVersion,
		OccurredAt: at, Account: acct, Data: domain.EncodeData(d)}
	res, err := a.Log.Append(ctx, stream, domain.ExpectAny, []domain.Event{e})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := a.Applied.WaitFor(ctx, res.LastPosition); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// catchUpLog waits, for up to sessionCatchUp, until the read model has
// every event the log holds now.
func (a *Accounts) catchUpLog(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, sessionCatchUp)
	defer cancel()
	head, err := a.Log.Head(ctx)
	if err != nil {
		return err
	}
	return a.Applied.WaitFor(ctx, head)
}
