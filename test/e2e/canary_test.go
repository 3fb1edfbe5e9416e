package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

const canary = "CANARY-s3cr3t-value-7f3a9"

// TestCanaryNeverLeaks puts a known secret value through the server (and
// through failing requests), then looks for it, and for the key material the
// server generated, in the server's log output, the API's error bodies, and
// the data directory: its raw files and every key and value of the Pebble
// database.
func TestCanaryNeverLeaks(t *testing.T) {
	s := StartServer(t, "")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	s.MustJSON(tok, "kms", "key", "rotate", key)
	s.MustJSON(tok, "kms", "secret", "create", "canary", "--instance", inst, "--key", key, "--value", canary)
	s.MustJSON(tok, "kms", "secret", "rotate", "canary", "--value", canary+"-2")
	if r := s.CLI(tok, "", "kms", "secret", "get", "canary", "--version", "1"); r.Stdout != canary {
		t.Fatalf("secret get: %q", r.Stderr)
	}
	s.MustJSON(tok, "kms", "encrypt", "--key", key, "--plaintext", canary)

	// Failing requests that carry the canary: their errors must not echo it.
	var errorsSeen []string
	for _, args := range [][]string{
		{"kms", "secret", "create", "bad/name", "--instance", inst, "--key", key, "--value", canary},
		{"kms", "secret", "create", "canary", "--instance", inst, "--key", key, "--value", canary},
		{"kms", "encrypt", "--key", "key_00000000000000000000000000", "--plaintext", canary},
		{"kms", "secret", "rotate", "missing", "--value", canary},
	} {
		r := s.CLI(tok, "", args...)
		if r.Code == 0 {
			t.Fatalf("%v unexpectedly succeeded", args)
		}
		errorsSeen = append(errorsSeen, r.Stdout+r.Stderr)
	}
	for _, body := range []string{
		`{"name":"bad name","instance":"` + inst + `","key_id":"` + key + `","value":"` + base64.StdEncoding.EncodeToString([]byte(canary)) + `"}`,
		`{"name":"` + canary + `","instance":"x","key_id":"y","value":"` + canary + `"}`,
	} {
		req, _ := http.NewRequest("POST", "http://"+s.Addr+"/v1/kms/secrets", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		errorsSeen = append(errorsSeen, b.String())
	}
	for _, e := range errorsSeen {
		if strings.Contains(e, canary) || strings.Contains(e, base64.StdEncoding.EncodeToString([]byte(canary))) {
			t.Fatalf("an error echoes the secret value: %q", e)
		}
	}
	s.Stop()

	if strings.Contains(s.Logs(), canary) {
		t.Fatal("the secret value appears in the server's output")
	}

	// Recover the key material the server generated, to look for it too.
	materials := keyMaterials(t, s.DataDir, inst, domain.KeyID(key))
	if len(materials) != 2 {
		t.Fatalf("found %d key versions, want 2", len(materials))
	}
	needles := map[string][]byte{"secret value": []byte(canary)}
	for i, m := range materials {
		needles[fmt.Sprintf("key material v%d", i+1)] = m
		needles[fmt.Sprintf("key material v%d (hex)", i+1)] = []byte(hex.EncodeToString(m))
		needles[fmt.Sprintf("key material v%d (base64)", i+1)] = []byte(base64.StdEncoding.EncodeToString(m))
	}
	assertNowhere(t, s, needles)
}

// assertNowhere stops the server, then fails t for every needle found in
// what the server printed, in any raw file of its data directory, or in any
// key or value of its database (read through Pebble, so decompressed).
func assertNowhere(t *testing.T, s *Server, needles map[string][]byte) {
	t.Helper()
	s.Stop()
	logs := []byte(s.Logs())
	for what, n := range needles {
		if bytes.Contains(logs, n) {
			t.Errorf("%s appears in the server's output", what)
		}
	}
	// Raw files of the data directory.
	files := 0
	err := filepath.WalkDir(s.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for what, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s appears in %s", what, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no file in %s: the scan did not see the data", s.DataDir)
	}
	// Every key and value of the database, decompressed.
	db, err := pebble.Open(filepath.Join(s.DataDir, "db"), &pebble.Options{ReadOnly: true, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			t.Fatal(err)
		}
		n++
		for what, needle := range needles {
			if bytes.Contains(it.Key(), needle) || bytes.Contains(v, needle) {
				t.Errorf("%s appears in the database under key %q", what, it.Key())
			}
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("scanned only %d records: the scan did not see the data", n)
	}
}

// keyMaterials opens the stopped server's store with its master key and
// unseals every version of a key, as only the server itself could.
func keyMaterials(t *testing.T, dataDir, inst string, key domain.KeyID) [][]byte {
	t.Helper()
	master, err := envelope.LoadMasterKey(filepath.Join(dataDir, "master.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := pebblestore.Open(filepath.Join(dataDir, "db"), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	proj, err := pebblestore.OpenProjections(filepath.Join(dataDir, "projections"), pebblestore.Options{}, st)
	if err != nil {
		t.Fatal(err)
	}
	defer proj.Close()
	env, err := envelope.New(master, st)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kmsstate.GetKey(proj, domain.InstanceID(inst), key)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, v := range k.Versions {
		m, err := env.Open(t.Context(), inst, v.Material, domain.AssociatedData(k.Account, v.Stream, v.SealedBy))
		if err != nil {
			t.Fatal(err)
		}
		if len(m) != 32 {
			t.Fatalf("key material is %d bytes", len(m))
		}
		out = append(out, bytes.Clone(m))
	}
	return out
}

// quietLogger keeps Pebble's informational lines out of test output.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
