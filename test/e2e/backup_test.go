package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func items(t *testing.T, v map[string]any) []map[string]any {
	t.Helper()
	raw, _ := v["items"].([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, r := range raw {
		out = append(out, r.(map[string]any))
	}
	return out
}

func ids(list []map[string]any) []string {
	var out []string
	for _, it := range list {
		out = append(out, it["id"].(string))
	}
	return out
}

// TestBackupScenario drives backup instances through the CLI against a dev
// server on a manual clock: the default and a provisioned instance, enable
// with a first full, incrementals as the clock moves, the day lists, the
// viewable window, verify, a released KMS instance whose backup keeps
// everything, reset, expiry, renew and release.
func TestBackupScenario(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok

	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	list := items(t, s.MustJSON(tok, "backup-instance", "list"))
	if len(list) != 1 || list[0]["kind"] != "default" || list[0]["state"] != "not-enabled" || list[0]["region"] != "cn-hangzhou" {
		t.Fatalf("default backup instance: %v", list)
	}
	def := list[0]["id"].(string)

	bkp := s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "10", "--term", "1mo")
	id := str(t, bkp, "id")
	if bkp["kind"] != "provisioned" || bkp["state"] != "not-enabled" || bkp["expires_at"] != "2026-06-01T09:30:00Z" {
		t.Fatalf("provisioned: %v", bkp)
	}
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "before enable"), "id")

	on := s.MustJSON(tok, "backup-instance", "enable", id, "--kms-instance", inst, "--alias", "prod", "--time-zone", "UTC")
	if on["state"] != "enabled" || on["checkpoints"] != float64(1) || on["last_full_at"] != "2026-05-01T09:30:00Z" {
		t.Fatalf("after enable: %v", on)
	}
	// At most one backup instance per KMS instance.
	s.MustFail(tok, 4, []string{"already backed up"}, "backup-instance", "enable", def, "--kms-instance", inst, "--alias", "x")

	// Changes, then 12 minutes: two incrementals.
	s.MustJSON(tok, "kms", "key", "rotate", key)
	k2 := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	s.MustJSON(tok, "kms", "secret", "create", "db", "--instance", inst, "--key", key, "--value", "v1")
	s.MustJSON(tok, "dev", "clock", "advance", "12m")
	b := s.MustJSON(tok, "backup-instance", "show", id)
	if b["checkpoints"] != float64(3) || b["last_incremental_at"] != "2026-05-01T09:40:00Z" {
		t.Fatalf("after 12m: %v", b)
	}
	day1 := "2026-05-01"
	tab := func(day, tab string) []string {
		return ids(items(t, s.MustJSON(tok, "data", "list", id, "--day", day, "--tab", tab)))
	}
	if got := tab(day1, "full-keys"); len(got) != 1 || got[0] != key {
		t.Fatalf("full keys of day 1 = %v, want the key that existed at enable", got)
	}
	if got := tab(day1, "incremental-keys"); len(got) != 1 || got[0] != k2 {
		t.Fatalf("incremental keys of day 1 = %v (keys created before enabling are not listed)", got)
	}
	if got := tab(day1, "rotated-keys"); len(got) != 1 || got[0] != key {
		t.Fatalf("rotated keys of day 1 = %v", got)
	}
	if got := tab(day1, "incremental-secrets"); len(got) != 1 || got[0] != "db" {
		t.Fatalf("incremental secrets of day 1 = %v", got)
	}

	// The next day: a full at midnight holds everything; a deletion shows up.
	s.MustJSON(tok, "dev", "clock", "advance", "15h")
	if r := s.CLI(tok, "", "kms", "secret", "delete", "db"); r.Code != 0 {
		t.Fatalf("delete secret: %s", r.Stderr)
	}
	s.MustJSON(tok, "dev", "clock", "advance", "10m")
	day2 := "2026-05-02"
	if got := tab(day2, "full-keys"); len(got) != 2 {
		t.Fatalf("full keys of day 2 = %v", got)
	}
	if got := tab(day2, "full-secrets"); len(got) != 1 || got[0] != "db" {
		t.Fatalf("full secrets of day 2 = %v (the secret existed at midnight)", got)
	}
	if got := tab(day2, "deleted"); len(got) != 1 || got[0] != "db" {
		t.Fatalf("deleted on day 2 = %v", got)
	}
	diff := items(t, s.MustJSON(tok, "data", "diff", id, "--from", day1, "--to", day2))
	if len(diff) != 1 || diff[0]["id"] != "db" || diff[0]["change"] != "deleted" {
		t.Fatalf("diff = %v", diff)
	}
	// Paging.
	p1 := s.MustJSON(tok, "data", "list", id, "--day", day2, "--tab", "full-keys", "--page-size", "1")
	tokn, _ := p1["next_page_token"].(string)
	p2 := s.MustJSON(tok, "data", "list", id, "--day", day2, "--tab", "full-keys", "--page-size", "1", "--page-token", tokn)
	if len(items(t, p1)) != 1 || len(items(t, p2)) != 1 || ids(items(t, p1))[0] == ids(items(t, p2))[0] {
		t.Fatalf("paging: %v / %v", p1, p2)
	}

	// The viewable window: nothing before enabling; bad tabs and days refused.
	s.MustFail(tok, 6, []string{"not viewable"}, "data", "list", id, "--day", "2026-04-30", "--tab", "full-keys")
	s.MustFail(tok, 6, []string{"not viewable"}, "data", "list", id, "--day", "2026-05-03", "--tab", "full-keys")
	s.MustFail(tok, 2, []string{"tab"}, "data", "list", id, "--day", day1, "--tab", "everything")

	// Extend: upwards only, never the default.
	s.MustFail(tok, 2, []string{"only grow"}, "backup-instance", "extend", id, "--viewable-days", "9")
	s.MustFail(tok, 6, []string{"default"}, "backup-instance", "extend", def, "--viewable-days", "30")
	if v := s.MustJSON(tok, "backup-instance", "extend", id, "--viewable-days", "16"); v["viewable_days"] != float64(16) {
		t.Fatalf("extend: %v", v)
	}

	// Verify: chain, checksums, decryptability.
	if r := s.CLI(tok, "", "verify", id); r.Code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// Metrics carry the last backup times, for the admin (or metrics) token.
	req, _ := http.NewRequest("GET", "http://"+s.Addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), `kmsbackup_backup_last_full_timestamp_seconds{`) || !strings.Contains(string(m), id) {
		t.Fatal("metrics lack the last full backup time of the instance")
	}

	// Releasing the KMS instance loses nothing from the backup.
	if r := s.CLI(tok, "", "kms", "key", "delete", k2); r.Code != 0 {
		t.Fatalf("delete key: %s", r.Stderr)
	}
	s.MustJSON(tok, "kms", "instance", "release", inst)
	if got := tab(day2, "full-keys"); len(got) != 2 {
		t.Fatalf("after the KMS release, full keys of day 2 = %v", got)
	}
	if got := tab(day2, "deleted"); len(got) != 2 {
		t.Fatalf("after the KMS release, deleted on day 2 = %v (the last checkpoint before shredding)", got)
	}
	if r := s.CLI(tok, "", "verify", id); r.Code != 0 {
		t.Fatalf("verify after release: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// Reset needs --yes, destroys the data and unbinds.
	s.MustFail(tok, 2, nil, "backup-instance", "reset", id)
	reset := s.MustJSON(tok, "backup-instance", "reset", id, "--yes")
	if reset["state"] != "not-enabled" || reset["kms_instance"] != nil && reset["kms_instance"] != "" {
		t.Fatalf("after reset: %v", reset)
	}
	s.MustFail(tok, 6, nil, "data", "list", id, "--day", day2, "--tab", "full-keys")

	// Expiry after the term: everything but show and renew is refused; renew
	// reactivates; 15 days unrenewed releases.
	inst2 := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	s.MustJSON(tok, "backup-instance", "enable", id, "--kms-instance", inst2, "--alias", "again")
	s.MustJSON(tok, "dev", "clock", "advance", "31d")
	if v := s.MustJSON(tok, "backup-instance", "show", id); v["state"] != "expired" {
		t.Fatalf("after the term: %v", v)
	}
	s.MustFail(tok, 6, []string{"expired"}, "backup-instance", "extend", id, "--viewable-days", "20")
	s.MustFail(tok, 6, []string{"expired"}, "verify", id)
	if v := s.MustJSON(tok, "backup-instance", "renew", id, "--term", "1mo"); v["state"] != "enabled" {
		t.Fatalf("after renew: %v", v)
	}
	s.MustJSON(tok, "dev", "clock", "advance", "47d")
	if v := s.MustJSON(tok, "backup-instance", "show", id); v["state"] != "released" {
		t.Fatalf("15 days after the renewed term: %v", v)
	}
	s.MustFail(tok, 6, []string{"released"}, "backup-instance", "renew", id, "--term", "1mo")
}
