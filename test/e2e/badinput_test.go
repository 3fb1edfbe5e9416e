package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/oklog/ulid/v2"
)

// snapshot is everything an account can see, to prove a failed call changed
// nothing.
func snapshot(t *testing.T, s *Server, tok string, instances ...string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{{"kms", "instance", "list"}} {
		j, _ := json.Marshal(s.MustJSON(tok, args...))
		b.Write(j)
	}
	for _, in := range instances {
		for _, noun := range []string{"key", "secret"} {
			j, _ := json.Marshal(s.MustJSON(tok, "kms", noun, "list", "--instance", in))
			b.Write(j)
		}
	}
	b.WriteString(" events=" + strings.Repeat("|", countEvents(t, s, AdminToken)))
	return b.String()
}

// countEvents reads the public stream for a moment and counts the events.
func countEvents(t *testing.T, s *Server, tok string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.Addr+"/v1/events?from=0", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			n++
		}
	}
	return n
}

func TestBadInputChangesNothing(t *testing.T) {
	s := StartServer(t, "")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou", "--key-quota", "1", "--secret-quota", "5"), "id")
	inst2 := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	key2 := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst2), "id")
	s.MustJSON(tok, "kms", "secret", "create", "shared-name", "--instance", inst, "--key", key, "--value", "x")
	gone := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst2), "id")
	if r := s.CLI(tok, "", "kms", "key", "delete", gone); r.Code != 0 {
		t.Fatalf("delete key: %s", r.Stderr)
	}
	other := s.MustJSON(AdminToken, "account", "create", "other")
	otherTok := str(t, other, "token")
	missingKey := "key_" + ulid.Make().String()
	missingInst := "kms_" + ulid.Make().String()

	before := snapshot(t, s, tok, inst, inst2)

	cases := []struct {
		name  string
		token string
		code  int
		frags []string
		args  []string
	}{
		{"unknown key ID", tok, 3, []string{"key", "not found"}, []string{"kms", "key", "show", missingKey}},
		{"unknown instance ID", tok, 3, []string{"not found"}, []string{"kms", "key", "create", "--instance", missingInst}},
		{"malformed key ID", tok, 2, []string{"key ID"}, []string{"kms", "key", "rotate", "not-a-key"}},
		{"malformed region", tok, 2, []string{"region"}, []string{"kms", "instance", "create", "--region", "Not A Region"}},
		{"quota exceeded", tok, 5, []string{"quota"}, []string{"kms", "key", "create", "--instance", inst}},
		{"duplicate secret name in region", tok, 4, []string{"already exists"}, []string{"kms", "secret", "create", "shared-name", "--instance", inst2, "--key", key2, "--value", "y"}},
		{"secret on a deleted key", tok, 3, []string{"key"}, []string{"kms", "secret", "create", "orphan", "--instance", inst2, "--key", gone, "--value", "y"}},
		{"secret under another instance's key", tok, 6, []string{"another KMS instance"}, []string{"kms", "secret", "create", "cross", "--instance", inst2, "--key", key, "--value", "y"}},
		{"delete a key in use", tok, 6, []string{"secret"}, []string{"kms", "key", "delete", key}},
		{"rotate a missing secret", tok, 3, []string{"not found"}, []string{"kms", "secret", "rotate", "nope", "--value", "z"}},
		{"bad ciphertext", tok, 2, []string{"ciphertext"}, []string{"kms", "decrypt", "--ciphertext", "kms1:AAAA"}},
		{"wrong token", "kmsb_wrong", 7, []string{"token"}, []string{"kms", "instance", "list"}},
		{"no token", "", 7, []string{"token"}, []string{"kms", "instance", "list"}},
		{"account token creating accounts", tok, 7, []string{"admin"}, []string{"account", "create", "sneaky"}},
		{"other account's key", otherTok, 3, []string{"not found"}, []string{"kms", "key", "show", key}},
		{"other account's instance", otherTok, 3, []string{"not found"}, []string{"kms", "instance", "show", inst}},
		{"other account's secret", otherTok, 3, []string{"not found"}, []string{"kms", "secret", "get", "shared-name"}},
		{"other account rotating a key", otherTok, 3, []string{"not found"}, []string{"kms", "key", "rotate", key}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.MustFail(c.token, c.code, c.frags, c.args...)
		})
	}

	// Another account's object answers exactly like a missing one.
	a := s.MustFail(otherTok, 3, nil, "kms", "key", "show", key)
	b := s.MustFail(otherTok, 3, nil, "kms", "key", "show", missingKey)
	if strings.ReplaceAll(a.Stderr, key, "ID") != strings.ReplaceAll(b.Stderr, missingKey, "ID") {
		t.Fatalf("other account's key answers %q, a missing key %q", a.Stderr, b.Stderr)
	}

	// Malformed HTTP requests get a clear JSON error.
	for _, c := range []struct{ name, body, code, frag string }{
		{"not JSON", "{", "invalid_argument", "not valid JSON"},
		{"empty body", "", "invalid_argument", "empty"},
		{"unknown field", `{"region":"cn-hangzhou","colour":"red"}`, "invalid_argument", "colour"},
		{"wrong type", `{"region":"cn-hangzhou","key_quota":"ten"}`, "invalid_argument", "key_quota"},
		{"negative quota", `{"region":"cn-hangzhou","key_quota":-1}`, "invalid_argument", "key_quota"},
		{"two documents", `{"region":"cn-hangzhou"}{}`, "invalid_argument", "exactly one"},
	} {
		t.Run("http "+c.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://"+s.Addr+"/v1/kms/instances", strings.NewReader(c.body))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != 400 || body.Error.Code != c.code || !strings.Contains(body.Error.Message, c.frag) {
				t.Fatalf("got %d %+v, want 400 %s mentioning %q", resp.StatusCode, body.Error, c.code, c.frag)
			}
		})
	}

	after := snapshot(t, s, tok, inst, inst2)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Fatalf("failed calls changed state (-before +after):\n%s", diff)
	}
}
