package projections

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/clock"
	idsource "github.com/kmsbackup/kmsbackup/adapters/ids"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
	"github.com/kmsbackup/kmsbackup/projections/publicevent"
)

// sessionWorld is the accounts use cases on the real stores, with the
// kms-state projector running and a manual wall clock for sessions.
type sessionWorld struct {
	t     *testing.T
	log   *pebblestore.Store
	dir   string
	clock *clock.Manual
	acc   *commands.Accounts
	stop  func()
}

const sessionAdminToken = "admin-token-0123456789"

func newSessionWorld(t *testing.T) *sessionWorld {
	t.Helper()
	log, err := pebblestore.Open(filepath.Join(t.TempDir(), "db"), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	w := &sessionWorld{t: t, log: log, clock: clock.NewManual(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))}
	w.open()
	t.Cleanup(func() { w.stop() })
	return w
}

// open builds a fresh read model from the log, as a new node (or a node
// whose projections were lost) does.
func (w *sessionWorld) open() {
	w.t.Helper()
	w.dir = filepath.Join(w.t.TempDir(), "projections")
	state, err := pebblestore.OpenProjections(w.dir, pebblestore.Options{}, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	p := &commands.Projector{Name: kmsstate.Name, Log: w.log, Store: state, Apply: kmsstate.Apply}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	w.stop = func() { cancel(); <-done; state.Close() }
	w.acc = &commands.Accounts{Log: w.log, State: state, Applied: p, Clock: w.clock, IDs: idsource.Random{Clock: w.clock},
		AdminToken: sessionAdminToken, SessionClock: w.clock}
}

func (w *sessionWorld) events() []domain.Event {
	w.t.Helper()
	evs, err := w.log.ReadAll(w.t.Context(), 0, 1000)
	if err != nil {
		w.t.Fatal(err)
	}
	return evs
}

func wantKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: %v, want %v", what, err, kind)
	}
}

// TestSessions: a sign-in records a session in the log, of which only the
// hash of its reference is kept; it is known to a read model rebuilt from
// the log; it ends by sign-out (once), by expiry after 12 hours of wall
// clock, and by the replacement of the account's token, even when its
// sign-in raced the replacement. The admin token opens no session, and
// neither a session reference nor an account token passes for the other.
func TestSessions(t *testing.T) {
	ctx := t.Context()
	w := newSessionWorld(t)
	token := commands.NewToken()
	acct, err := w.acc.EnsureAccount(ctx, "acme", token)
	if err != nil {
		t.Fatal(err)
	}
	otherToken := commands.NewToken()
	if _, err := w.acc.EnsureAccount(ctx, "other", otherToken); err != nil {
		t.Fatal(err)
	}

	s, err := w.acc.StartSession(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Ref, commands.SessionPrefix) || len(s.Ref) < len(commands.SessionPrefix)+52 || s.Caller.Account != acct.ID ||
		!s.ExpiresAt.Equal(w.clock.Now().Add(12*time.Hour)) {
		t.Fatalf("session %q of %s until %s", s.Ref[:8], s.Caller.Account, s.ExpiresAt)
	}
	for _, e := range w.events() {
		if bytes.Contains(e.Data, []byte(s.Ref)) || bytes.Contains(e.Data, []byte(token)) {
			t.Fatalf("event %s holds the session reference or the token", e.Type)
		}
	}
	last := w.events()[len(w.events())-1]
	if last.Type != domain.TypeSessionStarted || last.Stream != domain.AccountStream(acct.ID) || last.Account != acct.ID {
		t.Fatalf("the sign-in appended %s to %s", last.Type, last.Stream)
	}
	if c, err := w.acc.SessionCaller(ctx, s.Ref); err != nil || c != (commands.Caller{Account: acct.ID}) {
		t.Fatalf("SessionCaller: %+v, %v", c, err)
	}
	if _, err := w.acc.Authenticate(s.Ref); !errors.Is(err, domain.ErrUnauthenticated) {
		t.Fatalf("a session reference as an API token: %v", err)
	}
	_, err = w.acc.SessionCaller(ctx, token)
	wantKind(t, "an account token as a session", err, domain.ErrUnauthenticated)
	_, err = w.acc.SessionCaller(ctx, commands.SessionPrefix+"AAAA")
	wantKind(t, "an unknown session", err, domain.ErrUnauthenticated)
	_, err = w.acc.StartSession(ctx, sessionAdminToken)
	wantKind(t, "a session of the admin", err, domain.ErrPermissionDenied)
	_, err = w.acc.StartSession(ctx, "kmsb_wrong")
	wantKind(t, "a session of a wrong token", err, domain.ErrUnauthenticated)

	// A read model rebuilt from the log knows it: so does every node.
	w.stop()
	w.open()
	if _, err := w.acc.SessionCaller(ctx, s.Ref); err != nil {
		t.Fatalf("a rebuilt read model: %v", err)
	}

	// Sign-out ends it; a second sign-out appends nothing.
	if err := w.acc.EndSession(ctx, s.Ref); err != nil {
		t.Fatal(err)
	}
	n := len(w.events())
	if err := w.acc.EndSession(ctx, s.Ref); err != nil || len(w.events()) != n {
		t.Fatalf("a second sign-out: %v, %d events appended", err, len(w.events())-n)
	}
	_, err = w.acc.SessionCaller(ctx, s.Ref)
	wantKind(t, "a signed-out session", err, domain.ErrUnauthenticated)

	// Twelve hours of wall clock end a session; the next sign-in of the
	// account forgets it.
	s2, err := w.acc.StartSession(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(12*time.Hour - time.Second)
	if _, err := w.acc.SessionCaller(ctx, s2.Ref); err != nil {
		t.Fatalf("a second before it expires: %v", err)
	}
	w.clock.Advance(time.Second)
	_, err = w.acc.SessionCaller(ctx, s2.Ref)
	wantKind(t, "an expired session", err, domain.ErrUnauthenticated)
	n = len(w.events())
	if err := w.acc.EndSession(ctx, s2.Ref); err != nil || len(w.events()) != n {
		t.Fatalf("signing out an expired session: %v, %d events appended", err, len(w.events())-n)
	}
	s3, err := w.acc.StartSession(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if _, kept, err := kmsstate.GetSession(w.acc.State, sha256.Sum256([]byte(s2.Ref))); kept || err != nil {
		t.Fatalf("an expired session is still in the read model after the next sign-in (%v)", err)
	}

	// Replacing the token ends the account's sessions, not the others'.
	theirs, err := w.acc.StartSession(ctx, otherToken)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = w.acc.ReplaceAccountToken(ctx, commands.Caller{Account: acct.ID}, acct.ID)
	wantKind(t, "an account replacing its token", err, domain.ErrPermissionDenied)
	_, _, err = w.acc.ReplaceAccountToken(ctx, commands.Caller{Admin: true}, "acct_nope")
	wantKind(t, "an unknown account", err, domain.ErrNotFound)
	_, newToken, err := w.acc.ReplaceAccountToken(ctx, commands.Caller{Admin: true}, acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.acc.SessionCaller(ctx, s3.Ref)
	wantKind(t, "a session of the replaced token", err, domain.ErrUnauthenticated)
	if _, err := w.acc.SessionCaller(ctx, theirs.Ref); err != nil {
		t.Fatalf("another account's session: %v", err)
	}
	_, err = w.acc.Authenticate(token)
	wantKind(t, "the replaced token", err, domain.ErrUnauthenticated)
	if c, err := w.acc.Authenticate(newToken); err != nil || c.Account != acct.ID {
		t.Fatalf("the new token: %+v, %v", c, err)
	}

	// A sign-in that checked the old token just before the replacement,
	// and recorded its session just after, opens nothing.
	late := &domain.SessionStarted{Session: sha256.Sum256([]byte(commands.SessionPrefix + "late")),
		TokenHash: sha256.Sum256([]byte(token)), ExpiresAt: w.clock.Now().Add(time.Hour)}
	ev := domain.Event{ID: idsource.Random{Clock: w.clock}.NewULID(), Stream: domain.AccountStream(acct.ID), Type: late.EventType(),
		Schema: domain.SchemaVersion, OccurredAt: w.clock.Now(), Account: acct.ID, Data: domain.EncodeData(late)}
	if _, err := w.log.Append(ctx, ev.Stream, domain.ExpectAny, []domain.Event{ev}); err != nil {
		t.Fatal(err)
	}
	_, err = w.acc.SessionCaller(ctx, commands.SessionPrefix+"late") // catches up with the log first
	if !errors.Is(err, domain.ErrUnauthenticated) || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("a session recorded after its token was replaced: %v", err)
	}

	// Sessions and token replacements are on the account's stream, which
	// the public event stream never shows: the streams it shows keep
	// contiguous revisions.
	for _, e := range w.events() {
		_, err := publicevent.FromEvent(e)
		private := e.Stream == domain.AccountStream(e.Account)
		if private != errors.Is(err, publicevent.ErrNoPublicForm) {
			t.Errorf("%s on stream %s: public form error %v", e.Type, e.Stream, err)
		}
	}
}
