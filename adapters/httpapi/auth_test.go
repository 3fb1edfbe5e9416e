package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// TestOnlyBearerTokensAuthenticate: the Authorization header carries a
// token only as "Bearer <token>" (RFC 6750: the scheme in any case, one
// space); a bare token, another scheme or stray spaces are refused as if no
// token were given. (Spaces around the whole value never reach the server:
// HTTP trims them.)
func TestOnlyBearerTokensAuthenticate(t *testing.T) {
	srv := httptest.NewServer((&Server{Auth: tokenAuth{}}).Handler())
	defer srv.Close()
	for _, c := range []struct {
		header string
		want   int
	}{
		{"Bearer " + testToken, http.StatusOK},
		{"bearer " + testToken, http.StatusOK},
		{"BEARER " + testToken, http.StatusOK},
		{testToken, http.StatusUnauthorized},
		{" " + testToken, http.StatusUnauthorized},
		{"Bearer  " + testToken, http.StatusUnauthorized},
		{"Bearer\t" + testToken, http.StatusUnauthorized},
		{"Basic " + testToken, http.StatusUnauthorized},
		{"Token " + testToken, http.StatusUnauthorized},
		{"Bearer" + testToken, http.StatusUnauthorized},
		{"Bearer ", http.StatusUnauthorized},
		{"", http.StatusUnauthorized},
	} {
		req, err := http.NewRequest("GET", srv.URL+"/v1/whoami", nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("Authorization %q: status %d, want %d", c.header, resp.StatusCode, c.want)
		}
	}
}

// TestJSONResponsesAreNotSniffed: every JSON answer of the API, success or
// error, tells browsers not to guess another content type.
func TestJSONResponsesAreNotSniffed(t *testing.T) {
	srv := httptest.NewServer((&Server{Auth: tokenAuth{}}).Handler())
	defer srv.Close()
	for _, c := range []struct{ path, token string }{
		{"/v1/whoami", testToken},
		{"/v1/whoami", "wrong"},
		{"/v1/no-such-route", testToken},
		{"/v1/openapi.json", ""},
	} {
		req, err := http.NewRequest("GET", srv.URL+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s (status %d): X-Content-Type-Options %q, want nosniff", c.path, resp.StatusCode, got)
		}
	}
}

// countingGuard refuses once it has seen limit failures.
type countingGuard struct {
	mu                    sync.Mutex
	limit, failed, authed int
}

func (g *countingGuard) Admit(*http.Request) (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return 7 * time.Second, g.failed < g.limit
}
func (g *countingGuard) Failed(*http.Request) { g.mu.Lock(); g.failed++; g.mu.Unlock() }
func (g *countingGuard) Authenticated(*http.Request) {
	g.mu.Lock()
	g.authed++
	g.mu.Unlock()
}

// TestFailedAuthenticationsAreReportedToTheGuard: a presented credential
// that does not authenticate is a failure of the client (no credential at
// all is not); a success is reported; a client over its limit is answered
// 429 too_many_requests with Retry-After, its token unchecked.
func TestFailedAuthenticationsAreReportedToTheGuard(t *testing.T) {
	g := &countingGuard{limit: 2}
	c := MustServe(t, &Server{Guard: g})
	get := func(authorization string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", c.Base+"/v1/whoami", nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, h := range []string{"", "", "Bearer " + testToken} {
		get(h).Body.Close()
	}
	if g.failed != 0 || g.authed != 1 {
		t.Fatalf("no credential twice, a good one once: %d failures, %d successes; want 0, 1", g.failed, g.authed)
	}
	for _, h := range []string{"Bearer wrong", testToken} {
		get(h).Body.Close()
	}
	resp := get("Bearer " + testToken)
	var eb ErrorBody
	_ = json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" || eb.Error.Code != "too_many_requests" {
		t.Fatalf("over the limit: %d, Retry-After %q, %+v; want 429, 7, too_many_requests", resp.StatusCode, resp.Header.Get("Retry-After"), eb.Error)
	}
	if _, err := c.WhoAmI(context.Background()); !errors.Is(err, domain.ErrTooManyRequests) {
		t.Fatalf("the client sees %v, want ErrTooManyRequests", err)
	}
}

// brokenBody delivers some bytes, then fails as a connection whose read
// deadline passed does.
type brokenBody struct{ sent bool }

func (b *brokenBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "KMSBK"), nil
	}
	return 0, os.ErrDeadlineExceeded
}
func (b *brokenBody) Close() error { return nil }

// TestUploadCutOffIsTheClientsFault: an upload whose body stops arriving
// (the edge's body deadline) is answered as an invalid request, not as an
// internal error, and leaves nothing in the spool.
func TestUploadCutOffIsTheClientsFault(t *testing.T) {
	spool := t.TempDir()
	h := (&Server{Files: &commands.DayFiles{}, Auth: tokenAuth{}, SpoolDir: spool}).Handler()
	r := httptest.NewRequest("POST", "/v1/uploads?name=x", &brokenBody{})
	r.Header.Set("Authorization", "Bearer "+testToken)
	r.Header.Set(HeaderDataKey, domain.FormatDataKey(make(domain.Plaintext, domain.DataKeySize)))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var eb ErrorBody
	_ = json.NewDecoder(w.Body).Decode(&eb)
	if w.Code != http.StatusBadRequest || eb.Error.Code != "invalid_argument" || !strings.Contains(eb.Error.Message, "did not arrive") {
		t.Fatalf("an upload cut off: %d %+v, want 400 invalid_argument", w.Code, eb.Error)
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Fatalf("the spool holds %d files", len(left))
	}
}
