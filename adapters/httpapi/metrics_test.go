package httpapi

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

const metricsToken = "metrics-token-0123456789"

// tenantsServer is a server with backup instances of three accounts, one
// failing, and a scrub that found damage in one of them.
func tenantsServer() *Server {
	full := time.Unix(1_777_000_000, 0)
	backups := []*domain.Backup{
		{ID: "bkp_on", Account: "acct_1", State: domain.StateEnabled, LastFullAt: full, LastIncremental: full.Add(5 * time.Minute)},
		{ID: "bkp_old", Account: "acct_1", State: domain.StateEnabled, LastFullAt: full.Add(-time.Hour), LastIncremental: full.Add(-50 * time.Minute)},
		{ID: "bkp_gone", Account: "acct_2", State: domain.StateEnabled, LastFullAt: full.Add(-20 * time.Hour),
			SourceReleased: domain.SourceRelease{At: full.Add(-21 * time.Hour)}},
		{ID: "bkp_exp", Account: "acct_2", State: domain.StateExpired, LastFullAt: full.Add(-48 * time.Hour)},
		{ID: "bkp_off", Account: "acct_1", State: domain.StateNotEnabled},
		{ID: "bkp_bad", Account: "acct_3", State: domain.StateEnabled, LastFullAt: full,
			Failing: domain.Failure{Work: "incremental", Reason: "store slice: disk full", Since: full, Attempts: 3}},
	}
	st := commands.ScrubStatus{
		LastRun: commands.ScrubRun{Started: full, Ended: full.Add(time.Minute), Checked: 3, WithFindings: 1},
		Results: []commands.ScrubResult{
			{Backup: "bkp_on", Account: "acct_1", Report: &commands.VerifyReport{}},
			{Backup: "bkp_exp", Account: "acct_2", Report: &commands.VerifyReport{Findings: []commands.Finding{{Kind: "gap"}, {Kind: "tamper"}}}},
			{Backup: "bkp_bad", Account: "acct_3", Err: errors.New("unavailable")},
		},
		Errors: 1,
	}
	return &Server{Backups: &commands.BackupInstances{}, Auth: tokenAuth{}, MetricsToken: metricsToken,
		BackupGauges:   func() ([]*domain.Backup, error) { return backups, nil },
		BackupFailures: func() map[domain.BackupID]uint64 { return map[domain.BackupID]uint64{"bkp_bad": 7, "bkp_was": 2} },
		ScrubStatus:    func() commands.ScrubStatus { return st }}
}

// getWith GETs url with the Authorization header given (none when empty)
// and returns the status and the body.
func getWith(t *testing.T, url, authorization string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrapeMetrics GETs /metrics of the server at url.
func scrapeMetrics(t *testing.T, url, authorization string) (int, string) {
	t.Helper()
	return getWith(t, url+"/metrics", authorization)
}

// TestOpenMetricsNameNoTenant: /metrics without a token carries no
// account's or backup instance's ID, only aggregates: instances by state,
// how many fail, failures, the oldest last backup of those that back up,
// and how many the scrub found damaged.
func TestOpenMetricsNameNoTenant(t *testing.T) {
	srv := httptest.NewServer(tenantsServer().Handler())
	defer srv.Close()
	code, body := scrapeMetrics(t, srv.URL, "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, id := range []string{"bkp_", "acct_"} {
		if strings.Contains(body, id) {
			t.Errorf("the open /metrics names a tenant (%s...):\n%s", id, body)
		}
	}
	full := time.Unix(1_777_000_000, 0)
	for _, want := range []string{
		`kmsbackup_backups{state="enabled"} 4`,
		`kmsbackup_backups{state="expired"} 1`,
		`kmsbackup_backups{state="not-enabled"} 1`,
		"kmsbackup_backups_failing 1",
		"kmsbackup_backups_failures_total 9",
		// bkp_old's last incremental; bkp_gone (its KMS instance released:
		// daily fulls only) and expired ones do not count.
		"kmsbackup_backups_oldest_last_backup_timestamp_seconds " + promFloat(full.Add(-50*time.Minute)),
		"kmsbackup_verify_backups_with_findings 1",
		"kmsbackup_verify_last_run_backups 3",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("the open /metrics lacks %q", want)
		}
	}
}

// promFloat is t in Unix seconds as the text exposition writes it.
func promFloat(t time.Time) string { return strconv.FormatFloat(float64(t.Unix()), 'g', -1, 64) }

// TestMetricsTokenUnlocksPerBackupSeries: the metrics token (or the admin
// token) adds the series of each backup instance, labelled by backup and
// account; an account token is not enough; a wrong token is refused and
// counts as a failed authentication of its client.
func TestMetricsTokenUnlocksPerBackupSeries(t *testing.T) {
	g := &countingGuard{limit: 100}
	s := tenantsServer()
	s.Guard = g
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	code, body := scrapeMetrics(t, srv.URL, "Bearer "+metricsToken)
	if code != http.StatusOK {
		t.Fatalf("/metrics with the metrics token: %d", code)
	}
	for _, want := range []string{
		`kmsbackup_backup_failing{account="acct_3",backup="bkp_bad"} 1`,
		`kmsbackup_backup_failures_total{account="acct_3",backup="bkp_bad"} 7`,
		`kmsbackup_backup_last_full_timestamp_seconds{account="acct_1",backup="bkp_on"} 1.777e+09`,
		`kmsbackup_verify_findings{account="acct_2",backup="bkp_exp"} 2`,
		"kmsbackup_backups_failing 1",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics with the metrics token lacks %q", want)
		}
	}
	if g.authed != 1 || g.failed != 0 {
		t.Fatalf("guard: %d successes, %d failures; want 1, 0", g.authed, g.failed)
	}
	if code, _ := scrapeMetrics(t, srv.URL, "Bearer "+testToken); code != http.StatusForbidden {
		t.Errorf("/metrics with an account token: %d, want 403", code)
	}
	if code, body := scrapeMetrics(t, srv.URL, "Bearer wrong-token"); code != http.StatusUnauthorized || strings.Contains(body, "bkp_") {
		t.Errorf("/metrics with a wrong token: %d, want 401 without metrics", code)
	}
	if code, _ := scrapeMetrics(t, srv.URL, metricsToken); code != http.StatusUnauthorized {
		t.Errorf("/metrics with the metrics token but no Bearer: %d, want 401", code)
	}
	if g.failed != 2 {
		t.Errorf("guard: %d failures, want 2 (the wrong token, the bare one)", g.failed)
	}
	g.limit = 0
	if code, _ := scrapeMetrics(t, srv.URL, "Bearer "+metricsToken); code != http.StatusTooManyRequests {
		t.Errorf("/metrics from a client over its limit: %d, want 429", code)
	}
	if code, _ := scrapeMetrics(t, srv.URL, ""); code != http.StatusOK {
		t.Errorf("the open /metrics from a client over its limit: %d, want 200", code)
	}
}

// TestMetricsPassPromtoolLint: both expositions pass the checks of
// `promtool check metrics` (the promlint rules, run on the text served).
func TestMetricsPassPromtoolLint(t *testing.T) {
	s := tenantsServer()
	s.DevScrub = &fakeScrub{}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, auth := range []string{"", "Bearer " + metricsToken} {
		code, body := scrapeMetrics(t, srv.URL, auth)
		if code != http.StatusOK {
			t.Fatalf("/metrics (%q): %d", auth, code)
		}
		problems, err := promlint.New(strings.NewReader(body)).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("/metrics (token %v): %s: %s", auth != "", p.Metric, p.Text)
		}
	}
}
