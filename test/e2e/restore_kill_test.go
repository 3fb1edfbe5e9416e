package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
)

// TestRestoreKilledMidwayThenRetried streams a whole-instance restore's
// progress (Accept: application/x-ndjson), kills the server with SIGKILL
// once the apply has written its first batches, starts it again on the
// same data directory and repeats the restore: it ends complete, with
// every item once (a duplicate would count twice in the target's keys),
// the items written before the kill found already present.
func TestRestoreKilledMidwayThenRetried(t *testing.T) {
	const n = 300
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z", "--restore-batch", "1")
	tok := s.DevTok
	ctx := context.Background()
	api := &httpapi.Client{Base: "http://" + s.Addr, Token: tok}
	quota := int64(1000)
	src, err := api.CreateInstance(ctx, httpapi.CreateInstanceRequest{Region: "cn-hangzhou", KeyQuota: &quota})
	if err != nil {
		t.Fatal(err)
	}
	bkp := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "7", "--term", "1y"), "id")
	s.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", src.ID, "--alias", "prod")
	for range n {
		if _, err := api.CreateKey(ctx, httpapi.CreateKeyRequest{Instance: src.ID}); err != nil {
			t.Fatal(err)
		}
	}
	s.MustJSON(tok, "dev", "clock", "advance", "10m")
	target := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "eu-central-1", "--key-quota", "1000"), "id")

	// The restore, streamed, until the apply has written something.
	body, _ := json.Marshal(httpapi.RestoreRequest{From: bkp, Day: "2026-05-01", All: true, ToInstance: target})
	req, _ := http.NewRequest("POST", "http://"+s.Addr+"/v1/restores", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/x-ndjson" {
		t.Fatalf("streamed restore answered %s, %q", resp.Status, ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var phases []string
	killed := false
	for sc.Scan() {
		var l httpapi.RestoreStreamLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Progress == nil {
			t.Fatalf("line %q: %v, want progress", sc.Text(), err)
		}
		phases = append(phases, l.Progress.Phase)
		if l.Progress.Phase == "apply" && l.Progress.Done > 0 {
			if l.Progress.Total != n {
				t.Fatalf("apply progress %+v, want a total of %d", *l.Progress, n)
			}
			s.Kill()
			killed = true
			break
		}
	}
	resp.Body.Close()
	if !killed || phases[0] != "plan" {
		t.Fatalf("the stream ended before the apply wrote anything: phases %v; %v", phases, sc.Err())
	}

	s.startAgain()
	written := s.MustJSON(tok, "kms", "instance", "show", target)["keys"].(float64)
	if written < 1 || written >= n {
		t.Fatalf("after the kill the target holds %v keys, want some of the %d (the kill came after the first batch)", written, n)
	}
	t.Logf("killed with %v of %d keys written", written, n)
	res := s.MustJSON(tok, "restore", "--from", bkp, "--day", "2026-05-01", "--all", "--to-instance", target)
	if res["applied"] != true || res["restored"] != float64(n)-written || res["already_present"] != written || len(res["validation"].([]any)) != 0 {
		t.Fatalf("the retried restore: %v (the target held %v keys)", res, written)
	}
	if keys := s.MustJSON(tok, "kms", "instance", "show", target)["keys"]; keys != float64(n) {
		t.Fatalf("the target holds %v keys, want %d: an item was restored twice or not at all", keys, n)
	}
	// Every batch written has its audit record; the one whose record the
	// kill may have cut is the only one missing.
	listed := 0
	for _, a := range items(t, s.MustJSON(tok, "audit", "list", "--backup", bkp, "--page-size", "1000")) {
		if a["action"] == "restore" {
			listed += len(a["keys"].([]any))
		}
	}
	if listed < n-1 || listed > n {
		t.Fatalf("the audit lists %d restored keys, want %d (or one less, cut by the kill)", listed, n)
	}
	if out := s.CLI(tok, "", "restore", "--from", bkp, "--day", "2026-05-01", "--all", "--to-instance", target); out.Code != 0 ||
		!strings.Contains(out.Stdout, "Already present:  300") {
		t.Fatalf("a third restore: exit %d\n%s%s", out.Code, out.Stdout, out.Stderr)
	}
}
