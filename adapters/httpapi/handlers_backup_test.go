package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

const testToken = "tok"

// tokenAuth knows one token, of account acct_1.
type tokenAuth struct{}

func (tokenAuth) Authenticate(token string) (commands.Caller, error) {
	if token != testToken {
		return commands.Caller{}, domain.Errorf(domain.ErrUnauthenticated, "authenticate", "", "", "unknown token")
	}
	return commands.Caller{Account: "acct_1"}, nil
}

// fakeClock is a DevClock that records its advances.
type fakeClock struct {
	mu       sync.Mutex
	now      time.Time
	real     bool
	advanced []time.Duration
	err      error
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Manual() bool { return !f.real }

// AdvanceReporting reports progress at each whole day on the way, then
// fails with err when set.
func (f *fakeClock) AdvanceReporting(_ context.Context, d time.Duration, progress func(from, now, to time.Time)) (time.Time, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	from, to := f.now, f.now.Add(d)
	for t := from.Add(24 * time.Hour); progress != nil && t.Before(to); t = t.Add(24 * time.Hour) {
		progress(from, t, to)
	}
	if f.err != nil {
		return f.now, 0, f.err
	}
	f.advanced = append(f.advanced, d)
	f.now = to
	return f.now, 3, nil
}

// MustServe serves s over httptest and returns a client with the test token.
func MustServe(tb testing.TB, s *Server) *Client {
	tb.Helper()
	if s.Auth == nil {
		s.Auth = tokenAuth{}
	}
	srv := httptest.NewServer(s.Handler())
	tb.Cleanup(srv.Close)
	return &Client{Base: srv.URL, Token: testToken, HTTP: srv.Client()}
}

// call sends a raw request and returns the status and error body.
func call(tb testing.TB, c *Client, method, path, body string) (int, ErrorBody) {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.Base+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var eb ErrorBody
	_ = json.NewDecoder(resp.Body).Decode(&eb)
	return resp.StatusCode, eb
}

func TestDevRoutesAbsentWithoutDevClock(t *testing.T) {
	c := MustServe(t, &Server{Backups: &commands.BackupInstances{}})
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v1/dev/clock", ""},
		{"POST", "/v1/dev/clock/advance", `{"duration":"1h"}`},
	} {
		status, eb := call(t, c, r.method, r.path, r.body)
		if status != http.StatusNotFound || eb.Error.Code != "not_found" {
			t.Errorf("%s %s without a dev clock: %d %+v, want 404 not_found", r.method, r.path, status, eb.Error)
		}
	}
	if _, err := c.DevClock(context.Background()); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("client DevClock: %v, want not found", err)
	}
}

func TestBackupRoutesAbsentWithoutBackups(t *testing.T) {
	c := MustServe(t, &Server{})
	if status, eb := call(t, c, "GET", "/v1/backup-instances", ""); status != http.StatusNotFound || eb.Error.Code != "not_found" {
		t.Errorf("GET /v1/backup-instances without Backups: %d %+v", status, eb.Error)
	}
}

func TestDevClock(t *testing.T) {
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	clk := &fakeClock{now: start}
	c := MustServe(t, &Server{DevClock: clk})
	ctx := context.Background()

	v, err := c.DevClock(ctx)
	if err != nil || !v.Now.Equal(start) || !v.Manual {
		t.Fatalf("DevClock = %+v, %v", v, err)
	}
	res, err := c.AdvanceClock(ctx, "31d")
	if err != nil {
		t.Fatal(err)
	}
	if want := start.Add(31 * 24 * time.Hour); !res.Now.Equal(want) || res.Work != 3 {
		t.Errorf("advance 31d = %+v, want now %s, work 3", res, want)
	}
	if diff := cmp.Diff([]time.Duration{31 * 24 * time.Hour}, clk.advanced); diff != "" {
		t.Errorf("advances (-want +got):\n%s", diff)
	}

	for _, body := range []string{`{"duration":""}`, `{"duration":"soon"}`, `{"duration":"-1h"}`, `{"duration":"0s"}`,
		`{"duration":"401d"}`, `{"duration":"1h","extra":1}`, `{"duration":3600}`, ``} {
		if status, eb := call(t, c, "POST", "/v1/dev/clock/advance", body); status != http.StatusBadRequest || eb.Error.Code != "invalid_argument" {
			t.Errorf("advance %s: %d %+v, want 400 invalid_argument", body, status, eb.Error)
		}
	}
	if len(clk.advanced) != 1 {
		t.Errorf("invalid advances reached the clock: %v", clk.advanced)
	}

	clk.err = errors.New("disk on fire at /secret/path")
	if status, eb := call(t, c, "POST", "/v1/dev/clock/advance", `{"duration":"1h"}`); status != http.StatusInternalServerError ||
		strings.Contains(eb.Error.Message, "secret") {
		t.Errorf("failed advance: %d %+v", status, eb.Error)
	}

	realClock := MustServe(t, &Server{DevClock: &fakeClock{now: start, real: true}})
	_, err = realClock.AdvanceClock(ctx, "1h")
	var ae *APIError
	if !errors.As(err, &ae) || !errors.Is(err, domain.ErrFailedPrecondition) || !strings.Contains(ae.Hint, "--clock manual") {
		t.Errorf("advancing a real clock: %v, want failed_precondition naming --clock manual", err)
	}
	if v, err := realClock.DevClock(ctx); err != nil || v.Manual {
		t.Errorf("real DevClock = %+v, %v", v, err)
	}
}

// TestBackupRequestsValidated checks the refusals the handlers make before
// any use case runs (the stand-in Backups would fail if called).
func TestBackupRequestsValidated(t *testing.T) {
	c := MustServe(t, &Server{Backups: &commands.BackupInstances{}, Days: &commands.DayData{}})
	const id = "/v1/backup-instances/bkp_01J00000000000000000000000"
	for _, r := range []struct {
		method, path, body string
		want               string // in the message
	}{
		{"POST", "/v1/backup-instances", `{"viewable_days":10,"term":"1mo"}`, "region is required"},
		{"POST", "/v1/backup-instances", `{"region":"eu","term":"1mo"}`, "viewable_days is required"},
		{"POST", "/v1/backup-instances", `{"region":"eu","viewable_days":10}`, "term is required"},
		{"POST", "/v1/backup-instances", `{"region":"eu","viewable_days":"ten","term":"1mo"}`, `field "viewable_days"`},
		{"POST", "/v1/backup-instances", `{"region":"eu","viewable_days":10,"term":"1mo","kind":"default"}`, `unknown field "kind"`},
		{"POST", id + "/enable", `{"alias":"prod"}`, "kms_instance is required"},
		{"POST", id + "/extend", `{}`, "viewable_days is required"},
		{"POST", id + "/renew", `{}`, "term is required"},
		{"POST", id + "/reset", `{}`, "cannot be undone"},
		{"POST", id + "/reset", `{"confirm":false}`, "cannot be undone"},
		{"POST", id + "/reset", ``, "request body is empty"},
		{"GET", id + "/data?day=2026-05-01", ``, "query parameter tab is required: one of full-keys, incremental-keys"},
		{"GET", id + "/data?day=2026-05-01&tab=full-keys&page_size=x", ``, "page_size"},
		{"GET", id + "/diff?to=2026-05-01", ``, "query parameter from is required"},
		{"GET", id + "/diff?from=2026-05-01", ``, "query parameter to is required"},
		{"GET", "/v1/backup-instances?page_size=-1", ``, "page_size"},
	} {
		status, eb := call(t, c, r.method, r.path, r.body)
		if status != http.StatusBadRequest || eb.Error.Code != "invalid_argument" || !strings.Contains(eb.Error.Message, r.want) {
			t.Errorf("%s %s %s: %d %+v, want 400 invalid_argument with %q", r.method, r.path, r.body, status, eb.Error, r.want)
		}
	}
	if _, eb := call(t, c, "POST", id+"/reset", `{}`); !strings.Contains(eb.Error.Hint, `"confirm": true`) {
		t.Errorf("reset without confirm: hint %q", eb.Error.Hint)
	}
}

func TestBackupJSONShapes(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2026, 5, 1, h, 0, 0, 0, time.FixedZone("CST", 8*3600)) }
	toJSON := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name string
		got  any
		want string
	}{
		{"default instance, not enabled", backupView(&domain.Backup{ID: "bkp_1", Account: "acct_1", Region: "cn-hangzhou",
			Kind: domain.BackupDefault, State: domain.StateNotEnabled, ViewableDays: 7, CreatedAt: at(9)}),
			`{"id":"bkp_1","account":"acct_1","alias":"","kind":"default","region":"cn-hangzhou","kms_instance":"",` +
				`"viewable_days":7,"time_zone":"","state":"not-enabled","created_at":"2026-05-01T01:00:00Z","generation":0,"checkpoints":0}`},
		{"provisioned, enabled", backupView(&domain.Backup{ID: "bkp_2", Account: "acct_1", Region: "cn-hangzhou",
			Kind: domain.BackupProvisioned, State: domain.StateEnabled, ViewableDays: 10, ExpiresAt: at(10), CreatedAt: at(9),
			KMSInstance: "kms_1", Alias: "prod", TimeZone: "Asia/Shanghai", EnabledAt: at(11), EnabledDay: "2026-05-01",
			Generation: 1, Checkpoints: 3, LastFullAt: at(11), LastIncremental: at(12)}),
			`{"id":"bkp_2","account":"acct_1","alias":"prod","kind":"provisioned","region":"cn-hangzhou","kms_instance":"kms_1",` +
				`"viewable_days":10,"time_zone":"Asia/Shanghai","state":"enabled","expires_at":"2026-05-01T02:00:00Z",` +
				`"created_at":"2026-05-01T01:00:00Z","enabled_at":"2026-05-01T03:00:00Z","enabled_day":"2026-05-01","generation":1,` +
				`"checkpoints":3,"last_full_at":"2026-05-01T03:00:00Z","last_incremental_at":"2026-05-01T04:00:00Z"}`},
		{"key", dataItemView(backupdata.Item{Kind: backupdata.KindKey, ID: "key_1", Versions: 2, CreatedAt: at(9), ChangedAt: at(10),
			Description: "pay", KeyID: "ignored"}),
			`{"id":"key_1","kind":"key","versions":2,"created_at":"2026-05-01T01:00:00Z","changed_at":"2026-05-01T02:00:00Z","description":"pay"}`},
		{"secret", dataItemView(backupdata.Item{Kind: backupdata.KindSecret, ID: "db", Versions: 1, CreatedAt: at(9), ChangedAt: at(9),
			Description: "ignored", KeyID: "key_1"}),
			`{"id":"db","kind":"secret","versions":1,"created_at":"2026-05-01T01:00:00Z","changed_at":"2026-05-01T01:00:00Z","key_id":"key_1"}`},
		{"diff", diffView([]backupdata.Change{{Item: backupdata.Item{Kind: backupdata.KindSecret, ID: "db", Versions: 2}, What: "deleted"}}),
			`{"items":[{"id":"db","kind":"secret","change":"deleted","versions":2}]}`},
		{"empty diff", diffView(nil), `{"items":[]}`},
		{"verify ok", verifyView(&commands.VerifyReport{Backup: "bkp_2", Generation: 1, Checkpoints: 3, Events: 5, Sealed: 2}),
			`{"id":"bkp_2","generation":1,"checkpoints":3,"events":5,"sealed":2,"findings":[],"ok":true}`},
		{"verify findings", verifyView(&commands.VerifyReport{Backup: "bkp_2", Generation: 1, Checkpoints: 3,
			Findings: []commands.Finding{{Kind: commands.FindingGap, Seq: 3, Detail: "checkpoints 2 to 2 are missing"}}}),
			`{"id":"bkp_2","generation":1,"checkpoints":3,"events":0,"sealed":0,"findings":[{"kind":"gap","seq":3,"detail":"checkpoints 2 to 2 are missing"}],"ok":false}`},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, toJSON(tt.got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestDataTabsParse(t *testing.T) {
	tabs := DataTabs()
	if len(tabs) != 7 || tabs[0] != "full-keys" || tabs[6] != "deleted" {
		t.Errorf("DataTabs() = %v", tabs)
	}
	for _, tab := range tabs {
		if _, err := backupdata.ParseTab(tab); err != nil {
			t.Errorf("tab %q: %v", tab, err)
		}
	}
}

func TestBackupMetrics(t *testing.T) {
	full := time.Unix(1_777_000_000, 0)
	backups := []*domain.Backup{
		{ID: "bkp_on", Account: "acct_1", State: domain.StateEnabled, LastFullAt: full, LastIncremental: full.Add(5 * time.Minute)},
		{ID: "bkp_exp", Account: "acct_2", State: domain.StateExpired, LastFullAt: full},
		{ID: "bkp_off", Account: "acct_1", State: domain.StateNotEnabled},
		{ID: "bkp_bad", Account: "acct_3", State: domain.StateEnabled, LastFullAt: full,
			Failing: domain.Failure{Work: "incremental", Reason: "store slice: disk full", Since: full, Attempts: 3}},
	}
	var err error
	reg := prometheus.NewRegistry()
	s := &Server{Backups: &commands.BackupInstances{}, Auth: tokenAuth{}, Tenants: reg,
		BackupGauges:   func() ([]*domain.Backup, error) { return backups, err },
		BackupFailures: func() map[domain.BackupID]uint64 { return map[domain.BackupID]uint64{"bkp_bad": 7, "bkp_gone": 2} }}
	s.Handler()
	mfs, gerr := reg.Gather()
	if gerr != nil {
		t.Fatal(gerr)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "kmsbackup_backup_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			got[mf.GetName()+"{"+labels["backup"]+","+labels["account"]+"}"] = v
		}
	}
	f := float64(full.Unix())
	want := map[string]float64{
		"kmsbackup_backup_last_full_timestamp_seconds{bkp_on,acct_1}":         f,
		"kmsbackup_backup_last_incremental_timestamp_seconds{bkp_on,acct_1}":  f + 300,
		"kmsbackup_backup_last_full_timestamp_seconds{bkp_exp,acct_2}":        f,
		"kmsbackup_backup_last_incremental_timestamp_seconds{bkp_exp,acct_2}": 0,
		"kmsbackup_backup_last_full_timestamp_seconds{bkp_bad,acct_3}":        f,
		"kmsbackup_backup_last_incremental_timestamp_seconds{bkp_bad,acct_3}": 0,
		// Every instance with scheduled work says whether it fails, and how
		// often its work failed.
		"kmsbackup_backup_failing{bkp_on,acct_1}":         0,
		"kmsbackup_backup_failing{bkp_exp,acct_2}":        0,
		"kmsbackup_backup_failing{bkp_off,acct_1}":        0,
		"kmsbackup_backup_failing{bkp_bad,acct_3}":        1,
		"kmsbackup_backup_failures_total{bkp_on,acct_1}":  0,
		"kmsbackup_backup_failures_total{bkp_exp,acct_2}": 0,
		"kmsbackup_backup_failures_total{bkp_off,acct_1}": 0,
		"kmsbackup_backup_failures_total{bkp_bad,acct_3}": 7,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}

	err = errors.New("pebble: /secret/path corrupt")
	_, gerr = reg.Gather()
	if gerr == nil || strings.Contains(gerr.Error(), "secret") {
		t.Errorf("gather with a failing read model: %v, want an error without its details", gerr)
	}
}
