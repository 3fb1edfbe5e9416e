package console

import (
	"crypto/tls"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
)

func TestLocalPathKeepsReturnAddressesOnTheServer(t *testing.T) {
	for in, want := range map[string]string{
		"/backups":                  "/backups",
		"/backups/bkp_1/data?day=x": "/backups/bkp_1/data?day=x",
		"":                          "/fallback",
		"backups":                   "/fallback",
		"//evil.example/x":          "/fallback",
		`/\evil.example`:            "/fallback",
		"https://evil.example/":     "/fallback",
		"/x\r\nSet-Cookie: a=b":     "/fallback",
	} {
		if got := localPath(in, "/fallback"); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSecureOriginIsHTTPSOrLoopback(t *testing.T) {
	for _, c := range []struct {
		host  string
		tls   bool
		proto string
		want  bool
	}{
		{"127.0.0.1:8080", false, "", true},
		{"[::1]:8080", false, "", true},
		{"localhost:8080", false, "", true},
		{"console.example.com", false, "", false},
		{"10.0.0.5:8080", false, "", false},
		{"console.example.com", true, "", true},
		{"console.example.com", false, "https", true},
		{"console.example.com", false, "http", false},
	} {
		r := httptest.NewRequest("POST", "/signin", nil)
		r.Host = c.host
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		if c.proto != "" {
			r.Header.Set("X-Forwarded-Proto", c.proto)
		}
		if got := secureOrigin(r); got != c.want {
			t.Errorf("secureOrigin(host %s, tls %v, proto %q) = %v", c.host, c.tls, c.proto, got)
		}
	}
}

// TestActionsFollowTheState checks what each row offers against SPEC.md
// section 3: an expired instance can only be renewed; a default one is
// never extended or renewed; a released one offers nothing.
func TestActionsFollowTheState(t *testing.T) {
	labels := func(b *domain.Backup) string {
		var ls []string
		for _, a := range actionsFor(b) {
			ls = append(ls, a.Label)
		}
		return strings.Join(ls, ",")
	}
	for _, c := range []struct {
		kind  domain.BackupKind
		state domain.BackupState
		want  string
	}{
		{domain.BackupDefault, domain.StateNotEnabled, "Enable"},
		{domain.BackupDefault, domain.StateEnabled, "View data,Download,Verify,Reset"},
		{domain.BackupProvisioned, domain.StateNotEnabled, "Enable,Extend,Renew"},
		{domain.BackupProvisioned, domain.StateEnabled, "View data,Download,Verify,Extend,Renew,Reset"},
		{domain.BackupProvisioned, domain.StateExpired, "Renew"},
		{domain.BackupProvisioned, domain.StateReleased, ""},
		{domain.BackupUpload, domain.StateUploaded, "View data,Download,Verify,Delete"},
	} {
		if got := labels(&domain.Backup{ID: "bkp_1", Kind: c.kind, State: c.state}); got != c.want {
			t.Errorf("%s %s offers %q, want %q", c.kind, c.state, got, c.want)
		}
	}
}

func TestEveryPageParses(t *testing.T) {
	pages := parsePages()
	for _, name := range []string{"signin", "error", "backups", "create", "enable", "extend", "renew", "reset", "delete",
		"data", "restore", "plan", "result", "download", "upload", "diff", "verify"} {
		if pages[name] == nil || pages[name].Lookup("content") == nil || pages[name].Lookup("layout") == nil {
			t.Errorf("page %s is missing or has no content", name)
		}
	}
}
