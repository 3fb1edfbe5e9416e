package domain

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// Types of the events of an account's token and of its console sessions,
// on the account's own stream (AccountStream). None of them has a public
// form, and nothing else is on that stream, so the public event stream
// never shows a gap in a stream's revisions.
const (
	TypeAccountTokenReplaced = "AccountTokenReplaced"
	TypeSessionStarted       = "SessionStarted"
	TypeSessionEnded         = "SessionEnded"
)

// AccountTokenReplaced records that an account's API token was replaced:
// the old one no longer authenticates, and the sessions opened with it
// end. Only a hash of the new token is kept.
type AccountTokenReplaced struct {
	Account   AccountID
	TokenHash [32]byte
}

// SessionStarted records a console session of the event's account: only
// the SHA-256 of its reference (the browser's cookie) is kept, with the
// hash of the account token it was opened with (so that it ends when the
// token is replaced) and when it expires.
type SessionStarted struct {
	Session   [32]byte
	TokenHash [32]byte
	ExpiresAt time.Time
}

// SessionEnded records that a console session was ended before it
// expired (signed out).
type SessionEnded struct {
	Session [32]byte
}

func (AccountTokenReplaced) EventType() string { return TypeAccountTokenReplaced }
func (SessionStarted) EventType() string       { return TypeSessionStarted }
func (SessionEnded) EventType() string         { return TypeSessionEnded }

func (e *AccountTokenReplaced) encode(w *wire.Writer) {
	w.String(string(e.Account))
	w.Fixed(e.TokenHash[:])
}
func (e *AccountTokenReplaced) decode(r *wire.Reader) {
	e.Account = AccountID(r.String())
	r.Fixed(e.TokenHash[:])
}

func (e *SessionStarted) encode(w *wire.Writer) {
	w.Fixed(e.Session[:])
	w.Fixed(e.TokenHash[:])
	w.Time(e.ExpiresAt)
}
func (e *SessionStarted) decode(r *wire.Reader) {
	r.Fixed(e.Session[:])
	r.Fixed(e.TokenHash[:])
	e.ExpiresAt = r.Time()
}

func (e *SessionEnded) encode(w *wire.Writer) { w.Fixed(e.Session[:]) }
func (e *SessionEnded) decode(r *wire.Reader) { r.Fixed(e.Session[:]) }

// sessionData returns an empty payload of the account and session types,
// or nil.
func sessionData(typ string) EventData {
	switch typ {
	case TypeAccountTokenReplaced:
		return &AccountTokenReplaced{}
	case TypeSessionStarted:
		return &SessionStarted{}
	case TypeSessionEnded:
		return &SessionEnded{}
	}
	return nil
}
