package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/httpedge"
	"github.com/kmsbackup/kmsbackup/test/rawconn"
)

// startMain runs the server in-process on cfg until the test ends.
func startMain(t *testing.T, cfg Config) *Main {
	t.Helper()
	m := &Main{Config: cfg}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// cutOff waits for the server to close c, or to answer it with a client
// error, and fails the test if it does neither.
func cutOff(t *testing.T, what string, c net.Conn) {
	t.Helper()
	if line := rawconn.StatusLine(t, c); line != "" && !strings.HasPrefix(line, "HTTP/1.1 4") {
		t.Fatalf("%s: answered %q", what, line)
	}
}

// TestSlowClientsAreCutOff: the server drops a request whose body stalls
// (on the console's sign-in, before any authentication), a connection kept
// idle, and headers sent too slowly; and beyond the cap on unauthenticated
// requests it refuses more at once, while an authenticated request still
// goes through.
func TestSlowClientsAreCutOff(t *testing.T) {
	cfg := devConfig(t.TempDir())
	cfg.HTTP = httpedge.Limits{ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond,
		BodyGrace: 300 * time.Millisecond, BodyIdle: 300 * time.Millisecond, MaxUnauthenticated: 2}
	m := startMain(t, cfg)
	addr := m.Addr()
	const bound = 5 * time.Second

	c := rawconn.Dial(t, addr, bound)
	_, _ = io.WriteString(c, "POST /signin HTTP/1.1\r\nHost: "+addr+"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\ntoken=kmsb_")
	cutOff(t, "a stalled sign-in", c)

	c = rawconn.Dial(t, addr, bound)
	_, _ = io.WriteString(c, "GET /v1/whoami HTTP/1.1\r\nHost: "+addr+"\r\n")
	cutOff(t, "slow headers", c)

	rawconn.ClosedWhenIdle(t, rawconn.Dial(t, addr, bound), "GET /livez HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")

	// The cap: two slow sign-ins hold it; a third unauthenticated request
	// is refused at once; a request with a valid token goes through.
	cfg = devConfig(t.TempDir())
	cfg.HTTP = httpedge.Limits{BodyGrace: time.Minute, BodyIdle: time.Minute, MaxUnauthenticated: 2}
	m = startMain(t, cfg)
	addr = m.Addr()
	for range 2 {
		c := rawconn.Dial(t, addr, bound)
		_, _ = io.WriteString(c, "POST /signin HTTP/1.1\r\nHost: "+addr+"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\ntoken=")
	}
	client := &http.Client{Timeout: bound}
	busy := func() bool {
		resp, err := client.Get("http://" + addr + "/signin")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != ""
	}
	// The two sign-ins are in once the server is busy.
	deadline := time.Now().Add(bound)
	for !busy() {
		if time.Now().After(deadline) {
			t.Fatal("two slow sign-ins held, and a third unauthenticated request is still served")
		}
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+m.DevToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("an authenticated request while the cap is reached: %d, want 200", resp.StatusCode)
	}
}
