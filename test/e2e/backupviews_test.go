package e2e

import (
	"html"
	"strings"
	"testing"
)

// TestBackupDaysFollowTheRegion: enabled without a time zone, a backup of
// cn-hangzhou counts its days in Asia/Shanghai (its first daily full is at
// 16:00 UTC), and the command line and the console show its times in that
// zone with the offset; JSON keeps UTC and names the zone.
func TestBackupDaysFollowTheRegion(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	bkp := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "10", "--term", "1mo"), "id")
	on := s.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "prod")
	if on["time_zone"] != "Asia/Shanghai" {
		t.Fatalf("time zone %v, want the region's Asia/Shanghai", on["time_zone"])
	}
	s.MustJSON(tok, "dev", "clock", "advance", "7h")
	b := s.MustJSON(tok, "backup-instance", "show", bkp)
	if b["last_full_at"] != "2026-05-01T16:00:00Z" {
		t.Fatalf("last full %v, want local midnight 2026-05-02T00:00+08:00 (16:00 UTC)", b["last_full_at"])
	}
	show := s.CLI(tok, "", "backup-instance", "show", bkp)
	if show.Code != 0 || !strings.Contains(show.Stdout, "2026-05-02T00:00:00+08:00") || !strings.Contains(show.Stdout, "2026-06-01T17:30:00+08:00") {
		t.Fatalf("backup-instance show:\n%s%s", show.Stdout, show.Stderr)
	}
	cps := s.CLI(tok, "", "data", "checkpoints", bkp, "--day", "2026-05-02")
	if cps.Code != 0 || !strings.Contains(cps.Stdout, "2026-05-02T00:00:00+08:00") || strings.Contains(cps.Stdout, "Z ") {
		t.Fatalf("data checkpoints:\n%s%s", cps.Stdout, cps.Stderr)
	}
	j := items(t, s.MustJSON(tok, "data", "checkpoints", bkp, "--day", "2026-05-02"))
	if len(j) == 0 || j[0]["at"] != "2026-05-01T16:00:00Z" || j[0]["time_zone"] != "Asia/Shanghai" {
		t.Fatalf("data checkpoints -o json: %v", j)
	}
	w := signIn(t, s, tok)
	resp, body := w.do("GET", "/backups", nil)
	wantStatus(t, "/backups", resp, html.UnescapeString(body), 200, "2026-05-02 00:00 +08:00", "2026-06-01 17:30 +08:00")
	// A region the product does not know counts in UTC.
	inst2 := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "xx-nowhere-1"), "id")
	b2 := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "xx-nowhere-1", "--viewable-days", "10", "--term", "1mo"), "id")
	if v := s.MustJSON(tok, "backup-instance", "enable", b2, "--kms-instance", inst2, "--alias", "x"); v["time_zone"] != "UTC" {
		t.Fatalf("unknown region's zone %v, want UTC", v["time_zone"])
	}
}

// TestReleasedBackupsAreHiddenUnlessAsked: a released backup instance has
// no KMS binding any more and is left out of lists unless asked for.
func TestReleasedBackupsAreHiddenUnlessAsked(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	bkp := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "7", "--term", "1mo"), "id")
	s.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "gone")
	// Once the KMS instance is released only the daily full is taken, so
	// the term passes quickly.
	s.MustJSON(tok, "kms", "instance", "release", inst)
	s.MustJSON(tok, "dev", "clock", "advance", "47d")
	b := s.MustJSON(tok, "backup-instance", "show", bkp)
	if b["state"] != "released" || b["kms_instance"] != nil && b["kms_instance"] != "" {
		t.Fatalf("released backup instance: %v", b)
	}
	for _, it := range items(t, s.MustJSON(tok, "backup-instance", "list")) {
		if it["id"] == bkp {
			t.Fatalf("backup-instance list shows the released instance: %v", it)
		}
	}
	found := false
	for _, it := range items(t, s.MustJSON(tok, "backup-instance", "list", "--all")) {
		found = found || it["id"] == bkp && it["state"] == "released"
	}
	if !found {
		t.Fatal("backup-instance list --all does not show the released instance")
	}
	status, _, _ := api(t, s, tok, "GET", "/v1/backup-instances?all=true", "")
	if status != 200 {
		t.Fatalf("GET /v1/backup-instances?all=true: %d", status)
	}
	w := signIn(t, s, tok)
	resp, body := w.do("GET", "/backups", nil)
	wantStatus(t, "/backups", resp, body, 200, "/backups?all=1")
	if strings.Contains(body, bkp) {
		t.Fatal("the console's list shows the released instance")
	}
	resp, body = w.do("GET", "/backups?all=1", nil)
	wantStatus(t, "/backups?all=1", resp, body, 200, bkp, "released")
}
