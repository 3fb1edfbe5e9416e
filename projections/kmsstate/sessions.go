package kmsstate

import (
	"bytes"
	"fmt"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Session is a console session as the read model keeps it: live until
// ExpiresAt, unless it was ended or its account's token replaced.
type Session struct {
	Account   domain.AccountID
	TokenHash [32]byte // of the account token it was opened with
	ExpiresAt time.Time
}

func sessionKey(hash [32]byte) []byte { return k("acct/s/", string(hash[:])) }
func accountSessionKey(a domain.AccountID, hash [32]byte) []byte {
	return k("acct/as/", string(a), string(hash[:]))
}

func encodeSession(s *Session) []byte {
	w := wire.Writer{B: make([]byte, 0, 96)}
	header(&w)
	w.String(string(s.Account))
	w.Fixed(s.TokenHash[:])
	w.Time(s.ExpiresAt)
	return w.B
}

func decodeSession(b []byte) (*Session, error) {
	r := wire.Reader{B: b}
	if err := checkHeader(&r, "session"); err != nil {
		return nil, err
	}
	s := &Session{Account: domain.AccountID(r.String())}
	r.Fixed(s.TokenHash[:])
	s.ExpiresAt = r.Time()
	return s, done(&r, "session")
}

// GetSession returns the session whose reference hashes to hash, if the
// read model holds it (it may have expired since: compare ExpiresAt).
func GetSession(r projections.Reader, hash [32]byte) (*Session, bool, error) {
	v, ok, err := r.Get(sessionKey(hash))
	if err != nil || !ok {
		return nil, false, err
	}
	s, err := decodeSession(v)
	return s, err == nil, err
}

// AccountByTokenHash returns the account whose current token hashes to
// hash, if any.
func AccountByTokenHash(r projections.Reader, hash [32]byte) (domain.AccountID, bool, error) {
	v, ok, err := r.Get(tokenKey(hash))
	return domain.AccountID(v), ok, err
}

// startSession keeps a session, and forgets the account's sessions that
// expired by the event's time (so that the read model holds about as many
// sessions as are live).
func startSession(txn projections.Txn, e domain.Event, d *domain.SessionStarted) error {
	if e.Account == "" {
		return domain.Corruption("event %s at position %d: %s without an account", e.ID, e.Position, e.Type)
	}
	err := eachSession(txn, e.Account, func(hash [32]byte, expires time.Time) error {
		if expires.After(e.OccurredAt) {
			return nil
		}
		return forgetSession(txn, e.Account, hash)
	})
	if err != nil {
		return err
	}
	s := &Session{Account: e.Account, TokenHash: d.TokenHash, ExpiresAt: d.ExpiresAt}
	if err := txn.Set(sessionKey(d.Session), encodeSession(s)); err != nil {
		return err
	}
	w := wire.Writer{}
	w.Time(d.ExpiresAt)
	return txn.Set(accountSessionKey(e.Account, d.Session), w.B)
}

// endSession forgets a session (one already forgotten is left alone).
func endSession(txn projections.Txn, e domain.Event, d *domain.SessionEnded) error {
	return forgetSession(txn, e.Account, d.Session)
}

// replaceToken makes the new token the account's, forgets the old one and
// every session opened with it.
func replaceToken(txn projections.Txn, e domain.Event, d *domain.AccountTokenReplaced) error {
	if _, err := GetAccount(txn, d.Account); err != nil {
		return fmt.Errorf("apply %s at position %d: %w", e.Type, e.Position, err)
	}
	id := []byte(d.Account)
	var old [][]byte
	err := txn.Scan(k("acct/t/"), nil, func(key, v []byte) (bool, error) {
		if bytes.Equal(v, id) {
			old = append(old, bytes.Clone(key))
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, key := range old {
		if err := txn.Delete(key); err != nil {
			return err
		}
	}
	err = eachSession(txn, d.Account, func(hash [32]byte, _ time.Time) error { return forgetSession(txn, d.Account, hash) })
	if err != nil {
		return err
	}
	return txn.Set(tokenKey(d.TokenHash), id)
}

func forgetSession(txn projections.Txn, a domain.AccountID, hash [32]byte) error {
	if err := txn.Delete(sessionKey(hash)); err != nil {
		return err
	}
	return txn.Delete(accountSessionKey(a, hash))
}

// eachSession calls fn for each session of account a the read model
// holds, with its expiry; fn may delete it.
func eachSession(txn projections.Txn, a domain.AccountID, fn func(hash [32]byte, expires time.Time) error) error {
	p := prefix("acct/as/", string(a))
	type entry struct {
		hash    [32]byte
		expires time.Time
	}
	var all []entry
	err := txn.Scan(p, nil, func(key, v []byte) (bool, error) {
		var en entry
		if copy(en.hash[:], key[len(p):]) != len(en.hash) || len(key) != len(p)+len(en.hash) {
			return false, domain.Corruption("session index key of account %s: bad length %d", a, len(key))
		}
		r := wire.Reader{B: v}
		en.expires = r.Time()
		if err := r.Done(); err != nil {
			return false, domain.Corruption("session index of account %s: %v", a, err)
		}
		all = append(all, en)
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, en := range all {
		if err := fn(en.hash, en.expires); err != nil {
			return err
		}
	}
	return nil
}
