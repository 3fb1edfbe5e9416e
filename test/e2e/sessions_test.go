package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// signIn signs w in with token and keeps the session cookie.
func (w *web) signIn(token string) string {
	w.t.Helper()
	resp, body := w.do("POST", "/signin", url.Values{"token": {token}})
	if resp.StatusCode != http.StatusSeeOther {
		w.t.Fatalf("sign in: %d\n%s", resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "kmsbackup_session" {
			w.cookie = c.Value
			return c.Value
		}
	}
	w.t.Fatal("sign in set no session cookie")
	return ""
}

// signedIn reports whether w's cookie opens the backup list.
func (w *web) signedIn() bool {
	w.t.Helper()
	resp, body := w.do("GET", "/backups", nil)
	switch {
	case resp.StatusCode == http.StatusOK:
		return true
	case resp.StatusCode == http.StatusSeeOther && strings.HasPrefix(resp.Header.Get("Location"), "/signin"):
		return false
	}
	w.t.Fatalf("GET /backups: %d\n%s", resp.StatusCode, body)
	return false
}

// until polls cond until it holds, for at most 30 seconds (the other node
// applies the event it waits for within moments).
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 seconds, still not: %s", what)
		}
	}
}

// TestConsoleSessionsEnd: the session cookie is a reference, not the
// account's token: it does not authenticate the API; it survives a
// restart; signing out ends it on the server, so a copy of the cookie
// stops working too; replacing the account's token ends every session
// opened with the old one.
func TestConsoleSessionsEnd(t *testing.T) {
	s := StartServer(t, "")
	tok := s.DevTok
	w := newWeb(t, s)
	cookie := w.signIn(tok)
	if cookie == tok || strings.Contains(cookie, tok) {
		t.Fatal("the session cookie holds the account token")
	}
	if !w.signedIn() {
		t.Fatal("a fresh session does not open the backup list")
	}
	if resp, _ := apiStatus(t, s, "Bearer "+cookie); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the session cookie as an API token: %d, want 401", resp.StatusCode)
	}

	// A restart keeps sessions (they are in the log).
	s.Restart()
	w.base = "http://" + s.Addr
	if !w.signedIn() {
		t.Fatal("the session did not survive a restart")
	}

	// Signing out ends the session for every copy of the cookie.
	copied := newWeb(t, s)
	copied.cookie = cookie
	if resp, _ := w.do("POST", "/signout", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	if copied.signedIn() {
		t.Fatal("a copy of the cookie still works after signing out")
	}

	// Replacing the account's token ends its sessions; the old token
	// stops working, the new one works.
	w.signIn(tok)
	other := newWeb(t, s)
	other.signIn(tok)
	acct := str(t, s.MustJSON(tok, "whoami"), "account")
	newTok := str(t, s.MustJSON(AdminToken, "account", "replace-token", acct), "token")
	if newTok == tok || !strings.HasPrefix(newTok, "kmsb_") {
		t.Fatalf("the new token %q", newTok)
	}
	if w.signedIn() || other.signedIn() {
		t.Fatal("a session opened with the replaced token still works")
	}
	s.MustFail(tok, 7, []string{"not valid"}, "whoami")
	if got := str(t, s.MustJSON(newTok, "whoami"), "account"); got != acct {
		t.Fatalf("the new token is of account %s, want %s", got, acct)
	}
	w.signIn(newTok)
	if !w.signedIn() {
		t.Fatal("a session with the new token does not work")
	}
	// Only the admin replaces tokens.
	s.MustFail(newTok, 7, []string{"admin"}, "account", "replace-token", acct)
}

// TestConsoleSessionsAcrossNodes: two server processes on one shared log
// know the same sessions: a session opened on one node works on the
// other at once; signing out on one ends it on both; replacing the
// account's token through one ends its sessions on both.
func TestConsoleSessionsAcrossNodes(t *testing.T) {
	c := newCluster(t, "2026-05-01T00:00:00Z")
	a, b := c.node(t, ""), c.node(t, "")
	wa, wb := newWeb(t, a), newWeb(t, b)
	wb.cookie = wa.signIn(c.tok)
	if !wb.signedIn() {
		t.Fatal("a session opened on node a does not work on node b")
	}
	if resp, _ := wb.do("POST", "/signout", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out on node b: %d", resp.StatusCode)
	}
	until(t, "node a refuses the session signed out on node b", func() bool { return !wa.signedIn() })

	wb.cookie = wa.signIn(c.tok)
	if !wb.signedIn() {
		t.Fatal("the second session does not work on node b")
	}
	acct := str(t, a.MustJSON(c.tok, "whoami"), "account")
	a.MustJSON(AdminToken, "account", "replace-token", acct)
	if wa.signedIn() {
		t.Fatal("node a still accepts a session of the replaced token")
	}
	until(t, "node b refuses a session of the replaced token", func() bool { return !wb.signedIn() })
}
