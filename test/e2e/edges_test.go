package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// apiStatus sends GET /v1/whoami with the Authorization header given (none
// when empty) and extra headers as name, value pairs; it returns the
// response with its error code ("" for a success).
func apiStatus(t *testing.T, s *Server, authorization string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+s.Addr+"/v1/whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb struct {
		Error struct{ Code string } `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &eb)
	return resp, eb.Error.Code
}

// failUntilLimited sends wrong tokens until the server refuses with 429;
// it fails the test if that takes more than max attempts, and returns how
// many were answered 401 first.
func failUntilLimited(t *testing.T, s *Server, max int, headers ...string) int {
	t.Helper()
	for i := 0; i < max; i++ {
		resp, code := apiStatus(t, s, "Bearer kmsb_wrong", headers...)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			continue
		case http.StatusTooManyRequests:
			if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || secs < 1 {
				t.Fatalf("429 with Retry-After %q, want whole seconds", resp.Header.Get("Retry-After"))
			}
			if code != "too_many_requests" {
				t.Fatalf("429 with error code %q, want too_many_requests", code)
			}
			return i
		default:
			t.Fatalf("wrong token %d: status %d", i, resp.StatusCode)
		}
	}
	t.Fatalf("%d wrong tokens in a row, none refused with 429", max)
	return 0
}

// TestAuthenticationEdges: only "Bearer <token>" authenticates; failed
// authentications are limited per client, across the API and the console's
// sign-in; X-Forwarded-For and X-Forwarded-Proto count only from a
// --trusted-proxy.
func TestAuthenticationEdges(t *testing.T) {
	s := StartServer(t, "")
	tok := s.DevTok

	for _, h := range []string{tok, "Bearer  " + tok, "Basic " + tok} {
		if resp, _ := apiStatus(t, s, h); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("Authorization %q: %d, want 401", strings.Replace(h, tok, "<token>", 1), resp.StatusCode)
		}
	}
	if resp, _ := apiStatus(t, s, "bearer "+tok); resp.StatusCode != http.StatusOK || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("a good token: %d, X-Content-Type-Options %q", resp.StatusCode, resp.Header.Get("X-Content-Type-Options"))
	}

	// Wrong tokens from one address: a burst, then 429, even for a good
	// token from there, and for the console's sign-in; X-Forwarded-For
	// from an untrusted peer changes nothing.
	if n := failUntilLimited(t, s, 50); n < 3 {
		t.Fatalf("refused after %d failures: legitimate typos need a few tries", n)
	}
	if resp, _ := apiStatus(t, s, "Bearer "+tok); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a good token from a client over its limit: %d, want 429", resp.StatusCode)
	}
	if resp, _ := apiStatus(t, s, "Bearer kmsb_wrong", "X-Forwarded-For", "198.51.100.1"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("X-Forwarded-For from an untrusted peer: %d, want 429 (ignored)", resp.StatusCode)
	}
	w := newWeb(t, s)
	resp, body := w.do("POST", "/signin", url.Values{"token": {"kmsb_wrong"}})
	wantStatus(t, "sign-in over the limit", resp, body, http.StatusTooManyRequests, "Too many failed sign-ins")
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("a refused sign-in without Retry-After")
	}

	// Failed sign-ins count too.
	s2 := StartServer(t, "", "--trusted-proxy", "127.0.0.1")
	w2 := newWeb(t, s2)
	limited := false
	for i := 0; i < 50 && !limited; i++ {
		resp, body := w2.do("POST", "/signin", url.Values{"token": {"kmsb_wrong"}}, "X-Forwarded-For", "198.51.100.1")
		switch resp.StatusCode {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			limited = true
		default:
			t.Fatalf("failed sign-in %d: %d\n%s", i, resp.StatusCode, body)
		}
	}
	if !limited {
		t.Fatal("50 failed sign-ins in a row, none refused with 429")
	}
	// Behind a trusted proxy each forwarded client has its own limit.
	if resp, _ := apiStatus(t, s2, "Bearer kmsb_wrong", "X-Forwarded-For", "198.51.100.1"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the limited client through the proxy: %d, want 429", resp.StatusCode)
	}
	if resp, _ := apiStatus(t, s2, "Bearer "+s2.DevTok, "X-Forwarded-For", "198.51.100.2"); resp.StatusCode != http.StatusOK {
		t.Fatalf("another client through the proxy: %d, want 200", resp.StatusCode)
	}
	failUntilLimited(t, s2, 50, "X-Forwarded-For", "203.0.113.9, 198.51.100.3")
	if resp, _ := apiStatus(t, s2, "Bearer "+s2.DevTok, "X-Forwarded-For", "198.51.100.3"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the nearest forwarded address is the client: %d, want 429", resp.StatusCode)
	}

	// The console believes X-Forwarded-Proto only from a trusted proxy.
	s3 := StartServer(t, "")
	resp, body = newWeb(t, s3).do("POST", "/signin", url.Values{"token": {s3.DevTok}}, "Host", "console.example.com", "X-Forwarded-Proto", "https")
	wantStatus(t, "X-Forwarded-Proto from an untrusted peer", resp, body, http.StatusConflict, "HTTPS")
	resp, _ = newWeb(t, s2).do("POST", "/signin", url.Values{"token": {s2.DevTok}}, "Host", "console.example.com",
		"X-Forwarded-Proto", "https", "X-Forwarded-For", "198.51.100.4")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in behind a trusted TLS proxy: %d, want 303", resp.StatusCode)
	}
}

// scrapeAs GETs /metrics (or another path) with a bearer token (none when
// empty).
func scrapeAs(t *testing.T, s *Server, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.Addr+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsEdges: the real server's /metrics names no account and no
// backup instance without a token, names them for the metrics token
// (--metrics-token-file) and the admin token, refuses an account token,
// and passes `promtool check metrics`'s rules both ways.
func TestMetricsEdges(t *testing.T) {
	const metricsToken = "prometheus-scrape-token-0123"
	file := filepath.Join(t.TempDir(), "metrics.token")
	if err := os.WriteFile(file, []byte(metricsToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z", "--metrics-token-file", file)
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	bkp := items(t, s.MustJSON(tok, "backup-instance", "list"))[0]["id"].(string)
	s.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "prod")
	s.MustJSON(tok, "dev", "clock", "advance", "10m") // incrementals at 09:35 and 09:40
	account := str(t, s.MustJSON(tok, "whoami"), "account")

	code, open := scrapeAs(t, s, "/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, id := range []string{bkp, account, inst} {
		if strings.Contains(open, id) {
			t.Errorf("the open /metrics names %s", id)
		}
	}
	if !strings.Contains(open, `kmsbackup_backups{state="enabled"} 1`+"\n") ||
		!strings.Contains(open, "kmsbackup_backups_oldest_last_backup_timestamp_seconds 1.7776284e+09\n") {
		t.Errorf("the open /metrics lacks the aggregates:\n%s", open)
	}
	lint(t, "the open /metrics", open)
	for _, token := range []string{metricsToken, AdminToken} {
		code, all := scrapeAs(t, s, "/metrics", token)
		if code != http.StatusOK || !strings.Contains(all, fmt.Sprintf(`kmsbackup_backup_failing{account=%q,backup=%q} 0`, account, bkp)) {
			t.Fatalf("/metrics with a token: %d, without the series of %s", code, bkp)
		}
		lint(t, "/metrics with a token", all)
	}
	if code, body := scrapeAs(t, s, "/metrics", tok); code != http.StatusForbidden || strings.Contains(body, bkp) {
		t.Fatalf("/metrics with an account token: %d", code)
	}
	// The metrics token reads nothing else.
	if code, _ := scrapeAs(t, s, "/v1/backup-instances", metricsToken); code != http.StatusUnauthorized {
		t.Fatalf("the metrics token on the API: %d, want 401", code)
	}
}

// lint applies the rules of `promtool check metrics` to an exposition.
func lint(t *testing.T, what, exposition string) {
	t.Helper()
	problems, err := promlint.New(strings.NewReader(exposition)).Lint()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s: %s", what, p.Metric, p.Text)
	}
}
