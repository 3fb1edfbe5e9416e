package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRenewAfterTheKMSInstanceWasReleased is the case found from outside,
// through the real binary on a manual clock: a provisioned backup instance
// with a 1-month term expires, its KMS instance is released, and it is
// renewed. Every "dev clock advance" used to fail from then on, for every
// account ("envelope: open kms_...: no data key", exit 3). Now the clock
// moves for everyone, the renewed instance's data stays viewable and
// restorable, and "backup-instance show" tells that its source was
// released and what it never backed up.
func TestRenewAfterTheKMSInstanceWasReleased(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	otherTok := str(t, s.MustJSON(AdminToken, "account", "create", "other"), "token")

	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "payments"), "id")
	s.MustJSON(tok, "kms", "secret", "create", "db", "--instance", inst, "--key", key, "--value", "v1")
	bkp := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "60", "--term", "1mo"), "id")
	s.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "prod")
	// Another account's backup, which must keep its schedule.
	oInst := str(t, s.MustJSON(otherTok, "kms", "instance", "create", "--region", "eu-central-1"), "id")
	oBkp := str(t, s.MustJSON(otherTok, "backup-instance", "create", "--region", "eu-central-1", "--viewable-days", "30", "--term", "1y"), "id")
	s.MustJSON(otherTok, "backup-instance", "enable", oBkp, "--kms-instance", oInst, "--alias", "theirs")

	s.MustJSON(tok, "dev", "clock", "advance", "32d") // past the expiry on 2026-06-01T09:30Z
	if b := s.MustJSON(tok, "backup-instance", "show", bkp); b["state"] != "expired" {
		t.Fatalf("after the term: %v", b)
	}
	s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "after expiry")
	s.MustJSON(tok, "kms", "instance", "release", inst)
	s.MustJSON(tok, "backup-instance", "renew", bkp, "--term", "1mo")

	// The clock moves, for this account and for the other.
	s.MustJSON(tok, "dev", "clock", "advance", "1d")
	s.MustJSON(otherTok, "dev", "clock", "advance", "10m")
	b := s.MustJSON(tok, "backup-instance", "show", bkp)
	src, _ := b["source_released"].(map[string]any)
	if b["state"] != "enabled" || b["failing"] != nil || src == nil || src["kms_instance"] != inst || src["never_backed_up"] != float64(2) {
		t.Fatalf("the renewed instance: %v", b)
	}
	if o := s.MustJSON(otherTok, "backup-instance", "show", oBkp); o["last_incremental_at"] != "2026-06-03T09:40:00Z" || o["failing"] != nil {
		t.Fatalf("the other account's backup: %v", o)
	}
	show := s.CLI(tok, "", "backup-instance", "show", bkp)
	if show.Code != 0 || !strings.Contains(show.Stdout, "Source:            KMS instance "+inst+" was released") ||
		!strings.Contains(show.Stdout, "its last 2 events") || !strings.Contains(show.Stdout, "were never backed up") ||
		strings.Contains(show.Stdout, "Failing") {
		t.Fatalf("backup-instance show: exit %d\n%s%s", show.Code, show.Stdout, show.Stderr)
	}
	if list := s.CLI(tok, "", "backup-instance", "list"); !strings.Contains(list.Stdout, "enabled, source released") {
		t.Fatalf("backup-instance list:\n%s", list.Stdout)
	}

	// Its data: viewable, verified, and restorable into a new instance.
	if got := ids(items(t, s.MustJSON(tok, "data", "list", bkp, "--day", "2026-05-01", "--tab", "full-keys"))); len(got) != 1 || got[0] != key {
		t.Fatalf("full keys of 2026-05-01: %v", got)
	}
	if r := s.CLI(tok, "", "verify", bkp); r.Code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	fresh := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	res := s.MustJSON(tok, "restore", "--from", bkp, "--day", "2026-06-03", "--key", key, "--secret", "db", "--to-instance", fresh)
	if res["applied"] != true || res["restored"] != float64(2) {
		t.Fatalf("restore: %v", res)
	}
	if r := s.CLI(tok, "", "kms", "secret", "get", "db"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "v1" {
		t.Fatalf("the restored secret: exit %d %q", r.Code, r.Stdout)
	}

	// Nothing fails: the server is ready and names no failing backup.
	resp, err := http.Get("http://" + s.Addr + "/readyz?verbose")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "[+]projection backup-state ok\n") ||
		strings.Contains(string(body), "[!]") || !strings.HasSuffix(string(body), "readyz check passed\n") {
		t.Fatalf("/readyz?verbose: %d\n%s", resp.StatusCode, body)
	}
}
