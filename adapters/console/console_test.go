package console

import (
	"crypto/tls"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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

// TestBackupListSaysWhatIsWrong: the list writes out, in words, that a
// backup instance's work fails (since when, how often, why) and that its
// KMS instance was released (and what was never backed up).
func TestBackupListSaysWhatIsWrong(t *testing.T) {
	since := time.Date(2026, 6, 1, 10, 5, 0, 0, time.UTC)
	failing := &domain.Backup{ID: "bkp_bad", Kind: domain.BackupProvisioned, State: domain.StateEnabled, Region: "cn-hangzhou",
		Failing: domain.Failure{Work: "incremental", Reason: `take backup bkp_bad: store slice: <disk> "full"`, Since: since, Attempts: 12}}
	gone := &domain.Backup{ID: "bkp_gone", Kind: domain.BackupProvisioned, State: domain.StateEnabled, Region: "cn-hangzhou",
		KMSInstance: "kms_1", SourceReleased: domain.SourceRelease{At: since, Next: 5, End: 7}}
	whole := &domain.Backup{ID: "bkp_whole", Kind: domain.BackupProvisioned, State: domain.StateEnabled, Region: "cn-hangzhou",
		KMSInstance: "kms_2", SourceReleased: domain.SourceRelease{At: since, Next: 7, End: 7}}
	fine := &domain.Backup{ID: "bkp_fine", Kind: domain.BackupProvisioned, State: domain.StateEnabled, Region: "cn-hangzhou"}
	c := &Console{}
	c.init()
	rec := httptest.NewRecorder()
	v := backupsView{}
	for _, b := range []*domain.Backup{failing, gone, whole, fine} {
		v.Rows = append(v.Rows, backupRow{Backup: b, Actions: actionsFor(b)})
	}
	c.render(rec, httptest.NewRequest("GET", "/backups", nil), 200, "backups", "Backups", v)
	body := rec.Body.String()
	row := func(id string) string {
		_, after, ok := strings.Cut(body, `<tr id="row-`+id+`">`)
		if !ok {
			t.Fatalf("no row %s in\n%s", id, body)
		}
		r, _, _ := strings.Cut(after, "</tr>")
		return r
	}
	for id, wants := range map[string][]string{
		"bkp_bad": {"Failing since", `datetime="2026-06-01T10:05:00Z"`, "12 attempts", "incremental backup",
			"retried automatically", "take backup bkp_bad: store slice: &lt;disk&gt; &#34;full&#34;"},
		"bkp_gone":  {"KMS instance released", "its last 2 changes were never backed up", "one full backup a day"},
		"bkp_whole": {"KMS instance released", "everything it recorded is backed up"},
	} {
		r := row(id)
		for _, w := range wants {
			if !strings.Contains(r, w) {
				t.Errorf("row %s does not say %q:\n%s", id, w, r)
			}
		}
	}
	if r := row("bkp_fine"); strings.Contains(r, "Failing") || strings.Contains(r, "released") {
		t.Errorf("a healthy row says it is not:\n%s", r)
	}
}
