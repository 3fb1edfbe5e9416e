package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/test/apiclient"
)

// generatedClient is test/apiclient's client of s, with the account dev's
// token.
func generatedClient(t *testing.T, s *Server) *apiclient.ClientWithResponses {
	t.Helper()
	c, err := apiclient.NewClientWithResponses("http://"+s.Addr, apiclient.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+s.DevTok)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGeneratedClientDrivesTheServer: a client that oapi-codegen, a tool
// not written here, generated from the OpenAPI document (test/apiclient)
// drives the real server through a small scenario: an instance, a key,
// encrypt and decrypt, a secret read back, the lists, and an error
// answered with the document's error type.
func TestGeneratedClientDrivesTheServer(t *testing.T) {
	s := StartServer(t, "")
	c := generatedClient(t, s)
	ctx := context.Background()

	in, err := c.CreateInstanceWithResponse(ctx, apiclient.CreateInstanceRequest{Region: "cn-hangzhou"})
	if err != nil || in.JSON200 == nil {
		t.Fatalf("createInstance: %v %s", err, body(in.Body))
	}
	desc := "payments"
	key, err := c.CreateKeyWithResponse(ctx, apiclient.CreateKeyRequest{Instance: in.JSON200.Id, Description: &desc})
	if err != nil || key.JSON200 == nil {
		t.Fatalf("createKey: %v %s", err, body(key.Body))
	}
	plaintext := []byte("hello from another client")
	enc, err := c.EncryptPlaintextWithResponse(ctx, apiclient.EncryptRequest{KeyId: key.JSON200.Id, Plaintext: plaintext})
	if err != nil || enc.JSON200 == nil || enc.JSON200.Ciphertext == nil {
		t.Fatalf("encryptPlaintext: %v %s", err, body(enc.Body))
	}
	dec, err := c.DecryptCiphertextWithResponse(ctx, apiclient.DecryptRequest{Ciphertext: *enc.JSON200.Ciphertext})
	if err != nil || dec.JSON200 == nil || dec.JSON200.Plaintext == nil || !bytes.Equal(*dec.JSON200.Plaintext, plaintext) {
		t.Fatalf("decryptCiphertext: %v %s", err, body(dec.Body))
	}
	sec, err := c.CreateSecretWithResponse(ctx, apiclient.CreateSecretRequest{Name: "db-password", Instance: in.JSON200.Id,
		KeyId: key.JSON200.Id, Value: []byte("v1")})
	if err != nil || sec.JSON200 == nil {
		t.Fatalf("createSecret: %v %s", err, body(sec.Body))
	}
	val, err := c.GetSecretValueWithResponse(ctx, "db-password", nil)
	if err != nil || val.JSON200 == nil || val.JSON200.Value == nil || string(*val.JSON200.Value) != "v1" {
		t.Fatalf("getSecretValue: %v %s", err, body(val.Body))
	}

	keys, err := c.ListKeysWithResponse(ctx, &apiclient.ListKeysParams{Instance: in.JSON200.Id})
	if err != nil || keys.JSON200 == nil || keys.JSON200.Items == nil || len(*keys.JSON200.Items) != 1 || (*keys.JSON200.Items)[0].Id != key.JSON200.Id {
		t.Fatalf("listKeys: %v %s", err, body(keys.Body))
	}
	ins, err := c.ListInstancesWithResponse(ctx, nil)
	if err != nil || ins.JSON200 == nil || ins.JSON200.Items == nil || len(*ins.JSON200.Items) != 1 {
		t.Fatalf("listInstances: %v %s", err, body(ins.Body))
	}
	backups, err := c.ListBackupInstancesWithResponse(ctx, nil)
	if err != nil || backups.JSON200 == nil || backups.JSON200.Items == nil || len(*backups.JSON200.Items) != 1 {
		t.Fatalf("listBackupInstances (the default one): %v %s", err, body(backups.Body))
	}

	missing, err := c.GetSecretWithResponse(ctx, "no-such-secret", nil)
	if err != nil || missing.JSON404 == nil || missing.JSON404.Error.Code != apiclient.NotFound {
		t.Fatalf("getSecret of a missing secret: %v %d %s", err, missing.StatusCode(), body(missing.Body))
	}
}

func body(b []byte) string { return strings.TrimSpace(string(b)) }

// TestGeneratedClientIsCurrent regenerates test/apiclient from the
// document the real server serves, with the pinned generator (the
// go:generate line of test/apiclient/doc.go), and finds it unchanged: the
// committed client is what tools make of the document today.
func TestGeneratedClientIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the generator")
	}
	s := StartServer(t, "")
	resp, err := http.Get("http://" + s.Addr + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/openapi.json: %d %v", resp.StatusCode, err)
	}

	pkg, err := filepath.Abs("../apiclient")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(pkg, "doc.go"))
	if err != nil {
		t.Fatal(err)
	}
	var generator string
	for line := range strings.SplitSeq(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//go:generate go run "); ok {
			generator = strings.Fields(rest)[0]
		}
	}
	if !strings.Contains(generator, "oapi-codegen@v") {
		t.Fatalf("no pinned generator in test/apiclient/doc.go: %q", generator)
	}

	dir := t.TempDir()
	docPath := filepath.Join(dir, "openapi.json")
	if err := os.WriteFile(docPath, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	// The configuration's output (client.gen.go) is relative to the working
	// directory: the temporary one, outside the module (go run pkg@version
	// needs none).
	out := filepath.Join(dir, "client.gen.go")
	cmd := exec.Command("go", "run", generator, "-config", filepath.Join(pkg, "oapi-codegen.yaml"), docPath)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		if offline(string(msg)) {
			t.Skipf("the generator cannot be fetched here:\n%s", msg)
		}
		t.Fatalf("%s: %v\n%s", cmd, err, msg)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(pkg, "client.gen.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("test/apiclient/client.gen.go is not what %s makes of the served document: run go generate ./test/apiclient", generator)
	}
}

// offline tells a failure to fetch the generator's module from any other.
func offline(msg string) bool {
	for _, s := range []string{"dial tcp", "no such host", "GOPROXY", "GOFLAGS=-mod=mod", "module lookup disabled", "connection refused", "i/o timeout"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// TestAdvanceReportsProgress: the real server streams an advance's
// progress when asked, as the clock reaches each instant of work.
func TestAdvanceReportsProgress(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	c := &httpapi.Client{Base: "http://" + s.Addr, Token: s.DevTok}
	ctx := context.Background()
	in, err := c.CreateInstance(ctx, httpapi.CreateInstanceRequest{Region: "cn-hangzhou"})
	if err != nil {
		t.Fatal(err)
	}
	bs, err := c.ListBackupInstances(ctx, false, 0, "")
	if err != nil || len(bs.Items) != 1 {
		t.Fatalf("backup instances %+v, %v", bs, err)
	}
	if _, err := c.EnableBackupInstance(ctx, bs.Items[0].ID, httpapi.EnableBackupInstanceRequest{KMSInstance: in.ID, Alias: "prod"}); err != nil {
		t.Fatal(err)
	}
	var seen []httpapi.AdvanceClockProgress
	res, err := c.AdvanceClockWithProgress(ctx, "2d", func(p httpapi.AdvanceClockProgress) { seen = append(seen, p) })
	if err != nil || res.Work < 2*288 {
		t.Fatalf("advance 2d: %+v, %v", res, err)
	}
	if len(seen) == 0 {
		t.Fatal("no progress reported")
	}
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	for i, p := range seen {
		if !p.From.Equal(start) || !p.To.Equal(res.Now) || p.Now.Before(start) || p.Now.After(res.Now) || i > 0 && p.Now.Before(seen[i-1].Now) {
			t.Fatalf("progress %d: %+v (from %s to %s)", i, p, start, res.Now)
		}
	}
}
