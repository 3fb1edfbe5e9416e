package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"math"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// Accounts holds the account use cases: creating accounts and replacing
// their tokens (admin only), authenticating tokens, and the console's
// sessions. Accounts and their tokens are events of the "accounts" stream,
// whose expected revision makes names unique; sessions are events of each
// account's own stream. Only SHA-256 hashes of tokens and session
// references are kept.
type Accounts struct {
	Log interface {
		EventAppender
		StreamReader
		LogReader
	}
	State   projections.Reader
	Applied Waiter
	Clock   Clock
	IDs     IDSource
	// SessionClock is the wall clock of console sessions (their expiry);
	// nil uses Clock.
	SessionClock Clock
	// AdminToken is the admin's token. Empty disables the admin.
	AdminToken string

	creating keyedLocks // the accounts stream: one creation at a time in this process
}

// TokenPrefix starts every token this product issues, so that leaked tokens
// are easy to recognise and scan for.
const TokenPrefix = "kmsb_"

// NewToken draws a 256-bit random token.
func NewToken() string { return TokenPrefix + rand.Text() + rand.Text() }

// Authenticate maps a bearer token to a caller. Errors: ErrUnauthenticated
// for an empty or unknown token (the message never echoes the token).
func (a *Accounts) Authenticate(token string) (Caller, error) {
	const op = "authenticate"
	if token == "" {
		return Caller{}, domain.Errorf(domain.ErrUnauthenticated, op, "", "pass --token or set KMSBACKUP_TOKEN", "no token given")
	}
	if a.AdminToken != "" {
		want, got := sha256.Sum256([]byte(a.AdminToken)), sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(want[:], got[:]) == 1 {
			return Caller{Admin: true}, nil
		}
	}
	id, ok, err := kmsstate.AccountByToken(a.State, token)
	if err != nil {
		return Caller{}, err
	}
	if !ok {
		return Caller{}, domain.Errorf(domain.ErrUnauthenticated, op, "", "check the token, or ask the admin for a new account token", "token is not valid")
	}
	return Caller{Account: id}, nil
}

// CreateAccount creates an account (admin only) and returns it with its
// token, which is shown this once.
func (a *Accounts) CreateAccount(ctx context.Context, c Caller, name string) (*kmsstate.Account, string, error) {
	if !c.Admin {
		return nil, "", domain.Errorf(domain.ErrPermissionDenied, "create account", name, "use the admin token", "only the admin creates accounts")
	}
	token := NewToken()
	acct, err := a.create(ctx, name, token)
	return acct, token, err
}

// EnsureAccount creates the account with the given token unless an account
// of that name exists (used by --dev for the account "dev").
func (a *Accounts) EnsureAccount(ctx context.Context, name, token string) (*kmsstate.Account, error) {
	if err := a.catchUp(ctx); err != nil {
		return nil, err
	}
	if id, ok, err := kmsstate.AccountByName(a.State, name); err != nil || ok {
		if err != nil {
			return nil, err
		}
		return kmsstate.GetAccount(a.State, id)
	}
	return a.create(ctx, name, token)
}

// ListAccounts lists every account (admin only).
func (a *Accounts) ListAccounts(c Caller) ([]*kmsstate.Account, error) {
	if !c.Admin {
		return nil, domain.Errorf(domain.ErrPermissionDenied, "list accounts", "", "use the admin token", "only the admin lists accounts")
	}
	return kmsstate.ListAccounts(a.State)
}

// head waits until the read model has every event of the accounts stream
// and returns the stream's head as the revision to expect.
func (a *Accounts) head(ctx context.Context) (domain.ExpectedRevision, error) {
	last, err := a.Log.ReadStream(ctx, domain.AccountsStream, math.MaxUint64, true, 1)
	if err != nil {
		return domain.ExpectedRevision{}, err
	}
	if len(last) == 0 {
		return domain.ExpectNoStream, nil
	}
	if err := a.Applied.WaitFor(ctx, last[0].Position); err != nil {
		return domain.ExpectedRevision{}, err
	}
	return domain.ExpectRevision(last[0].Revision), nil
}

// catchUp waits until the read model has every account.
func (a *Accounts) catchUp(ctx context.Context) error {
	_, err := a.head(ctx)
	return err
}

func (a *Accounts) create(ctx context.Context, name, token string) (*kmsstate.Account, error) {
	const op = "create account"
	if err := domain.ValidateAccountName(name); err != nil {
		return nil, err
	}
	id := domain.NewAccountID(a.IDs.NewULID())
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
		if _, ok, err := kmsstate.AccountByName(a.State, name); err != nil || ok {
			if err != nil {
				return err
			}
			return domain.Errorf(domain.ErrAlreadyExists, op, name, "choose another name", "an account with this name exists")
		}
		d := &domain.AccountCreated{Account: id, Name: name, TokenHash: sha256.Sum256([]byte(token))}
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
		return nil, err
	}
	return kmsstate.GetAccount(a.State, id)
}
