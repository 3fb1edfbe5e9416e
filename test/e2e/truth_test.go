package e2e

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestRestoreIntoItsSourceSaysAlreadyPresent: a restore into the instance
// a backup was taken from, where nothing was deleted, finds every item
// already present and identical, and every edge says that nothing had to
// be restored, never that something was.
func TestRestoreIntoItsSourceSaysAlreadyPresent(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	inst, bkp := enabledBackup(t, s, tok)
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	s.MustJSON(tok, "kms", "secret", "create", "db", "--instance", inst, "--key", key, "--value", "v1")
	s.MustJSON(tok, "dev", "clock", "advance", "10m")
	args := []string{"restore", "--from", bkp, "--day", "2026-05-01", "--all", "--to-instance", inst}

	// The API (and -o json): applied, nothing restored, both present.
	res := s.MustJSON(tok, args...)
	if res["applied"] != true || res["restored"] != float64(0) || res["already_present"] != float64(2) {
		t.Fatalf("restore into its source: %v", res)
	}
	for _, it := range res["plan"].(map[string]any)["items"].([]any) {
		if st := it.(map[string]any)["status"]; st != "already-present" {
			t.Fatalf("item %v: status %v, want already-present", it, st)
		}
	}
	// The command line, planned and applied.
	for _, extra := range [][]string{{"--dry-run"}, nil} {
		out := s.CLI(tok, "", append(args, extra...)...)
		want := regexp.MustCompile(`Result: +nothing to restore: the 2 items are already present in ` + inst + `, identical to the backup`)
		if out.Code != 0 || !want.MatchString(out.Stdout) || strings.Contains(out.Stdout, "Restored:") {
			t.Fatalf("kmsbackup %s: exit %d, want a result saying %q and no Restored line:\n%s%s",
				strings.Join(append(args, extra...), " "), out.Code, want, out.Stdout, out.Stderr)
		}
	}
	// The console: the plan and the result.
	w := signIn(t, s, tok)
	form := url.Values{"day": {"2026-05-01"}, "all": {"1"}, "to_instance": {inst}}
	resp, body := w.do("POST", "/backups/"+bkp+"/restore/plan", form)
	wantStatus(t, "plan", resp, body, 200, "Nothing to restore", "already present in <code>"+inst+"</code>")
	resp, body = w.do("POST", "/backups/"+bkp+"/restore/apply", form)
	wantStatus(t, "apply", resp, body, 200, "Nothing to restore", "already present in <code>"+inst+"</code>")
	if strings.Contains(body, "Restored 0") {
		t.Fatalf("the console says it restored none:\n%s", body)
	}
}

// TestWhatTheEdgesSay: verify of an instance that holds no backup yet says
// there is nothing to verify (exit 0); an enable refused for its KMS
// instance names both instances, each in its place; a plan from a
// released backup instance says it is released, not that renewing helps.
func TestWhatTheEdgesSay(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	bkp := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "10", "--term", "1mo"), "id")

	out := s.CLI(tok, "", "verify", bkp)
	if want := "nothing to verify: " + bkp + " holds no backup yet"; out.Code != 0 || !strings.Contains(out.Stdout, want) || strings.Contains(out.Stdout, "OK, no findings") {
		t.Fatalf("verify of an instance never enabled: exit %d, want %q:\n%s%s", out.Code, want, out.Stdout, out.Stderr)
	}
	w := signIn(t, s, tok)
	resp, body := w.do("POST", "/backups/"+bkp+"/verify", url.Values{})
	wantStatus(t, "console verify", resp, body, 200, "Nothing to verify")
	if strings.Contains(body, "Sound.") {
		t.Fatalf("the console calls an instance without backups sound:\n%s", body)
	}

	gone := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	s.MustJSON(tok, "kms", "instance", "release", gone)
	s.MustFail(tok, 6, []string{"enable backup instance " + bkp + ": KMS instance " + gone + " is released"},
		"backup-instance", "enable", bkp, "--kms-instance", gone, "--alias", "prod")

	// The term ends on June 1, the instance is released 15 days later.
	s.MustJSON(tok, "dev", "clock", "advance", "47d")
	if st := s.MustJSON(tok, "backup-instance", "show", bkp)["state"]; st != "released" {
		t.Fatalf("state %v after 47 days, want released", st)
	}
	out = s.CLI(tok, "", "restore", "--from", bkp, "--day", "2026-06-16", "--all", "--to-instance", inst, "--dry-run")
	if out.Code != 6 || !strings.Contains(out.Stdout, "backup-released") || !strings.Contains(out.Stdout, "cannot be restored from or renewed") ||
		strings.Contains(out.Stdout, "renew it first") {
		t.Fatalf("plan from a released instance: exit %d\n%s%s", out.Code, out.Stdout, out.Stderr)
	}
}

// TestPlanReportsKeyInTheWayAndQuotaTogether: a plan where one key ID is
// taken in the region and the others exceed the target's key quota
// reports both findings at once.
func TestPlanReportsKeyInTheWayAndQuotaTogether(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	inst, bkp := enabledBackup(t, s, tok)
	k1 := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	k2 := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	s.MustJSON(tok, "dev", "clock", "advance", "5m")
	s.MustJSON(tok, "kms", "key", "delete", k2) // k2 is free in the region again, k1 is not
	full := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou", "--key-quota", "1"), "id")
	s.MustJSON(tok, "kms", "key", "create", "--instance", full)
	s.MustJSON(tok, "dev", "clock", "advance", "5m")

	out := s.CLI(tok, "", "restore", "--from", bkp, "--day", "2026-05-01", "--all", "--to-instance", full, "--dry-run", "-o", "json")
	if out.Code != 6 {
		t.Fatalf("plan: exit %d, want 6\n%s%s", out.Code, out.Stdout, out.Stderr)
	}
	var res struct {
		Plan struct {
			Findings []struct{ Code, Item string }
		}
	}
	if err := json.Unmarshal([]byte(out.Stdout), &res); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range res.Plan.Findings {
		got[f.Code] = f.Item
	}
	if len(res.Plan.Findings) != 2 || got["key-exists"] != k1 || got["key-quota-exceeded"] != full {
		t.Fatalf("findings %+v, want key-exists for %s and key-quota-exceeded for %s", res.Plan.Findings, k1, full)
	}
}
