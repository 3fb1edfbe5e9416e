package e2e

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestManualClockNeverRewinds: a restart on a data directory whose log
// holds a later clock continues from it (and says so in its banner); an
// earlier --clock-start is refused, and the days stay viewable. It is the
// README's backup tour and its restart.
func TestManualClockNeverRewinds(t *testing.T) {
	const start = "2026-05-01T09:30:00Z"
	s := StartServer(t, "", "--clock", "manual", "--clock-start", start)
	tok := s.DevTok
	_, bkp := enabledBackup(t, s, tok)
	s.MustJSON(tok, "dev", "clock", "advance", "12m")
	s.MustJSON(tok, "dev", "clock", "advance", "2d") // the last checkpoint at 09:40, the clock at 09:42
	s.Stop()

	// The same command again: the earlier start is refused, nothing written.
	mustRefuse(t, s.DataDir, 2, []string{"--clock-start " + start, "2026-05-03T09:42:00Z"},
		"--dev", "--dev-admin-token", AdminToken, "--clock", "manual", "--clock-start", start)

	// Without --clock-start it continues where it left off.
	s = StartServer(t, s.DataDir, "--clock", "manual")
	if !strings.Contains(s.Logs(), "2026-05-03T09:42:00Z") {
		t.Fatalf("the banner does not show the clock:\n%s", s.Logs())
	}
	if v := s.MustJSON(tok, "dev", "clock", "show"); v["now"] != "2026-05-03T09:42:00Z" {
		t.Fatalf("clock after the restart: %v", v)
	}
	s.MustJSON(tok, "data", "list", bkp, "--day", "2026-05-03", "--tab", "full-keys")
	before := s.MustJSON(tok, "backup-instance", "show", bkp)["checkpoints"].(float64)
	if v := s.MustJSON(tok, "dev", "clock", "advance", "10m"); v["work"] != float64(2) || v["now"] != "2026-05-03T09:52:00Z" {
		t.Fatalf("advance after the restart: %v, want 2 incrementals (09:45, 09:50)", v)
	}
	if after := s.MustJSON(tok, "backup-instance", "show", bkp)["checkpoints"].(float64); after != before+2 {
		t.Fatalf("checkpoints %v after %v", after, before)
	}
	// A later start moves it forward, as a downtime would.
	s.Stop()
	s = StartServer(t, s.DataDir, "--clock", "manual", "--clock-start", "2026-05-04T00:20:00Z")
	if v := s.MustJSON(tok, "dev", "clock", "show"); v["now"] != "2026-05-04T00:20:00Z" {
		t.Fatalf("clock after a later start: %v", v)
	}
}

// TestRealClockBehindTheLastCheckpoint: a server on the real clock whose
// data holds a checkpoint from its future logs it and says so on
// /readyz?verbose.
func TestRealClockBehindTheLastCheckpoint(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2099-01-01T00:00:00Z")
	_, bkp := enabledBackup(t, s, s.DevTok)
	s.Stop()
	s = StartServer(t, s.DataDir)
	waitReady(t, s)
	resp, err := http.Get("http://" + s.Addr + "/readyz?verbose")
	if err != nil {
		t.Fatal(err)
	}
	body := new(strings.Builder)
	_, _ = io.Copy(body, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(body.String(), "[!]clock") || !strings.Contains(body.String(), "2099-01-01T") || !strings.Contains(body.String(), bkp) {
		t.Fatalf("/readyz?verbose: %d\n%s", resp.StatusCode, body)
	}
	if !strings.Contains(s.Logs(), "behind the last checkpoint") {
		t.Fatalf("the log does not say the clock is behind:\n%s", lastLines(s.Logs(), 30))
	}
}

// enabledBackup creates a KMS instance of cn-hangzhou and a provisioned
// backup instance of 10 viewable days and a month bound to it (enable
// adds flags to the enable command).
func enabledBackup(t *testing.T, s *Server, tok string, enable ...string) (inst, bkp string) {
	t.Helper()
	inst = str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	bkp = str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "10", "--term", "1mo"), "id")
	s.MustJSON(tok, append([]string{"backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "prod"}, enable...)...)
	return inst, bkp
}

// signIn is a console client signed in with tok.
func signIn(t *testing.T, s *Server, tok string) *web {
	t.Helper()
	w := newWeb(t, s)
	resp, _ := w.do("POST", "/signin", url.Values{"token": {tok}})
	w.cookie = resp.Cookies()[0].Value
	return w
}
