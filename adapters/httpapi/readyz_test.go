package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// TestReadyz: /readyz answers ok unless a check fails; ?verbose lists every
// check by name, Kubernetes style, and names each failing backup instance
// with its reason without making the server unready; only for the metrics
// token or the admin token, the others are told how many fail.
func TestReadyz(t *testing.T) {
	since := time.Date(2026, 5, 1, 10, 5, 0, 0, time.UTC)
	var logErr error
	s := &Server{Backups: &commands.BackupInstances{}, Auth: tokenAuth{}, MetricsToken: metricsToken,
		Ready: []ReadyCheck{
			{"projection kms-state", func(context.Context) error { return nil }},
			{"scheduler", func(context.Context) error { return nil }},
			{"event log", func(context.Context) error { return logErr }},
		},
		FailingBackups: func() ([]*domain.Backup, error) {
			return []*domain.Backup{{ID: "bkp_bad", Account: "acct_3", State: domain.StateEnabled,
				Failing: domain.Failure{Work: "incremental", Reason: "take backup bkp_bad: store slice: disk full", Since: since, Attempts: 4}}}, nil
		}}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	authorization := ""
	get := func(path string) (int, string) {
		t.Helper()
		return getWith(t, srv.URL+path, authorization)
	}
	check := func(path string, wantCode int, want string) {
		t.Helper()
		code, body := get(path)
		if code != wantCode {
			t.Errorf("%s: status %d, want %d", path, code, wantCode)
		}
		if diff := cmp.Diff(want, body); diff != "" {
			t.Errorf("%s (-want +got):\n%s", path, diff)
		}
	}
	failing := "[!]backup bkp_bad of account acct_3 failing since 2026-05-01T10:05:00Z (incremental, 4 attempts): take backup bkp_bad: store slice: disk full\n"
	anonymous := "[!]backups: 1 failing (which, and why: /readyz?verbose with the metrics token or the admin token)\n"

	// A failing backup instance leaves the server ready.
	check("/readyz", 200, "ok\n")
	check("/readyz?verbose", 200, "[+]projection kms-state ok\n[+]scheduler ok\n[+]event log ok\n"+anonymous+"readyz check passed\n")
	authorization = "Bearer " + metricsToken
	check("/readyz?verbose", 200, "[+]projection kms-state ok\n[+]scheduler ok\n[+]event log ok\n"+failing+"readyz check passed\n")
	authorization = "Bearer " + testToken
	if code, body := get("/readyz?verbose"); code != http.StatusForbidden || strings.Contains(body, "bkp_") {
		t.Errorf("/readyz?verbose with an account token: %d\n%s", code, body)
	}
	authorization = ""

	// A failing check does not.
	logErr = errors.New("append: log closed\nsecond line")
	check("/readyz", 503, "not ready: event log: append: log closed second line\n")
	check("/readyz?verbose", 503, "[+]projection kms-state ok\n[+]scheduler ok\n[-]event log failed: append: log closed second line\n"+anonymous+"readyz check failed\n")
}
