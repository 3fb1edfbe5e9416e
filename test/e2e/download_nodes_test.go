package e2e

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var (
	downloadLink = regexp.MustCompile(`href="(/downloads/[^"]+)"`)
	downloadKey  = regexp.MustCompile(`value="(kbk1_[^"]+)"`)
)

// TestConsoleDownloadAcrossNodes: a download prepared in the console of
// one node of a shared store is fetched through the other node, whole
// (it uploads with the key shown), once; the spool of neither node holds
// it.
func TestConsoleDownloadAcrossNodes(t *testing.T) {
	c := newCluster(t, "2026-05-01T00:00:00Z")
	dirA := t.TempDir()
	a, b := c.node(t, dirA), c.node(t, "")
	tok := c.tok
	inst := str(t, a.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	key := str(t, a.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "orders"), "id")
	a.MustJSON(tok, "kms", "secret", "create", "db", "--instance", inst, "--key", key, "--value", "pw-1")
	bkp := str(t, a.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "7", "--term", "1y"), "id")
	a.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "prod", "--time-zone", "UTC")

	wa, wb := newWeb(t, a), newWeb(t, b)
	wb.cookie = wa.signIn(tok)
	resp, page := wa.do("POST", "/backups/"+bkp+"/download", url.Values{"day": {"2026-05-01"}})
	link, dataKey := downloadLink.FindStringSubmatch(page), downloadKey.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || link == nil || dataKey == nil {
		t.Fatalf("prepare on node a: %d, link %v, key shown %v\n%s", resp.StatusCode, link != nil, dataKey != nil, page)
	}
	if left, _ := os.ReadDir(filepath.Join(dirA, "spool")); len(left) != 0 {
		t.Errorf("node a's spool holds %d files after the prepare", len(left))
	}

	resp, file := wb.do("GET", link[1], nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Length") != strconv.Itoa(len(file)) || len(file) == 0 {
		t.Fatalf("fetch on node b: %d, %d bytes (Content-Length %s)", resp.StatusCode, len(file), resp.Header.Get("Content-Length"))
	}
	path := filepath.Join(t.TempDir(), "day.kmsbk")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := b.CLI(tok, "", "upload", path, "--key", dataKey[1], "--name", "across nodes"); r.Code != 0 {
		t.Fatalf("the file fetched on node b does not upload with its key: exit %d: %s", r.Code, r.Stderr)
	}

	resp, again := wa.do("GET", link[1], nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(strings.ToLower(again), "prepare the download again") {
		t.Fatalf("a second fetch on node a: %d, want 404 with the hint to prepare it again\n%s", resp.StatusCode, again)
	}
}
