package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func str(t *testing.T, v map[string]any, k string) string {
	t.Helper()
	s, ok := v[k].(string)
	if !ok || s == "" {
		t.Fatalf("field %q missing in %v", k, v)
	}
	return s
}

// TestKMSScenario is the foundation's scenario: an instance, a key, encrypt,
// rotate, decrypt the old ciphertext, a secret with two versions, a restart,
// and everything intact.
func TestKMSScenario(t *testing.T) {
	s := StartServer(t, "")
	tok := s.DevTok

	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou", "--key-quota", "10"), "id")
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "payments"), "id")

	enc := s.MustJSON(tok, "kms", "encrypt", "--key", key, "--plaintext", "hello, world")
	c1 := str(t, enc, "ciphertext")
	if enc["version"] != float64(1) {
		t.Fatalf("first ciphertext version = %v, want 1", enc["version"])
	}
	rot := s.MustJSON(tok, "kms", "key", "rotate", key)
	if rot["primary_version"] != float64(2) {
		t.Fatalf("after rotate primary_version = %v, want 2", rot["primary_version"])
	}
	c2 := str(t, s.MustJSON(tok, "kms", "encrypt", "--key", key, "--plaintext", "second"), "ciphertext")

	// Table output of decrypt is the raw plaintext.
	if r := s.CLI(tok, "", "kms", "decrypt", "--ciphertext", c1); r.Code != 0 || r.Stdout != "hello, world" {
		t.Fatalf("decrypt old ciphertext: exit %d out %q err %q", r.Code, r.Stdout, r.Stderr)
	}
	// The ciphertext can also come on stdin.
	if r := s.CLI(tok, c2, "kms", "decrypt"); r.Code != 0 || r.Stdout != "second" {
		t.Fatalf("decrypt from stdin: exit %d out %q err %q", r.Code, r.Stdout, r.Stderr)
	}

	s.MustJSON(tok, "kms", "secret", "create", "db-password", "--instance", inst, "--key", key, "--value", "v1-secret")
	sec := s.MustJSON(tok, "kms", "secret", "rotate", "db-password", "--value", "v2-secret")
	if sec["current_version"] != float64(2) || sec["id"] != "db-password" {
		t.Fatalf("after rotate: %v", sec)
	}

	check := func(when string) {
		t.Helper()
		if r := s.CLI(tok, "", "kms", "decrypt", "--ciphertext", c1); r.Stdout != "hello, world" {
			t.Fatalf("%s: decrypt c1 = %q (%s)", when, r.Stdout, r.Stderr)
		}
		if r := s.CLI(tok, "", "kms", "decrypt", "--ciphertext", c2); r.Stdout != "second" {
			t.Fatalf("%s: decrypt c2 = %q (%s)", when, r.Stdout, r.Stderr)
		}
		if r := s.CLI(tok, "", "kms", "secret", "get", "db-password"); r.Stdout != "v2-secret" {
			t.Fatalf("%s: secret get = %q (%s)", when, r.Stdout, r.Stderr)
		}
		if r := s.CLI(tok, "", "kms", "secret", "get", "db-password", "--version", "1"); r.Stdout != "v1-secret" {
			t.Fatalf("%s: secret get --version 1 = %q (%s)", when, r.Stdout, r.Stderr)
		}
		k := s.MustJSON(tok, "kms", "key", "show", key)
		if vs, _ := k["versions"].([]any); len(vs) != 2 || k["description"] != "payments" {
			t.Fatalf("%s: key show = %v", when, k)
		}
		in := s.MustJSON(tok, "kms", "instance", "show", inst)
		if in["keys"] != float64(1) || in["secrets"] != float64(1) || in["state"] != "active" {
			t.Fatalf("%s: instance show = %v", when, in)
		}
		keys := s.MustJSON(tok, "kms", "key", "list", "--instance", inst)
		if items, _ := keys["items"].([]any); len(items) != 1 {
			t.Fatalf("%s: key list = %v", when, keys)
		}
	}
	check("before restart")
	s.Restart()
	check("after restart")
}

// TestEventsTail shows that every key/secret change is an event on the
// public stream, with key material sealed.
func TestEventsTail(t *testing.T) {
	s := StartServer(t, "")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "eu-central-1"), "id")
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	s.MustJSON(tok, "kms", "key", "rotate", key)
	s.MustJSON(tok, "kms", "secret", "create", "api", "--instance", inst, "--key", key, "--value", "tail-canary-value")

	out := tail(t, s, tok, 0, 6)
	var types []string
	for _, e := range out {
		types = append(types, e["type"].(string))
		if e["schema"] != "kmsbackup.event/v1" {
			t.Fatalf("event schema = %v", e["schema"])
		}
	}
	// The account sees its own creation, then its KMS events and the
	// default backup instance its first KMS instance brought; nothing of
	// other accounts.
	want := "AccountCreated InstanceCreated BackupInstanceCreated KeyCreated KeyRotated SecretCreated"
	if got := strings.Join(types, " "); got != want {
		t.Fatalf("event types = %s, want %s", got, want)
	}
	raw, _ := json.Marshal(out)
	if strings.Contains(string(raw), "tail-canary-value") {
		t.Fatal("secret value appears in the public event stream")
	}
	// --from skips what was already seen.
	from := uint64(out[3]["position"].(float64))
	again := tail(t, s, tok, from, 2)
	if again[0]["type"] != "KeyRotated" {
		t.Fatalf("tail --from %d starts with %v", from, again[0]["type"])
	}
}

// tail runs `events tail` until it has printed n events.
func tail(t *testing.T, s *Server, tok string, from uint64, n int) []map[string]any {
	t.Helper()
	r := s.CLIUntil(tok, n, "events", "tail", "--from", fmt.Sprint(from))
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(r), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("tail line is not JSON: %q", line)
		}
		out = append(out, e)
	}
	if len(out) < n {
		t.Fatalf("tail printed %d events, want %d", len(out), n)
	}
	return out
}
