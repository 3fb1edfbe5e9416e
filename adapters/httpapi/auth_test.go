package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
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
