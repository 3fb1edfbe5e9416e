package e2e

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestManualClockNeverRewinds: a --clock-start earlier than the clock its
// data directory's log holds is refused (exit 2, nothing written), and a
// later one moves the clock forward, as a downtime would. (Continuing
// without --clock-start, with the backups taken on, is the README's tour:
// TestReadmeTour.)
func TestManualClockNeverRewinds(t *testing.T) {
	const start = "2026-05-01T09:30:00Z"
	s := StartServer(t, "", "--clock", "manual", "--clock-start", start)
	tok := s.DevTok
	_, bkp := enabledBackup(t, s, tok)
	s.MustJSON(tok, "dev", "clock", "advance", "2h")
	s.Stop()

	// The same command again: the earlier start is refused, nothing written.
	mustRefuse(t, s.DataDir, 2, []string{"--clock-start " + start, "2026-05-01T11:30:00Z"},
		"--dev", "--dev-admin-token", AdminToken, "--clock", "manual", "--clock-start", start)

	// A later start moves it forward.
	s = StartServer(t, s.DataDir, "--clock", "manual", "--clock-start", "2026-05-02T00:20:00Z")
	if v := s.MustJSON(tok, "dev", "clock", "show"); v["now"] != "2026-05-02T00:20:00Z" {
		t.Fatalf("clock after a later start: %v", v)
	}
	s.MustJSON(tok, "data", "list", bkp, "--day", "2026-05-01", "--tab", "full-keys")
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
