package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// TestAdvanceStreamsProgress: asked with Accept: application/x-ndjson, an
// advance answers with its progress as the clock moves (a long advance
// does thousands of checkpoints), then its result; the plain call answers
// as before.
func TestAdvanceStreamsProgress(t *testing.T) {
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	end := start.Add(31 * 24 * time.Hour)
	clk := &fakeClock{now: start}
	c := MustServe(t, &Server{DevClock: clk})
	ctx := context.Background()

	var seen []AdvanceClockProgress
	res, err := c.AdvanceClockWithProgress(ctx, "31d", func(p AdvanceClockProgress) { seen = append(seen, p) })
	if err != nil || !res.Now.Equal(end) || res.Work != 3 {
		t.Fatalf("advance 31d = %+v, %v; want now %s, work 3", res, err, end)
	}
	// The first report comes at once; later ones at most every 100 ms.
	if len(seen) == 0 {
		t.Fatal("no progress reported")
	}
	if p := seen[0]; !p.From.Equal(start) || !p.To.Equal(end) || !p.Now.Equal(start.Add(24*time.Hour)) {
		t.Errorf("first progress %+v, want from %s at %s to %s", p, start, start.Add(24*time.Hour), end)
	}

	// On the wire: one JSON document a line, each with exactly one member.
	req, _ := http.NewRequest("POST", c.Base+"/v1/dev/clock/advance", strings.NewReader(`{"duration":"3d"}`))
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/x-ndjson" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, ct)
	}
	var kinds []string
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		var line map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || len(line) != 1 {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		for k := range line {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) < 2 || kinds[0] != "progress" || kinds[len(kinds)-1] != "result" {
		t.Errorf("lines %q, want progress ... result", kinds)
	}

	// An error after the first line is the last line, with its code.
	clk.err = domain.Errorf(domain.ErrUnavailable, "advance clock", "", "retry", "the log is busy")
	_, err = c.AdvanceClockWithProgress(ctx, "2d", nil)
	var ae *APIError
	if !errors.As(err, &ae) || !errors.Is(err, domain.ErrUnavailable) || ae.Status != http.StatusServiceUnavailable || ae.Hint != "retry" {
		t.Errorf("failed streamed advance: %#v", err)
	}
	// One that fails before any progress keeps its status code.
	if _, err := c.AdvanceClockWithProgress(ctx, "1h", nil); !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Errorf("advance failing at once: %#v", err)
	}
	clk.err = nil
	// A refusal before any work is a plain error too.
	if _, err := c.AdvanceClockWithProgress(ctx, "soon", nil); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("advance soon: %v, want invalid argument", err)
	}
}
