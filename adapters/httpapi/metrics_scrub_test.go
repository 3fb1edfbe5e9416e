package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// fakeScrub is a DevScrub that returns a fixed run.
type fakeScrub struct{ run commands.ScrubRun }

func (f *fakeScrub) RunOnce(context.Context) (commands.ScrubRun, error) { return f.run, nil }

func TestScrubMetrics(t *testing.T) {
	end := time.Date(2026, 5, 2, 0, 10, 0, 0, time.UTC)
	st := commands.ScrubStatus{
		LastRun: commands.ScrubRun{Started: end.Add(-90 * time.Second), Ended: end, Checked: 2, WithFindings: 1, Errors: 1},
		Results: []commands.ScrubResult{
			{Backup: "bkp_1", Account: "acct_1", Report: &commands.VerifyReport{}},
			{Backup: "bkp_2", Account: "acct_2", Report: &commands.VerifyReport{Findings: []commands.Finding{{Kind: "gap"}, {Kind: "tamper"}}}},
			{Backup: "bkp_3", Account: "acct_2", Err: errors.New("unavailable")},
		},
		Errors: 4,
	}
	c := &scrubCollector{status: func() commands.ScrubStatus { return st }}
	f := &scrubFindings{status: c.status}
	for _, c := range []prometheus.Collector{c, f} {
		if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) != 0 {
			t.Fatalf("promtool's lint: %v %+v", err, problems)
		}
	}
	want := `
# HELP kmsbackup_verify_backups_with_findings Backup instances whose last background verification found damage (which ones: kmsbackup_verify_findings, with the metrics token).
# TYPE kmsbackup_verify_backups_with_findings gauge
kmsbackup_verify_backups_with_findings 1
# HELP kmsbackup_verify_errors_total Background verifications of a backup instance that could not be done because its data could not be read (the server log names the instance).
# TYPE kmsbackup_verify_errors_total counter
kmsbackup_verify_errors_total 4
# HELP kmsbackup_verify_last_run_backups Backup instances the last complete background verification verified, with or without findings.
# TYPE kmsbackup_verify_last_run_backups gauge
kmsbackup_verify_last_run_backups 2
# HELP kmsbackup_verify_last_run_duration_seconds How long the last complete background verification of every backup instance took.
# TYPE kmsbackup_verify_last_run_duration_seconds gauge
kmsbackup_verify_last_run_duration_seconds 90
# HELP kmsbackup_verify_last_run_timestamp_seconds End of the last complete background verification of every backup instance (Unix seconds; 0: none since the server started).
# TYPE kmsbackup_verify_last_run_timestamp_seconds gauge
kmsbackup_verify_last_run_timestamp_seconds 1.7776806e+09
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	// Per backup instance, for the metrics token only.
	want = `
# HELP kmsbackup_verify_findings Findings of the last background verification of a backup instance (0: clean; kmsbackup verify lists them).
# TYPE kmsbackup_verify_findings gauge
kmsbackup_verify_findings{account="acct_1",backup="bkp_1"} 0
kmsbackup_verify_findings{account="acct_2",backup="bkp_2"} 2
`
	if err := testutil.CollectAndCompare(f, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestDevScrub(t *testing.T) {
	without := MustServe(t, &Server{Backups: &commands.BackupInstances{}, DevClock: &fakeClock{}})
	if status, eb := call(t, without, "POST", "/v1/dev/scrub", ""); status != http.StatusNotFound || eb.Error.Code != "not_found" {
		t.Errorf("POST /v1/dev/scrub without DevScrub: %d %+v", status, eb.Error)
	}
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	run := commands.ScrubRun{Started: start, Ended: start.Add(1500 * time.Millisecond), Checked: 3, WithFindings: 1, Errors: 1, Skipped: 2}
	c := MustServe(t, &Server{DevScrub: &fakeScrub{run: run}})
	got, err := c.DevScrub(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := ScrubRunView{StartedAt: start, EndedAt: run.Ended, DurationSeconds: 1.5, Checked: 3, WithFindings: 1, Errors: 1, Skipped: 2}
	if got != want {
		t.Fatalf("DevScrub = %+v, want %+v", got, want)
	}
}

func TestLastScrubView(t *testing.T) {
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	b := &domain.Backup{ID: "bkp_1", Generation: 2}
	for _, tt := range []struct {
		r       commands.ScrubResult
		outcome string
	}{
		{commands.ScrubResult{Generation: 2, At: at, Report: &commands.VerifyReport{}}, "clean"},
		{commands.ScrubResult{Generation: 2, At: at, Report: &commands.VerifyReport{Findings: []commands.Finding{{Kind: "gap"}}}}, "findings"},
		{commands.ScrubResult{Generation: 2, At: at, Err: errors.New("unavailable")}, "error"},
	} {
		if v := lastScrubView(b, tt.r); v == nil || v.Outcome != tt.outcome || !v.At.Equal(at) {
			t.Errorf("lastScrubView(%+v) = %+v, want %s", tt.r, v, tt.outcome)
		}
	}
	if v := lastScrubView(b, commands.ScrubResult{Generation: 1, At: at, Report: &commands.VerifyReport{}}); v != nil {
		t.Errorf("a result of a reset generation is shown: %+v", v)
	}
}
