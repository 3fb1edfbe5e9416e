package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAdvanceShowsProgressOnATerminal: dev clock advance asks for the
// server's progress and draws it as a bar on stderr when stderr is a
// terminal; otherwise it asks for none and stderr stays empty.
func TestAdvanceShowsProgressOnATerminal(t *testing.T) {
	from := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	to := from.Add(31 * 24 * time.Hour)
	var accepts []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		accepts = append(accepts, r.Header.Get("Accept"))
		mu.Unlock()
		result := fmt.Sprintf(`{"now":%q,"work":8929}`, to.Format(time.RFC3339))
		if !strings.Contains(r.Header.Get("Accept"), "application/x-ndjson") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, result)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		for _, days := range []int{0, 10, 30} {
			fmt.Fprintf(w, `{"progress":{"from":%q,"now":%q,"to":%q}}`+"\n", from.Format(time.RFC3339),
				from.Add(time.Duration(days)*24*time.Hour).Format(time.RFC3339), to.Format(time.RFC3339))
		}
		fmt.Fprintf(w, `{"result":%s}`+"\n", result)
	}))
	t.Cleanup(srv.Close)

	var out bytes.Buffer
	var tty ttyBuffer
	err := execute(context.Background(), []string{"--addr", srv.URL, "dev", "clock", "advance", "31d"}, strings.NewReader(""), &out, &tty)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "2026-06-01T09:30:00Z") || !strings.Contains(out.String(), "8929") {
		t.Errorf("stdout:\n%s", out.String())
	}
	if s := tty.String(); !strings.Contains(s, "clock at 2026-05-31 09:30Z") || !strings.Contains(s, "100%") {
		t.Errorf("stderr holds no progress bar:\n%q", s)
	}

	r := runCLI(context.Background(), nil, "--addr", srv.URL, "dev", "clock", "advance", "31d")
	if r.code != exitOK || r.stderr != "" || !strings.Contains(r.stdout, "8929") {
		t.Errorf("not on a terminal: exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(accepts) != 2 || !strings.Contains(accepts[0], "application/x-ndjson") || strings.Contains(accepts[1], "ndjson") {
		t.Errorf("Accept headers %q: want the stream on a terminal only", accepts)
	}
}
