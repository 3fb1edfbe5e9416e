package e2e

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// web is a plain HTTP client of the console that follows no redirects, so
// that tests see each response as the browser gets it.
type web struct {
	t      *testing.T
	base   string
	cookie string
	c      *http.Client
}

func newWeb(t *testing.T, s *Server) *web {
	return &web{t: t, base: "http://" + s.Addr, c: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// do sends a request with the session cookie (when signed in) and the
// headers given as name, value pairs; it returns the response and its body.
func (w *web) do(method, path string, form url.Values, headers ...string) (*http.Response, string) {
	w.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, w.base+path, body)
	if err != nil {
		w.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if w.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "kmsbackup_session", Value: w.cookie})
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := w.c.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatal(err)
	}
	return resp, string(b)
}

func wantStatus(t *testing.T, what string, resp *http.Response, body string, want int, fragments ...string) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d, want %d\n%s", what, resp.StatusCode, want, keys.ReplaceAllString(body, "${1}_[hidden]"))
	}
	for _, f := range fragments {
		if !strings.Contains(body, f) {
			t.Fatalf("%s: the page does not say %q\n%s", what, f, keys.ReplaceAllString(body, "${1}_[hidden]"))
		}
	}
}

// TestConsoleHTTP checks the console's protections as a client sees them:
// security headers, the session cookie, sign-in refusals, cross-origin
// refusal of every change, escaping, and other accounts' objects reported
// as missing.
func TestConsoleHTTP(t *testing.T) {
	// The test's client stands for a TLS proxy on this machine.
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z", "--trusted-proxy", "127.0.0.1")
	tok := s.DevTok
	w := newWeb(t, s)

	// Every page carries the headers; a page needs a session.
	resp, body := w.do("GET", "/signin", nil)
	wantStatus(t, "sign-in page", resp, body, 200, `<label for="token">`)
	for h, want := range map[string]string{
		"Content-Security-Policy": "script-src 'self'", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
		"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
	} {
		if got := resp.Header.Get(h); !strings.Contains(got, want) {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	resp, _ = w.do("GET", "/backups?page=x", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin?next=%2Fbackups%3Fpage%3Dx" {
		t.Fatalf("no session: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Sign-in refusals: a bad token, the admin token, plain HTTP on a
	// non-loopback host (where a Secure cookie would not be kept).
	resp, body = w.do("POST", "/signin", url.Values{"token": {"kmsb_nope"}})
	wantStatus(t, "bad token", resp, body, 401, "that token is not valid")
	resp, body = w.do("POST", "/signin", url.Values{"token": {AdminToken}})
	wantStatus(t, "admin token", resp, body, 403, "account token")
	resp, body = w.do("POST", "/signin", url.Values{"token": {tok}}, "Host", "console.example.com")
	wantStatus(t, "plain HTTP elsewhere", resp, body, 409, "HTTPS")
	if len(resp.Cookies()) != 0 {
		t.Fatal("a refused sign-in set a cookie")
	}
	resp, _ = w.do("POST", "/signin", url.Values{"token": {tok}}, "Host", "console.example.com", "X-Forwarded-Proto", "https")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in behind a TLS proxy: %d", resp.StatusCode)
	}
	resp, _ = w.do("POST", "/signin", url.Values{"token": {tok}, "next": {"//evil.example/x"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/backups" {
		t.Fatalf("sign-in with a foreign next: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Name != "kmsbackup_session" || !cs[0].Secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode || cs[0].Path != "/" {
		t.Fatalf("session cookie: %+v", cs)
	}
	w.cookie = cs[0].Value

	// Cross-origin changes are refused, and change nothing.
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	create := url.Values{"region": {"cn-hangzhou"}, "viewable_days": {"7"}, "term": {"1mo"}}
	for _, h := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Origin", "http://evil.example"},
		{"Sec-Fetch-Site", "same-site", "Origin", "http://sub." + s.Addr},
	} {
		resp, body = w.do("POST", "/backups", create, h...)
		wantStatus(t, "cross-origin create "+strings.Join(h, " "), resp, body, 403, "cross-origin request refused")
	}
	if n := len(items(t, s.MustJSON(tok, "backup-instance", "list"))); n != 1 {
		t.Fatalf("%d backup instances after refused requests, want only the default", n)
	}
	resp, _ = w.do("POST", "/backups", create, "Sec-Fetch-Site", "same-origin", "Origin", w.base)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/backups?done=created&id=bkp_") {
		t.Fatalf("same-origin create: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Bad input is explained on the form and stores nothing.
	resp, body = w.do("POST", "/backups", url.Values{"region": {"cn-hangzhou"}, "viewable_days": {"3"}, "term": {"1mo"}})
	wantStatus(t, "3 viewable days", resp, body, 400, "viewable days", `value="3"`)
	resp, body = w.do("POST", "/backups", url.Values{"region": {"cn-hangzhou"}, "viewable_days": {"seven"}, "term": {"1mo"}})
	wantStatus(t, "viewable days not a number", resp, body, 400, "whole number")
	if n := len(items(t, s.MustJSON(tok, "backup-instance", "list"))); n != 2 {
		t.Fatalf("%d backup instances after bad input, want 2", n)
	}

	// HTML in a description, an alias and an error message is text.
	const script = `<script>alert("x")</script>`
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", script), "id")
	def := items(t, s.MustJSON(tok, "backup-instance", "list"))[0]["id"].(string)
	s.MustJSON(tok, "backup-instance", "enable", def, "--kms-instance", inst, "--alias", script)
	resp, body = w.do("GET", "/backups/"+def+"/data", nil)
	wantStatus(t, "data page", resp, body, 200, key, `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`)
	resp, list := w.do("GET", "/backups", nil)
	wantStatus(t, "backup list", resp, list, 200, `&lt;script&gt;`)
	resp, body = w.do("GET", "/backups/"+def+"/data?tab="+url.QueryEscape(script), nil)
	wantStatus(t, "a tab holding HTML", resp, body, 400, `&lt;script&gt;`)
	for what, page := range map[string]string{"data page": body, "backup list": list} {
		if strings.Contains(page, script) {
			t.Errorf("the %s holds the raw HTML of a description or alias", what)
		}
	}

	// Another account's backup instance does not exist for this session.
	otherTok := str(t, s.MustJSON(AdminToken, "account", "create", "other"), "token")
	s.MustJSON(otherTok, "kms", "instance", "create", "--region", "cn-hangzhou")
	theirs := items(t, s.MustJSON(otherTok, "backup-instance", "list"))[0]["id"].(string)
	for _, p := range []string{"/backups/" + theirs + "/data", "/backups/" + theirs + "/enable", "/backups/bkp_01XXXXXXXXXXXXXXXXXXXXXXXX/data"} {
		resp, body = w.do("GET", p, nil)
		wantStatus(t, p, resp, body, 404, "not found")
	}
	resp, body = w.do("POST", "/backups/"+theirs+"/reset", url.Values{"confirm": {"yes"}})
	wantStatus(t, "reset of another account's instance", resp, body, 404, "not found")

	// The pinned htmx is what the pages load.
	resp, body = w.do("GET", "/backups", nil)
	wantStatus(t, "backup list", resp, body, 200, `src="/static/htmx-2.0.11.min.js"`)
	resp, body = w.do("GET", "/static/htmx-2.0.11.min.js", nil)
	wantStatus(t, "htmx", resp, body, 200, `version:"2.0.11"`)

	// The console's requests are counted, refusals included.
	resp, body = w.do("GET", "/metrics", nil)
	wantStatus(t, "metrics", resp, body, 200, `kmsbackup_console_requests_total{code="403",route="cross-origin"} 3`,
		`kmsbackup_console_requests_total{code="303",route="POST /backups"} 1`)

	// Signing out clears the cookie.
	resp, _ = w.do("POST", "/signout", nil)
	if cs := resp.Cookies(); resp.StatusCode != http.StatusSeeOther || len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Fatalf("sign out: %d, cookies %+v", resp.StatusCode, cs)
	}
}

// TestConsolePaging pages through a long tab and a long backup list: 50
// rows a page, a link to the next page and back to the first, every row
// seen once.
func TestConsolePaging(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	for i := 0; i < 52; i++ {
		s.MustJSON(tok, "kms", "key", "create", "--instance", inst)
		s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "7", "--term", "1mo")
	}
	var def string
	for _, b := range items(t, s.MustJSON(tok, "backup-instance", "list", "--page-size", "100")) {
		if b["kind"] == "default" {
			def = b["id"].(string)
		}
	}
	s.MustJSON(tok, "backup-instance", "enable", def, "--kms-instance", inst, "--alias", "paging")
	w := newWeb(t, s)
	resp, _ := w.do("POST", "/signin", url.Values{"token": {tok}})
	w.cookie = resp.Cookies()[0].Value

	rows := regexp.MustCompile(`<tr id="row-(bkp_[A-Z0-9]+)"`)
	keyRows := regexp.MustCompile(`<th scope="row"><code>(key_[A-Z0-9]+)</code>`)
	next := regexp.MustCompile(`<a href="([^"]+)" rel="next">Next page</a>`)
	for _, c := range []struct {
		first string
		row   *regexp.Regexp
		want  int
	}{
		{"/backups", rows, 53},
		{"/backups/" + def + "/data?tab=full-keys", keyRows, 52},
	} {
		seen := map[string]bool{}
		path, pages := c.first, 0
		for path != "" {
			resp, body := w.do("GET", path, nil)
			wantStatus(t, path, resp, body, 200)
			pages++
			got := c.row.FindAllStringSubmatch(body, -1)
			if len(got) > 50 {
				t.Fatalf("%s: %d rows on one page", path, len(got))
			}
			for _, m := range got {
				if seen[m[1]] {
					t.Fatalf("%s: %s on two pages", c.first, m[1])
				}
				seen[m[1]] = true
			}
			if pages > 1 && !strings.Contains(body, ">First page</a>") {
				t.Fatalf("%s: page %d has no link to the first page", c.first, pages)
			}
			path = ""
			if m := next.FindStringSubmatch(body); m != nil {
				path = html.UnescapeString(m[1])
			}
		}
		if len(seen) != c.want || pages != 2 {
			t.Fatalf("%s: %d rows on %d pages, want %d on 2", c.first, len(seen), pages, c.want)
		}
	}
}
