package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
)

// request is what the fake API received.
type request struct {
	Method, Path, Query, Auth string
	Body                      []byte
}

// reply is a canned response.
type reply struct {
	status int
	body   string
}

// fakeAPI is an httptest server answering "METHOD /path" with canned JSON
// and recording every request.
type fakeAPI struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []request
	replies map[string]reply
}

func newFakeAPI(tb testing.TB, replies map[string]reply) *fakeAPI {
	tb.Helper()
	f := &fakeAPI{replies: replies}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"), Body: body})
		f.mu.Unlock()
		rep, ok := f.replies[r.Method+" "+r.URL.Path]
		if !ok {
			rep = reply{http.StatusNotFound, `{"error":{"code":"not_found","message":"no canned reply for ` + r.Method + ` ` + r.URL.Path + `"}}`}
		}
		if rep.status == 0 {
			rep.status = http.StatusOK
		}
		if rep.status != http.StatusNoContent {
			ct := "application/json"
			if strings.HasPrefix(rep.body, `{"progress"`) { // a streamed restore
				ct = "application/x-ndjson"
			}
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	}))
	tb.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

// result is one run of the command line, with stderr as main writes it.
type result struct {
	stdout, stderr string
	code           int
	err            error
}

// runCLI runs the command line the way main does, without exiting.
func runCLI(ctx context.Context, stdin io.Reader, args ...string) result {
	var out, errb bytes.Buffer
	err := execute(ctx, args, stdin, &out, &errb)
	if err != nil {
		errb.WriteString("kmsbackup: " + errorMessage(err) + "\n")
	}
	return result{stdout: out.String(), stderr: errb.String(), code: exitCode(err), err: err}
}

// mustRun runs against api with table output unless args say otherwise.
func mustRun(tb testing.TB, api *fakeAPI, stdin io.Reader, args ...string) result {
	tb.Helper()
	return runCLI(context.Background(), stdin, append([]string{"--addr", api.URL}, args...)...)
}

// tty is a stdin that looks like a terminal.
type tty struct{ io.Reader }

func (tty) Stat() (os.FileInfo, error) { return ttyInfo{}, nil }

type ttyInfo struct{ fs.FileInfo }

func (ttyInfo) Mode() fs.FileMode { return fs.ModeDevice | fs.ModeCharDevice | 0o620 }

func TestUsageErrorsSendNothing(t *testing.T) {
	valueFile := filepath.Join(t.TempDir(), "v")
	if err := os.WriteFile(valueFile, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		stdin io.Reader
		want  string // in the error line
	}{
		{"unknown flag", []string{"kms", "key", "list", "--instance", "i", "--bogus"}, nil, "unknown flag: --bogus"},
		{"unknown command", []string{"kms", "nope"}, nil, `unknown command "nope" for "kmsbackup kms"`},
		{"unknown root command", []string{"acount"}, nil, `unknown command "acount" for "kmsbackup"; did you mean account?`},
		{"missing argument", []string{"kms", "key", "show"}, nil, "missing KEY_ID"},
		{"extra argument", []string{"kms", "key", "show", "a", "b"}, nil, "accepts 1 arg(s) (KEY_ID), received 2"},
		{"empty argument", []string{"kms", "secret", "show", ""}, nil, "NAME must not be empty"},
		{"argument to a command without", []string{"kms", "instance", "list", "x"}, nil, "takes no arguments"},
		{"missing region", []string{"kms", "instance", "create"}, nil, "--region is required"},
		{"zero key quota", []string{"kms", "instance", "create", "--region", "r", "--key-quota", "0"}, nil, "--key-quota must be a positive number"},
		{"negative secret quota", []string{"kms", "instance", "create", "--region", "r", "--secret-quota", "-3"}, nil, "--secret-quota must be a positive number"},
		{"zero page size", []string{"kms", "instance", "list", "--page-size", "0"}, nil, "--page-size must be a positive number"},
		{"page size not a number", []string{"kms", "instance", "list", "--page-size", "ten"}, nil, `invalid argument "ten" for "--page-size"`},
		{"key list without instance", []string{"kms", "key", "list"}, nil, "--instance is required"},
		{"key create without instance", []string{"kms", "key", "create"}, nil, "--instance is required"},
		{"secret list without instance", []string{"kms", "secret", "list"}, nil, "--instance is required"},
		{"secret create without key", []string{"kms", "secret", "create", "n", "--instance", "i", "--value", "v"}, nil, "--key is required"},
		{"no value", []string{"kms", "secret", "create", "n", "--instance", "i", "--key", "k"}, nil, "the secret value is required"},
		{"both values", []string{"kms", "secret", "rotate", "n", "--value", "v", "--value-file", valueFile}, nil, "mutually exclusive"},
		{"empty value file", []string{"kms", "secret", "rotate", "n", "--value-file", ""}, nil, "--value-file needs a file name"},
		{"value file - on a terminal", []string{"kms", "secret", "rotate", "n", "--value-file", "-"}, tty{strings.NewReader("")}, "stdin is a terminal"},
		{"missing value file", []string{"kms", "secret", "rotate", "n", "--value-file", valueFile + ".missing"}, nil, "no such file"},
		{"version 0", []string{"kms", "secret", "get", "n", "--version", "0"}, nil, "--version must be 1 or more"},
		{"encrypt without key", []string{"kms", "encrypt", "--plaintext", "p"}, nil, "--key is required"},
		{"encrypt on a terminal", []string{"kms", "encrypt", "--key", "k"}, tty{strings.NewReader("")}, "no plaintext: pass --plaintext TEXT, or pipe"},
		{"decrypt on a terminal", []string{"kms", "decrypt"}, tty{strings.NewReader("")}, "no ciphertext"},
		{"decrypt empty stdin", []string{"kms", "decrypt"}, strings.NewReader(" \n"), "the ciphertext is empty"},
		{"bad output", []string{"-o", "yaml", "whoami"}, nil, `invalid --output "yaml": use table, json or id`},
		{"bad from", []string{"events", "tail", "--from", "-1"}, nil, `invalid argument "-1" for "--from"`},
		{"bad address", []string{"whoami", "--addr", "localhost:8080"}, nil, "use a URL such as http://127.0.0.1:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI(t, nil)
			stdin := tt.stdin
			if stdin == nil {
				stdin = strings.NewReader("")
			}
			r := mustRun(t, api, stdin, tt.args...)
			if r.code != exitUsage {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", r.code, exitUsage, r.stderr)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "kmsbackup: ") || !strings.Contains(last, tt.want) {
				t.Errorf("error line %q, want kmsbackup: ...%s...", last, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			if n := len(api.requests()); n != 0 {
				t.Errorf("%d requests sent, want none", n)
			}
		})
	}
}

func TestUsagePrintedOnlyForUsageErrors(t *testing.T) {
	api := newFakeAPI(t, map[string]reply{
		"GET /v1/kms/keys/k1": {http.StatusNotFound, `{"error":{"code":"not_found","message":"get key k1: key not found"}}`},
	})
	r := mustRun(t, api, nil, "kms", "key", "show")
	if !strings.Contains(r.stderr, "Usage:\n  kmsbackup kms key show KEY_ID [flags]") {
		t.Errorf("usage error without usage:\n%s", r.stderr)
	}
	r = mustRun(t, api, nil, "kms", "key", "show", "k1")
	if want := "kmsbackup: get key k1: key not found\n"; r.stderr != want || r.code != exitNotFound {
		t.Errorf("runtime error: code %d, stderr %q; want %d, %q", r.code, r.stderr, exitNotFound, want)
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	const secret = "hunter2-s3cret"
	valueFile := filepath.Join(t.TempDir(), "v")
	if err := os.WriteFile(valueFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"kms", "encrypt", "--key", "k", secret},
		{"kms", "secret", "create", "n", secret, "--instance", "i", "--key", "k"},
		{"kms", "secret", "create", "n", "--instance", "i", "--key", "k", "--value", secret, "--value-file", valueFile},
		{"kms", "secret", "rotate", "n", "--value", secret, "--value-file", valueFile},
		{"kms", "secret", "rotate", "n", "--value", secret, "--version", "1"},
		{"kms", "secret", "create", "n", "--value", secret},
		{"kms", "encrypt", "--plaintext", secret},
		{"kms", "decrypt", secret},
	} {
		api := newFakeAPI(t, nil)
		r := mustRun(t, api, strings.NewReader(secret), args...)
		if r.code == exitOK {
			t.Errorf("%q succeeded", args)
		}
		if strings.Contains(r.stderr, secret) || strings.Contains(r.stdout, secret) {
			t.Errorf("%q: the secret is in the output:\n%s%s", args, r.stdout, r.stderr)
		}
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   int
	}{
		{400, `{"error":{"code":"invalid_argument","message":"bad"}}`, exitUsage},
		{404, `{"error":{"code":"not_found","message":"gone"}}`, exitNotFound},
		{409, `{"error":{"code":"already_exists","message":"dup"}}`, exitConflict},
		{409, `{"error":{"code":"conflict","message":"race"}}`, exitConflict},
		{422, `{"error":{"code":"quota_exceeded","message":"full"}}`, exitQuota},
		{409, `{"error":{"code":"failed_precondition","message":"released"}}`, exitPrecondition},
		{401, `{"error":{"code":"unauthenticated","message":"who"}}`, exitAuth},
		{403, `{"error":{"code":"permission_denied","message":"admin only"}}`, exitAuth},
		{503, `{"error":{"code":"unavailable","message":"busy"}}`, exitUnavailable},
		{422, `{"error":{"code":"corrupt","message":"tampered"}}`, exitCorrupt},
		{500, `{"error":{"code":"internal","message":"oops"}}`, exitInternal},
		{502, `<html>bad gateway</html>`, exitInternal},
	}
	for _, tt := range tests {
		api := newFakeAPI(t, map[string]reply{"GET /v1/whoami": {tt.status, tt.body}})
		r := mustRun(t, api, nil, "whoami")
		if r.code != tt.want {
			t.Errorf("%d %s: exit code %d, want %d", tt.status, tt.body, r.code, tt.want)
		}
		if strings.Contains(r.stderr, "Usage:") {
			t.Errorf("%d %s: usage printed for a runtime error", tt.status, tt.body)
		}
	}

	api := newFakeAPI(t, map[string]reply{"GET /v1/whoami": {401, `{"error":{"code":"unauthenticated","message":"whoami: no token","hint":"pass --token"}}`}})
	if r := mustRun(t, api, nil, "whoami"); r.stderr != "kmsbackup: whoami: no token (pass --token)\n" {
		t.Errorf("stderr %q", r.stderr)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	_ = ln.Close()
	r := runCLI(context.Background(), nil, "--addr", addr, "whoami")
	if r.code != exitUnavailable || !strings.Contains(r.stderr, "cannot reach "+addr) {
		t.Errorf("unreachable server: code %d, stderr %q", r.code, r.stderr)
	}
}

func TestExitCodeTable(t *testing.T) {
	for _, k := range []error{domain.ErrInvalidArgument, domain.ErrNotFound, domain.ErrAlreadyExists, domain.ErrQuotaExceeded,
		domain.ErrFailedPrecondition, domain.ErrWrongExpectedRevision, domain.ErrUnauthenticated, domain.ErrPermissionDenied,
		domain.ErrCorrupt, domain.ErrUnavailable, domain.ErrTooManyRequests} {
		code, ok := exitCodes[k]
		if !ok {
			t.Errorf("%v has no exit code", k)
		}
		if exitCode(&httpapi.APIError{ErrorDetail: httpapi.ErrorDetail{Code: "x"}}) != exitInternal {
			t.Errorf("unknown API code not internal")
		}
		if got := exitCode(domain.Errorf(k, "op", "item", "", "msg")); got != code {
			t.Errorf("exitCode(%v) = %d, want %d", k, got, code)
		}
	}
	for _, code := range exitCodes {
		if exitMeanings[code] == "" {
			t.Errorf("exit code %d is undocumented", code)
		}
	}
	if got := exitCode(nil); got != exitOK {
		t.Errorf("exitCode(nil) = %d", got)
	}
	if got := exitCode(errors.New("boom")); got != exitInternal {
		t.Errorf("exitCode(plain) = %d", got)
	}
	if got := errorMessage(context.Canceled); got != "interrupted" {
		t.Errorf("errorMessage(Canceled) = %q", got)
	}
	r := runCLI(context.Background(), nil, "--help")
	for code, meaning := range exitMeanings {
		if !strings.Contains(r.stdout, meaning) {
			t.Errorf("root help lacks exit code %d (%s)", code, meaning)
		}
	}
}

func TestEveryClientCommandHasHelpAndExample(t *testing.T) {
	root := newRootCmd(&app{})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Name() == "server" || c.HasSubCommands() {
			return
		}
		if c.Short == "" || c.Example == "" {
			t.Errorf("%s: missing Short or Example", c.CommandPath())
		}
		if r := runCLI(context.Background(), nil, append(strings.Fields(c.CommandPath())[1:], "--help")...); r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("%s --help: code %d\n%s", c.CommandPath(), r.code, r.stdout)
		}
	}
	walk(root)
}

func TestCompletion(t *testing.T) {
	r := runCLI(context.Background(), nil, "completion", "bash")
	if r.code != 0 || !strings.Contains(r.stdout, "kmsbackup") {
		t.Fatalf("completion bash: code %d, stderr %s", r.code, r.stderr)
	}
	r = runCLI(context.Background(), nil, "__complete", "kms", "se")
	if !strings.HasPrefix(r.stdout, "secret\t") {
		t.Errorf("completing kms se: %q", r.stdout)
	}
	r = runCLI(context.Background(), nil, "__complete", "whoami", "-o", "")
	if !strings.HasPrefix(r.stdout, "table\njson\nid\n") {
		t.Errorf("completing -o: %q", r.stdout)
	}
}

func TestGroupWithoutSubcommandPrintsHelp(t *testing.T) {
	r := runCLI(context.Background(), nil, "kms", "secret")
	if r.code != 0 || !strings.Contains(r.stdout, "Available Commands:") || strings.Contains(r.stdout, "kmsbackup kms secret [flags]") {
		t.Errorf("code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestAddressAndTokenFromEnvironment(t *testing.T) {
	api := newFakeAPI(t, map[string]reply{"GET /v1/whoami": {200, `{"account":"acc1","admin":false}`}})
	t.Setenv(envAddr, api.URL)
	t.Setenv(envToken, "env-token")
	if r := runCLI(context.Background(), nil, "whoami"); r.code != 0 {
		t.Fatalf("whoami: %s", r.stderr)
	}
	if r := runCLI(context.Background(), nil, "whoami", "--token", "flag-token"); r.code != 0 {
		t.Fatalf("whoami: %s", r.stderr)
	}
	reqs := api.requests()
	if len(reqs) != 2 || reqs[0].Auth != "Bearer env-token" || reqs[1].Auth != "Bearer flag-token" {
		t.Errorf("requests %+v", reqs)
	}
	t.Setenv(envAddr, "http://127.0.0.1:1")
	if r := runCLI(context.Background(), nil, "whoami", "--addr", api.URL); r.code != 0 {
		t.Errorf("--addr does not win over %s: %s", envAddr, r.stderr)
	}
}

const (
	instanceJSON = `{"id":"01INST","account":"acc1","region":"eu-west-1","key_quota":1000,"secret_quota":1000,` +
		`"keys":2,"secrets":1,"state":"active","created_at":"2026-03-01T10:00:00+02:00"}`
	keyJSON = `{"id":"k1","instance":"01INST","region":"eu-west-1","description":"pay\tments\n\u001b[31m","spec":"AES_256",` +
		`"primary_version":2,"versions":[{"version":1,"created_at":"2026-03-01T08:00:00Z"},{"version":2,"created_at":"2026-03-02T08:00:00Z"}],` +
		`"created_at":"2026-03-01T08:00:00Z","updated_at":"2026-03-02T08:00:00Z"}`
	secretJSON = `{"id":"db","name":"db","instance":"01INST","region":"eu-west-1","key_id":"k1","current_version":1,` +
		`"versions":[{"version":1,"key_id":"k1","created_at":"2026-03-01T08:00:00Z"}],"created_at":"2026-03-01T08:00:00Z","updated_at":"2026-03-01T08:00:00Z"}`
)

func TestTableOutput(t *testing.T) {
	api := newFakeAPI(t, map[string]reply{
		"GET /v1/kms/instances":        {200, `{"items":[` + instanceJSON + `,` + strings.Replace(instanceJSON, `"01INST"`, `"01INSTANCE-LONGER"`, 1) + `],"next_page_token":"p2"}`},
		"GET /v1/kms/instances/01INST": {200, instanceJSON},
		"GET /v1/kms/keys/k1":          {200, keyJSON},
		"GET /v1/kms/secrets":          {200, `{"items":[` + secretJSON + `]}`},
		"POST /v1/accounts":            {200, `{"id":"acc9","name":"acme","created_at":"2026-03-01T08:00:00Z","token":"tok-once"}`},
		"DELETE /v1/kms/keys/k1":       {http.StatusNoContent, ""},
	})
	tests := []struct {
		args         []string
		stdout       string
		stderrSubstr string
	}{
		{[]string{"kms", "instance", "list"}, "" +
			"ID                 REGION     STATE   KEYS    SECRETS  CREATED\n" +
			"01INST             eu-west-1  active  2/1000  1/1000   2026-03-01T08:00:00Z\n" +
			"01INSTANCE-LONGER  eu-west-1  active  2/1000  1/1000   2026-03-01T08:00:00Z\n",
			"--page-token p2"},
		{[]string{"kms", "instance", "show", "01INST"}, "" +
			"ID:       01INST\n" +
			"Account:  acc1\n" +
			"Region:   eu-west-1\n" +
			"State:    active\n" +
			"Keys:     2 of 1000\n" +
			"Secrets:  1 of 1000\n" +
			"Created:  2026-03-01T08:00:00Z\n", ""},
		{[]string{"kms", "key", "show", "k1"}, "" +
			"ID:               k1\n" +
			"Instance:         01INST\n" +
			"Region:           eu-west-1\n" +
			"Spec:             AES_256\n" +
			"Description:      pay ments  [31m\n" +
			"Primary version:  2\n" +
			"Created:          2026-03-01T08:00:00Z\n" +
			"Updated:          2026-03-02T08:00:00Z\n" +
			"\n" +
			"VERSION  CREATED\n" +
			"1        2026-03-01T08:00:00Z\n" +
			"2        2026-03-02T08:00:00Z\n", ""},
		{[]string{"kms", "secret", "list", "--instance", "01INST"}, "" +
			"NAME  REGION     KEY  VERSION  UPDATED\n" +
			"db    eu-west-1  k1   1        2026-03-01T08:00:00Z\n", ""},
		{[]string{"kms", "key", "delete", "k1"}, "Deleted key k1\n", ""},
		{[]string{"account", "create", "acme"}, "" +
			"ID:       acc9\n" +
			"Name:     acme\n" +
			"Created:  2026-03-01T08:00:00Z\n" +
			"Token:    tok-once\n" +
			"\n" +
			"Note: the token is shown only once; store it now. Use it with --token or KMSBACKUP_TOKEN.\n", ""},
	}
	for _, tt := range tests {
		r := mustRun(t, api, nil, tt.args...)
		if r.code != 0 {
			t.Errorf("%q: code %d: %s", tt.args, r.code, r.stderr)
			continue
		}
		if diff := cmp.Diff(tt.stdout, r.stdout); diff != "" {
			t.Errorf("%q stdout (-want +got):\n%s", tt.args, diff)
		}
		if !strings.Contains(r.stderr, tt.stderrSubstr) {
			t.Errorf("%q stderr %q, want %q in it", tt.args, r.stderr, tt.stderrSubstr)
		}
	}
}

// TestJSONOutput checks that -o json prints exactly one indented document,
// the API's.
func TestJSONOutput(t *testing.T) {
	api := newFakeAPI(t, map[string]reply{
		"GET /v1/kms/instances":        {200, `{"items":[` + instanceJSON + `],"next_page_token":"p2"}`},
		"GET /v1/kms/keys":             {200, `{"items":[]}`},
		"GET /v1/kms/keys/k1":          {200, keyJSON},
		"DELETE /v1/kms/secrets/db":    {http.StatusNoContent, ""},
		"POST /v1/kms/encrypt":         {200, `{"ciphertext":"kms1:abc","key_id":"k1","version":2}`},
		"POST /v1/kms/decrypt":         {200, `{"plaintext":"AAEC","key_id":"k1","version":2}`},
		"GET /v1/kms/secrets/db/value": {200, `{"id":"db","name":"db","version":1,"key_id":"k1","value":"cHc="}`},
		"POST /v1/accounts":            {200, `{"id":"acc9","name":"acme","created_at":"2026-03-01T08:00:00Z","token":"tok-once"}`},
	})
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"kms", "instance", "list"}, `{"items":[` + instanceJSON + `],"next_page_token":"p2"}`},
		{[]string{"kms", "key", "list", "--instance", "i"}, `{"items":[]}`},
		{[]string{"kms", "key", "show", "k1"}, keyJSON},
		{[]string{"kms", "secret", "delete", "db"}, `{"id":"db","deleted":true}`},
		{[]string{"kms", "encrypt", "--key", "k1", "--plaintext", "x"}, `{"ciphertext":"kms1:abc","key_id":"k1","version":2}`},
		{[]string{"kms", "decrypt", "--ciphertext", "kms1:abc"}, `{"plaintext":"AAEC","key_id":"k1","version":2}`},
		{[]string{"kms", "secret", "get", "db"}, `{"id":"db","name":"db","version":1,"key_id":"k1","value":"cHc="}`},
		{[]string{"account", "create", "acme"}, `{"id":"acc9","name":"acme","created_at":"2026-03-01T08:00:00Z","token":"tok-once"}`},
	}
	for _, tt := range tests {
		r := mustRun(t, api, nil, append(tt.args, "-o", "json")...)
		if r.code != 0 {
			t.Errorf("%q: code %d: %s", tt.args, r.code, r.stderr)
			continue
		}
		dec := json.NewDecoder(strings.NewReader(r.stdout))
		var got any
		if err := dec.Decode(&got); err != nil {
			t.Errorf("%q: not JSON: %v\n%s", tt.args, err, r.stdout)
			continue
		}
		if dec.More() {
			t.Errorf("%q: more than one JSON document:\n%s", tt.args, r.stdout)
		}
		if !strings.HasPrefix(r.stdout, "{\n  \"") || !strings.HasSuffix(r.stdout, "}\n") {
			t.Errorf("%q: not indented:\n%s", tt.args, r.stdout)
		}
		var want any
		if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(normalizeTimes(want), normalizeTimes(got)); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tt.args, diff)
		}
	}
	if r := mustRun(t, api, nil, "account", "create", "acme", "-o", "json"); !strings.Contains(r.stderr, "shown only once") {
		t.Errorf("account create -o json: no note on stderr: %q", r.stderr)
	}
}

// normalizeTimes rewrites RFC 3339 strings to UTC, so that an offset the
// server chose does not matter.
func normalizeTimes(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalizeTimes(e)
		}
	case []any:
		for i, e := range v {
			v[i] = normalizeTimes(e)
		}
	case string:
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t.UTC().Format(time.RFC3339Nano)
		}
	}
	return v
}

func TestRawPlaintextOutput(t *testing.T) {
	raw := []byte{0, 1, 2, 'a', '\n', 0xff}
	b64 := base64.StdEncoding.EncodeToString(raw)
	api := newFakeAPI(t, map[string]reply{
		"POST /v1/kms/decrypt":         {200, `{"plaintext":"` + b64 + `","key_id":"k1","version":1}`},
		"GET /v1/kms/secrets/db/value": {200, `{"id":"db","name":"db","version":2,"key_id":"k1","value":"` + b64 + `"}`},
		"POST /v1/kms/encrypt":         {200, `{"ciphertext":"kms1:abc","key_id":"k1","version":1}`},
	})
	r := mustRun(t, api, strings.NewReader("  kms1:abc\n"), "kms", "decrypt", "--region", "eu")
	if r.code != 0 || r.stdout != string(raw) {
		t.Errorf("decrypt: code %d, stdout %q, want %q; %s", r.code, r.stdout, raw, r.stderr)
	}
	r = mustRun(t, api, nil, "kms", "secret", "get", "db", "--version", "2", "--region", "eu")
	if r.code != 0 || r.stdout != string(raw) {
		t.Errorf("secret get: code %d, stdout %q, want %q; %s", r.code, r.stdout, raw, r.stderr)
	}
	r = mustRun(t, api, nil, "kms", "encrypt", "--key", "k1", "--plaintext", "x")
	if r.code != 0 || r.stdout != "kms1:abc\n" {
		t.Errorf("encrypt: code %d, stdout %q; %s", r.code, r.stdout, r.stderr)
	}
	reqs := api.requests()
	if got, want := string(reqs[0].Body), `{"ciphertext":"kms1:abc","region":"eu"}`; got != want {
		t.Errorf("decrypt request %s, want %s", got, want)
	}
	if got, want := reqs[1].Query, "region=eu&version=2"; got != want {
		t.Errorf("secret get query %q, want %q", got, want)
	}
}

// TestValuesSentVerbatim checks that secret values and plaintexts reach the
// API byte for byte, trailing newlines included.
func TestValuesSentVerbatim(t *testing.T) {
	binary := []byte{0xff, 0, '\r', '\n', ' ', '\n'}
	file := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(file, binary, 0o600); err != nil {
		t.Fatal(err)
	}
	api := newFakeAPI(t, map[string]reply{
		"POST /v1/kms/secrets":           {200, secretJSON},
		"POST /v1/kms/secrets/db/rotate": {200, secretJSON},
		"POST /v1/kms/encrypt":           {200, `{"ciphertext":"kms1:abc","key_id":"k1","version":1}`},
	})
	tests := []struct {
		args  []string
		stdin []byte
		field string
		want  []byte
	}{
		{[]string{"kms", "secret", "create", "db", "--instance", "i", "--key", "k1", "--value", "pw\n"}, nil, "value", []byte("pw\n")},
		{[]string{"kms", "secret", "create", "db", "--instance", "i", "--key", "k1", "--value", ""}, nil, "value", []byte{}},
		{[]string{"kms", "secret", "create", "db", "--instance", "i", "--key", "k1", "--value-file", file}, nil, "value", binary},
		{[]string{"kms", "secret", "rotate", "db", "--value-file", "-", "--region", "eu"}, binary, "value", binary},
		{[]string{"kms", "encrypt", "--key", "k1"}, binary, "plaintext", binary},
		{[]string{"kms", "encrypt", "--key", "k1", "--plaintext", " x \n"}, []byte("ignored"), "plaintext", []byte(" x \n")},
	}
	for i, tt := range tests {
		r := mustRun(t, api, bytes.NewReader(tt.stdin), tt.args...)
		if r.code != 0 {
			t.Errorf("%q: code %d: %s", tt.args, r.code, r.stderr)
			continue
		}
		reqs := api.requests()
		var body map[string]json.RawMessage
		if err := json.Unmarshal(reqs[i].Body, &body); err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := json.Unmarshal(body[tt.field], &got); err != nil {
			t.Fatalf("%q: %s: %v", tt.args, body[tt.field], err)
		}
		if !bytes.Equal(got, tt.want) {
			t.Errorf("%q: sent %q, want %q", tt.args, got, tt.want)
		}
	}
	reqs := api.requests()
	if got, want := string(reqs[3].Body), `{"region":"eu","value":"`+base64.StdEncoding.EncodeToString(binary)+`"}`; got != want {
		t.Errorf("rotate body %s, want %s", got, want)
	}
}

func TestRequestsCarryFlags(t *testing.T) {
	api := newFakeAPI(t, map[string]reply{
		"POST /v1/kms/instances":      {200, instanceJSON},
		"GET /v1/kms/keys":            {200, `{"items":[]}`},
		"POST /v1/kms/keys":           {200, keyJSON},
		"POST /v1/kms/keys/k1/rotate": {200, keyJSON},
	})
	for _, args := range [][]string{
		{"kms", "instance", "create", "--region", "eu", "--key-quota", "5"},
		{"kms", "key", "list", "--instance", "01INST", "--page-size", "10", "--page-token", "p2"},
		{"kms", "key", "create", "--instance", "01INST", "--description", "d"},
		{"kms", "key", "rotate", "k1", "--region", "eu"},
	} {
		if r := mustRun(t, api, nil, args...); r.code != 0 {
			t.Fatalf("%q: %s", args, r.stderr)
		}
	}
	got := api.requests()
	want := []request{
		{Method: "POST", Path: "/v1/kms/instances", Body: []byte(`{"region":"eu","key_quota":5}`)},
		{Method: "GET", Path: "/v1/kms/keys", Query: "instance=01INST&page_size=10&page_token=p2"},
		{Method: "POST", Path: "/v1/kms/keys", Body: []byte(`{"instance":"01INST","description":"d"}`)},
		{Method: "POST", Path: "/v1/kms/keys/k1/rotate", Query: "region=eu"},
	}
	if diff := cmp.Diff(want, got, cmp.Transformer("string", func(b []byte) string { return string(b) })); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// lineWriter signals when it has seen n lines.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	n    int
	done chan struct{}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if bytes.Count(w.buf.Bytes(), []byte("\n")) >= w.n && w.done != nil {
		close(w.done)
		w.done = nil
	}
	return len(p), nil
}

func TestEventsTailUntilInterrupted(t *testing.T) {
	queries := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries <- r.URL.RawQuery
		_, _ = io.WriteString(w, `{"position":8,"type":"KeyCreated"}`+"\n\n"+`{"position":9,"type":"KeyRotated"}`+"\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{n: 2, done: make(chan struct{})}
	done := out.done
	errc := make(chan error, 1)
	go func() {
		errc <- execute(ctx, []string{"--addr", srv.URL, "events", "tail", "--from", "7", "-o", "json"}, nil, out, io.Discard)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no events printed")
	}
	cancel() // Ctrl-C
	if err := <-errc; err != nil {
		t.Fatalf("tail ended with %v, want success", err)
	}
	want := `{"position":8,"type":"KeyCreated"}` + "\n" + `{"position":9,"type":"KeyRotated"}` + "\n"
	if got := out.buf.String(); got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if q := <-queries; q != "from=7" {
		t.Errorf("query %q", q)
	}
}

func TestInterruptWhileReadingStdin(t *testing.T) {
	api := newFakeAPI(t, nil)
	pr, pw := io.Pipe() // a writer that never closes
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	r := runCLI(ctx, pr, "--addr", api.URL, "kms", "encrypt", "--key", "k1")
	if r.code != exitInternal || r.stderr != "kmsbackup: interrupted\n" {
		t.Errorf("code %d, stderr %q", r.code, r.stderr)
	}
	if n := len(api.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestCellSanitizes(t *testing.T) {
	if got := cell("a\tb\nc\x1b[0m\u0085d"); got != "a b c [0m d" {
		t.Errorf("cell = %q", got)
	}
}
