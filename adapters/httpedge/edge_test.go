package httpedge

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/test/rawconn"
)

// manualNow is a clock that moves only when told.
type manualNow struct {
	mu sync.Mutex
	t  time.Time
}

func (m *manualNow) Now() time.Time { m.mu.Lock(); defer m.mu.Unlock(); return m.t }
func (m *manualNow) Advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.t = m.t.Add(d)
}

func request(remote string, headers ...string) *http.Request {
	r := httptest.NewRequest("GET", "/v1/whoami", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

// TestFailedAuthenticationsAreLimitedPerClient: a client may fail a burst
// of times, then once per interval; the wait it is told is exact; another
// client is not affected; successes cost nothing.
func TestFailedAuthenticationsAreLimitedPerClient(t *testing.T) {
	clock := &manualNow{t: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)}
	e := New(Options{Limits: Limits{FailureBurst: 3, FailureInterval: 10 * time.Second}, Now: clock.Now})
	a, b := request("192.0.2.1:4000"), request("192.0.2.2:4000")
	for i := range 3 {
		if _, ok := e.Admit(a); !ok {
			t.Fatalf("failure %d of a burst of 3 refused", i+1)
		}
		e.Failed(a)
	}
	wait, ok := e.Admit(a)
	if ok || wait != 10*time.Second {
		t.Fatalf("after the burst: admitted %v, wait %v; want refused for 10s", ok, wait)
	}
	clock.Advance(500 * time.Millisecond)
	if wait, _ := e.Admit(a); wait != 10*time.Second {
		t.Fatalf("9.5s to wait is told as %v, want 10s (whole seconds, rounded up)", wait)
	}
	clock.Advance(-500 * time.Millisecond)
	if _, ok := e.Admit(request("192.0.2.1:5000")); ok {
		t.Fatal("the same address from another port is admitted")
	}
	if _, ok := e.Admit(b); !ok {
		t.Fatal("another client is refused")
	}
	clock.Advance(4 * time.Second)
	if wait, ok := e.Admit(a); ok || wait != 6*time.Second {
		t.Fatalf("4s later: admitted %v, wait %v; want refused for 6s", ok, wait)
	}
	clock.Advance(6 * time.Second)
	if _, ok := e.Admit(a); !ok {
		t.Fatal("refused after the interval")
	}
	e.Failed(a)
	if _, ok := e.Admit(a); ok {
		t.Fatal("a second failure within the interval is admitted")
	}
}

// TestIPv6ClientsAreCountedBy64: the addresses of one /64 share a limit.
func TestIPv6ClientsAreCountedBy64(t *testing.T) {
	e := New(Options{Limits: Limits{FailureBurst: 1, FailureInterval: time.Hour}})
	e.Failed(request("[2001:db8:1:2::1]:4000"))
	if _, ok := e.Admit(request("[2001:db8:1:2:ffff::9]:4000")); ok {
		t.Fatal("another address of the same /64 is admitted")
	}
	if _, ok := e.Admit(request("[2001:db8:1:3::1]:4000")); !ok {
		t.Fatal("an address of another /64 is refused")
	}
}

// TestClientTableIsBounded: however many clients fail, the table holds at
// most MaxClients; the least recently failed is forgotten first.
func TestClientTableIsBounded(t *testing.T) {
	e := New(Options{Limits: Limits{FailureBurst: 1, FailureInterval: time.Hour, MaxClients: 100}})
	for i := range 1000 {
		e.Failed(request(fmt.Sprintf("10.0.%d.%d:1", i/256, i%256)))
	}
	if n := e.clients.len(); n != 100 {
		t.Fatalf("%d clients remembered, want 100", n)
	}
	if _, ok := e.Admit(request("10.0.3.231:1")); ok { // the last one
		t.Fatal("the most recent client was forgotten")
	}
	if _, ok := e.Admit(request("10.0.0.0:1")); !ok { // the first one
		t.Fatal("the oldest client is still remembered")
	}
}

// TestForwardedHeadersOnlyFromTrustedProxies: X-Forwarded-For names the
// client, and X-Forwarded-Proto reaches the handlers, only when the peer is
// a trusted proxy; otherwise the peer is the client and the headers are
// removed.
func TestForwardedHeadersOnlyFromTrustedProxies(t *testing.T) {
	proxies, err := ParseTrustedProxies([]string{"10.0.0.0/8", "192.0.2.7, ::ffff:198.51.100.1"})
	if err != nil {
		t.Fatal(err)
	}
	e := New(Options{TrustedProxies: proxies})
	for _, c := range []struct {
		remote, xff, want string
		proto             bool
	}{
		{"203.0.113.5:1", "198.51.100.9", "203.0.113.5", false},                 // not a proxy: ignored
		{"10.1.2.3:1", "198.51.100.9", "198.51.100.9", true},                    // a proxy
		{"192.0.2.7:1", "198.51.100.9", "198.51.100.9", true},                   // a single address
		{"198.51.100.1:1", "203.0.113.8", "203.0.113.8", true},                  // given as IPv4-mapped
		{"10.1.2.3:1", "6.6.6.6, 198.51.100.9, 10.9.9.9", "198.51.100.9", true}, // the nearest untrusted hop
		{"10.1.2.3:1", "198.51.100.9:5555", "198.51.100.9", true},               // a port is dropped
		{"10.1.2.3:1", "garbage", "10.1.2.3", true},                             // unreadable: the proxy itself
		{"10.1.2.3:1", "", "10.1.2.3", true},                                    // nothing forwarded
		{"[2001:db8::1]:1", "198.51.100.9", "2001:db8::1", false},
	} {
		var got netip.Addr
		var proto string
		h := e.Handler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			got, proto = e.Client(r), r.Header.Get("X-Forwarded-Proto")
		}))
		r := request(c.remote, "X-Forwarded-Proto", "https")
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got.String() != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: client %s, want %s", c.remote, c.xff, got, c.want)
		}
		if (proto == "https") != c.proto {
			t.Errorf("peer %s: X-Forwarded-Proto seen as %q", c.remote, proto)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example", "10.0.0"} {
		if _, err := ParseTrustedProxies([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseTrustedProxies(%q): %v, want an error naming it", bad, err)
		}
	}
}

// serve runs h behind e on a real listener.
func serve(t *testing.T, e *Edge, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := e.Server(h, nil)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestSlowClientsAreCut: a body that stops, a body sent a byte at a time,
// and an idle connection are all cut by their deadlines; a body that keeps
// arriving at the minimum rate is read whole, however long it takes, and a
// handler that runs after reading its body is not cancelled.
func TestSlowClientsAreCut(t *testing.T) {
	limits := Limits{ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond,
		BodyGrace: 300 * time.Millisecond, BodyIdle: 300 * time.Millisecond, BodyMinRate: 1000}
	e := New(Options{Limits: limits})
	var mu sync.Mutex
	var got []string
	addr := serve(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusRequestTimeout)
			return
		}
		if r.URL.Path == "/long" {
			// Outlive every deadline after the body: the context must stay.
			timer := time.NewTimer(3 * limits.BodyIdle)
			defer timer.Stop()
			select {
			case <-r.Context().Done():
				http.Error(w, "cancelled", http.StatusInternalServerError)
				return
			case <-timer.C:
			}
		}
		mu.Lock()
		got = append(got, fmt.Sprintf("%s %d", r.URL.Path, len(b)))
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	const bound = 5 * time.Second

	t.Run("headers", func(t *testing.T) {
		c := rawconn.Dial(t, addr, bound)
		_, _ = io.WriteString(c, "POST /x HTTP/1.1\r\nHost: x\r\n")
		if line := rawconn.StatusLine(t, c); line != "" && !strings.Contains(line, "408") {
			t.Fatalf("slow headers answered %q", line)
		}
	})
	t.Run("stalled body", func(t *testing.T) {
		c := rawconn.Dial(t, addr, bound)
		_, _ = io.WriteString(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
		if line := rawconn.StatusLine(t, c); line != "" && !strings.Contains(line, "408") {
			t.Fatalf("a stalled body answered %q", line)
		}
	})
	t.Run("trickled body", func(t *testing.T) {
		c := rawconn.Dial(t, addr, bound)
		_, _ = io.WriteString(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
		done := make(chan string)
		go func() { done <- rawconn.StatusLine(t, c) }()
		tick := time.NewTicker(limits.BodyIdle / 3)
		defer tick.Stop()
		for {
			select {
			case line := <-done:
				if line != "" && !strings.Contains(line, "408") {
					t.Fatalf("a trickled body answered %q", line)
				}
				return
			case <-tick.C:
				_, _ = c.Write([]byte("a")) // far below BodyMinRate
			}
		}
	})
	t.Run("idle connection", func(t *testing.T) {
		rawconn.ClosedWhenIdle(t, rawconn.Dial(t, addr, bound), "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	})
	t.Run("steady upload", func(t *testing.T) {
		// 20 chunks of 100 bytes, one every BodyIdle/3: it lasts twice the
		// grace, at 10 times the minimum rate.
		c := rawconn.Dial(t, addr, bound)
		_, _ = io.WriteString(c, "POST /long HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
		chunk := strings.Repeat("u", 100)
		tick := time.NewTicker(limits.BodyIdle / 10)
		defer tick.Stop()
		for range 20 {
			<-tick.C
			if _, err := io.WriteString(c, chunk); err != nil {
				t.Fatalf("the server stopped reading a steady upload: %v", err)
			}
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("steady upload: %d %s", resp.StatusCode, body)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if want := "/long 2000"; len(got) != 2 || got[1] != want {
		t.Fatalf("handled %q, want [/x 0, %s]", got, want)
	}
}

// TestUnauthenticatedRequestsAreCapped: requests without credentials, and
// sign-ins whatever they carry, hold one of MaxUnauthenticated slots until
// they authenticate or end; beyond, 503 with Retry-After at once. A request
// with credentials goes through however many are held.
func TestUnauthenticatedRequestsAreCapped(t *testing.T) {
	e := New(Options{Limits: Limits{MaxUnauthenticated: 2, BodyGrace: time.Minute, BodyIdle: time.Minute},
		CredentialCookie: "session", SignInPaths: []string{"/signin"}})
	entered := make(chan string, 10)
	addr := serve(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- r.URL.Path
		if r.URL.Path == "/signin" && r.FormValue("token") == "good" {
			e.Authenticated(r)
		}
		_, _ = io.ReadAll(r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
	const bound = 5 * time.Second
	get := func(path string, headers ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := (&http.Client{Timeout: bound}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	// Two slow sign-ins, one with a cookie: both hold a slot.
	for _, cookie := range []string{"", "Cookie: session=x\r\n"} {
		c := rawconn.Dial(t, addr, bound)
		_, _ = io.WriteString(c, "POST /signin HTTP/1.1\r\nHost: x\r\n"+cookie+
			"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nto")
		if p := <-entered; p != "/signin" {
			t.Fatalf("entered %s", p)
		}
	}
	resp := get("/page")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a third unauthenticated request: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := get("/v1/x"); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("an API request over the cap: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, h := range [][]string{{"Authorization", "Bearer t"}, {"Cookie", "session=y"}} {
		if resp := get("/page", h...); resp.StatusCode != http.StatusOK {
			t.Fatalf("a request with %s over the cap: %d, want 200", h[0], resp.StatusCode)
		}
		<-entered
	}
	if n := len(e.slots); n != 2 {
		t.Fatalf("%d slots held, want 2", n)
	}
}

// TestAuthenticatedReleasesTheSlot: a sign-in that succeeds stops counting
// at once, before its response.
func TestAuthenticatedReleasesTheSlot(t *testing.T) {
	e := New(Options{Limits: Limits{MaxUnauthenticated: 1}, SignInPaths: []string{"/signin"}})
	var held []int
	h := e.Handler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		held = append(held, len(e.slots))
		e.Authenticated(r)
		held = append(held, len(e.slots))
		e.Authenticated(r) // twice: released once
		held = append(held, len(e.slots))
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/signin", nil))
	if fmt.Sprint(held) != "[1 0 0]" || len(e.slots) != 0 {
		t.Fatalf("slots held %v, then %d; want [1 0 0] then 0", held, len(e.slots))
	}
}
