package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/domain"
)

// scrape returns the value of one exposed sample of /metrics, or false.
func scrape(t *testing.T, s *Server, sample string) (float64, bool) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.Addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f, true
		}
	}
	return 0, false
}

func findingsSample(b map[string]any) string {
	return fmt.Sprintf("kmsbackup_verify_findings{account=%q,backup=%q}", b["account"], b["id"])
}

// TestScrubThroughTheServer: the real server, on a manual clock, scrubs
// every backup when asked (kmsbackup dev scrub) and exports the result on
// /metrics and in backup-instance show; a backup whose slices are removed
// from the data directory while the server is stopped is reported under
// its own label after the restart, its neighbour stays at 0, and the log
// says which one.
func TestScrubThroughTheServer(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	var bs []map[string]any
	for i := range 2 {
		inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
		id := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "10", "--term", "1mo"), "id")
		s.MustJSON(tok, "backup-instance", "enable", id, "--kms-instance", inst, "--alias", fmt.Sprint("b", i), "--time-zone", "UTC")
		s.MustJSON(tok, "kms", "key", "create", "--instance", inst)
	}
	s.MustJSON(tok, "dev", "clock", "advance", "12m")
	for _, b := range items(t, s.MustJSON(tok, "backup-instance", "list")) {
		if b["kind"] == "provisioned" {
			bs = append(bs, b)
		}
	}
	if len(bs) != 2 {
		t.Fatalf("backup instances: %v", bs)
	}
	if _, ok := scrape(t, s, findingsSample(bs[0])); ok {
		t.Fatal("findings exported before any scrub")
	}
	if v, _ := scrape(t, s, "kmsbackup_verify_last_run_timestamp_seconds"); v != 0 {
		t.Fatalf("last run before any scrub: %v", v)
	}

	run := s.MustJSON(tok, "dev", "scrub")
	if run["checked"] != float64(2) || run["with_findings"] != float64(0) || run["errors"] != float64(0) ||
		run["ended_at"] != "2026-05-01T09:42:00Z" {
		t.Fatalf("first scrub: %v", run)
	}
	for _, b := range bs {
		if v, ok := scrape(t, s, findingsSample(b)); !ok || v != 0 {
			t.Fatalf("%s = %v %v, want 0", findingsSample(b), v, ok)
		}
	}
	at := time.Date(2026, 5, 1, 9, 42, 0, 0, time.UTC)
	if v, _ := scrape(t, s, "kmsbackup_verify_last_run_timestamp_seconds"); v != float64(at.Unix()) {
		t.Fatalf("last run at %v, want %d", v, at.Unix())
	}
	if v, _ := scrape(t, s, "kmsbackup_verify_last_run_backups"); v != 2 {
		t.Fatalf("backups checked: %v", v)
	}
	shown := s.MustJSON(tok, "backup-instance", "show", str(t, bs[0], "id"))
	if ls, _ := shown["last_scrub"].(map[string]any); ls["outcome"] != "clean" || ls["at"] != "2026-05-01T09:42:00Z" {
		t.Fatalf("show after a clean scrub: %v", shown)
	}

	// Bit rot while the server is down: one backup's slices are gone.
	damaged := str(t, bs[1], "id")
	s.Stop()
	st, err := pebblestore.Open(filepath.Join(s.DataDir, "db"), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = st.DestroyBlobs(context.Background(), domain.DataRef(domain.BackupID(damaged), 0))
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	s.Restart()

	run = s.MustJSON(tok, "dev", "scrub")
	if run["checked"] != float64(2) || run["with_findings"] != float64(1) || run["errors"] != float64(0) {
		t.Fatalf("scrub after the damage: %v", run)
	}
	if v, _ := scrape(t, s, findingsSample(bs[1])); v < 1 {
		t.Fatalf("%s = %v, want the missing slices counted", findingsSample(bs[1]), v)
	}
	if v, ok := scrape(t, s, findingsSample(bs[0])); !ok || v != 0 {
		t.Fatalf("%s = %v %v, want 0", findingsSample(bs[0]), v, ok)
	}
	if v, ok := scrape(t, s, "kmsbackup_verify_errors_total"); !ok || v != 0 {
		t.Fatalf("errors: %v %v", v, ok)
	}
	shown = s.MustJSON(tok, "backup-instance", "show", damaged)
	ls, _ := shown["last_scrub"].(map[string]any)
	if kinds, _ := ls["kinds"].([]any); ls["outcome"] != "findings" || len(kinds) != 1 || kinds[0] != "missing-slice" {
		t.Fatalf("show after the damage: %v", shown)
	}
	if r := s.CLI(tok, "", "backup-instance", "show", damaged); r.Code != 0 ||
		!strings.Contains(r.Stdout, "findings (missing-slice); kmsbackup verify "+damaged) {
		t.Fatalf("show, table: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	s.MustFail(tok, 9, nil, "verify", damaged)
	var warned int
	for _, line := range strings.Split(s.Logs(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "verification found problems") {
			if !strings.Contains(line, damaged) || !strings.Contains(line, "kinds=missing-slice") {
				t.Fatalf("warning about another instance: %s", line)
			}
			warned++
		}
	}
	if warned != 1 {
		t.Fatalf("%d warnings about the damaged instance, want 1; logs:\n%s", warned, s.Logs())
	}
}
