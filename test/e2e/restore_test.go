package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// restoreSetup makes a KMS instance with keys, secrets and ciphertexts,
// backed up by a provisioned instance on a manual clock.
type restoreSetup struct {
	s           *Server
	tok         string
	inst, bkp   string
	k1, k2      string
	ct1, ct1old string
	day         string
}

func newRestoreSetup(t *testing.T) *restoreSetup {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	r := &restoreSetup{s: s, tok: s.DevTok, day: "2026-05-01"}
	tok := r.tok
	r.inst = str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	r.bkp = str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "30", "--term", "1y"), "id")
	s.MustJSON(tok, "backup-instance", "enable", r.bkp, "--kms-instance", r.inst, "--alias", "prod")
	r.k1 = str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", r.inst, "--description", "payments"), "id")
	r.k2 = str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", r.inst), "id")
	r.ct1old = str(t, s.MustJSON(tok, "kms", "encrypt", "--key", r.k1, "--plaintext", "made with version 1"), "ciphertext")
	s.MustJSON(tok, "kms", "key", "rotate", r.k1)
	r.ct1 = str(t, s.MustJSON(tok, "kms", "encrypt", "--key", r.k1, "--plaintext", "made with version 2"), "ciphertext")
	s.MustJSON(tok, "kms", "secret", "create", "db", "--instance", r.inst, "--key", r.k1, "--value", "db-v1")
	s.MustJSON(tok, "kms", "secret", "rotate", "db", "--value", "db-v2")
	s.MustJSON(tok, "kms", "secret", "create", "api", "--instance", r.inst, "--key", r.k2, "--value", "api-v1")
	s.MustJSON(tok, "dev", "clock", "advance", "10m")
	return r
}

// readsBack checks that the old ciphertexts decrypt and the secrets read
// back, optionally in one region.
func (r *restoreSetup) readsBack(t *testing.T, region string) {
	t.Helper()
	s, tok := r.s, r.tok
	reg := []string{}
	if region != "" {
		reg = []string{"--region", region}
	}
	for ct, want := range map[string]string{r.ct1old: "made with version 1", r.ct1: "made with version 2"} {
		if out := s.CLI(tok, "", append([]string{"kms", "decrypt", "--ciphertext", ct}, reg...)...); out.Code != 0 || out.Stdout != want {
			t.Fatalf("decrypt after restore: exit %d %q %s", out.Code, out.Stdout, out.Stderr)
		}
	}
	for _, c := range []struct{ name, version, want string }{{"db", "1", "db-v1"}, {"db", "2", "db-v2"}, {"api", "1", "api-v1"}} {
		if out := s.CLI(tok, "", append([]string{"kms", "secret", "get", c.name, "--version", c.version}, reg...)...); out.Code != 0 || out.Stdout != c.want {
			t.Fatalf("secret %s v%s after restore: exit %d %q %s", c.name, c.version, out.Code, out.Stdout, out.Stderr)
		}
	}
}

// (a) A released KMS instance's day is restored whole into a new instance.
func TestRestoreReleasedInstance(t *testing.T) {
	r := newRestoreSetup(t)
	s, tok := r.s, r.tok
	s.MustJSON(tok, "kms", "instance", "release", r.inst)
	s.MustFail(tok, 3, nil, "kms", "decrypt", "--ciphertext", r.ct1)
	fresh := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	// The dry run finds nothing to stop it and writes nothing.
	if out := s.CLI(tok, "", "restore", "--from", r.bkp, "--day", r.day, "--all", "--to-instance", fresh, "--dry-run"); out.Code != 0 {
		t.Fatalf("dry run: exit %d\n%s%s", out.Code, out.Stdout, out.Stderr)
	}
	if in := s.MustJSON(tok, "kms", "instance", "show", fresh); in["keys"] != float64(0) {
		t.Fatalf("the dry run wrote: %v", in)
	}
	res := s.MustJSON(tok, "restore", "--from", r.bkp, "--day", r.day, "--all", "--to-instance", fresh)
	if res["applied"] != true || res["restored"] != float64(4) {
		t.Fatalf("restore --all: %v", res)
	}
	r.readsBack(t, "")
	// Safe to retry: nothing duplicated, nothing fails.
	again := s.MustJSON(tok, "restore", "--from", r.bkp, "--day", r.day, "--all", "--to-instance", fresh)
	if again["applied"] != true || again["restored"] != float64(0) || again["already_present"] != float64(4) {
		t.Fatalf("retry: %v", again)
	}
	// Every restored item is audited, in the record of its batch.
	audit := items(t, s.MustJSON(tok, "audit", "list", "--backup", r.bkp))
	n, records := 0, 0
	for _, a := range audit {
		if a["action"] == "restore" {
			records++
			for _, l := range []string{"keys", "secrets"} {
				if l, ok := a[l].([]any); ok {
					n += len(l)
				}
			}
		}
	}
	if n != 4 || records != 1 {
		t.Fatalf("audit has %d restore records of %d items, want one of 4: %v", records, n, audit)
	}
}

// (b) A key and a secret deleted by mistake come back from the day they
// still existed, with all their versions.
func TestRestoreDeletedByMistake(t *testing.T) {
	r := newRestoreSetup(t)
	s, tok := r.s, r.tok
	if out := s.CLI(tok, "", "kms", "secret", "delete", "api"); out.Code != 0 {
		t.Fatal(out.Stderr)
	}
	if out := s.CLI(tok, "", "kms", "key", "delete", r.k2); out.Code != 0 {
		t.Fatal(out.Stderr)
	}
	s.MustJSON(tok, "dev", "clock", "advance", "10m")
	// A key that still lives in the region cannot be restored next to it.
	other := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	out := s.MustFail(tok, 6, []string{"finding"}, "restore", "--from", r.bkp, "--day", r.day, "--key", r.k1, "--to-instance", other)
	if !strings.Contains(out.Stdout, "key-exists") {
		t.Fatalf("the plan's findings do not name key-exists:\n%s", out.Stdout)
	}
	res := s.MustJSON(tok, "restore", "--from", r.bkp, "--day", r.day, "--key", r.k2, "--secret", "api", "--to-instance", r.inst)
	if res["applied"] != true || res["restored"] != float64(2) {
		t.Fatalf("restore: %v", res)
	}
	r.readsBack(t, "")
}

// (c) Keys and secrets are copied into an instance of another region.
func TestRestoreToAnotherRegion(t *testing.T) {
	r := newRestoreSetup(t)
	s, tok := r.s, r.tok
	dr := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "eu-central-1"), "id")
	res := s.MustJSON(tok, "restore", "--from", r.bkp, "--day", r.day, "--all", "--to-instance", dr, "--to-region", "eu-central-1")
	if res["applied"] != true || res["restored"] != float64(4) {
		t.Fatalf("restore: %v", res)
	}
	// The same key ID now lives in two regions: decrypt asks which.
	s.MustFail(tok, 6, []string{"--region"}, "kms", "decrypt", "--ciphertext", r.ct1)
	r.readsBack(t, "eu-central-1")
	r.readsBack(t, "cn-hangzhou")
	// Replay prints the state and a digest that is the same at the same point.
	a := s.MustJSON(tok, "replay", r.bkp, "--day", r.day)
	b := s.MustJSON(tok, "replay", r.bkp, "--day", r.day)
	if a["digest"] == nil || a["digest"] != b["digest"] || len(items(t, a)) != 4 {
		t.Fatalf("replay: %v", a)
	}
}

// TestRestoreAtAListedCheckpoint lists a day's checkpoints and plans
// restores at them: at the first (the full backup taken on enable, at the
// instant the key was made and rotated: the clock stood still) and at the
// last, the key has both versions; before the first, the backup holds
// nothing.
func TestRestoreAtAListedCheckpoint(t *testing.T) {
	r := newRestoreSetup(t)
	s, tok := r.s, r.tok
	cps := items(t, s.MustJSON(tok, "data", "checkpoints", r.bkp, "--day", r.day))
	var ats []string
	for _, c := range cps {
		ats = append(ats, c["at"].(string))
	}
	// Enabled at 09:30 (the full backup), then 09:35 and 09:40.
	if strings.Join(ats, " ") != "2026-05-01T09:30:00Z 2026-05-01T09:35:00Z 2026-05-01T09:40:00Z" || cps[0]["full"] != true || cps[1]["full"] != false {
		t.Fatalf("checkpoints of %s: %v", r.day, cps)
	}
	table := s.CLI(tok, "", "data", "checkpoints", r.bkp, "--day", r.day)
	if table.Code != 0 || !strings.Contains(table.Stdout, "full") || !strings.Contains(table.Stdout, "incremental") {
		t.Fatalf("checkpoints as a table: exit %d\n%s%s", table.Code, table.Stdout, table.Stderr)
	}
	dr := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "eu-west-1"), "id")
	planAt := func(at string) map[string]any {
		res := s.CLI(tok, "", "restore", "--from", r.bkp, "--day", r.day, "--at", at, "--key", r.k1, "--to-instance", dr, "--dry-run", "-o", "json")
		var v map[string]any
		if err := json.Unmarshal([]byte(res.Stdout), &v); err != nil {
			t.Fatalf("restore --at %s: exit %d: %v\n%s", at, res.Code, err, res.Stderr)
		}
		return v["plan"].(map[string]any)
	}
	last := planAt(ats[2])
	if its := items(t, last); len(its) != 1 || its[0]["versions"] != float64(2) || len(last["findings"].([]any)) != 0 {
		t.Fatalf("plan at %s: %v", ats[2], last)
	}
	first := planAt(ats[0])
	if its := items(t, first); len(its) != 1 || its[0]["versions"] != float64(2) || len(first["findings"].([]any)) != 0 {
		t.Fatalf("plan at %s: %v", ats[0], first)
	}
	s.MustFail(tok, 6, []string{"nothing before its first checkpoint"}, "restore", "--from", r.bkp, "--at", "2026-05-01T09:29:00Z",
		"--key", r.k1, "--to-instance", dr, "--dry-run")
	s.MustFail(tok, 6, []string{"not viewable"}, "data", "checkpoints", r.bkp, "--day", "2026-04-30")
}
