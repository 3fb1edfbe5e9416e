package main

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
)

// completions runs the hidden __complete command as a shell does and
// returns the candidates it prints, without their descriptions, and the
// directive.
func completions(t *testing.T, api *fakeAPI, args ...string) ([]string, string) {
	t.Helper()
	r := mustRun(t, api, nil, append([]string{"__complete"}, args...)...)
	if r.code != exitOK {
		t.Fatalf("__complete %q: exit %d\n%s", args, r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	var ids []string
	for _, l := range lines[:len(lines)-1] {
		id, _, _ := strings.Cut(l, "\t")
		ids = append(ids, id)
	}
	return ids, lines[len(lines)-1]
}

const (
	instancesJSON = `{"items":[{"id":"kms_1","region":"cn-hangzhou","state":"active"},{"id":"kms_2","region":"eu-west-1","state":"active"},{"id":"kms_9","region":"eu-west-1","state":"released"}]}`
	keysJSON      = `{"items":[{"id":"key_a","description":"payments"},{"id":"key_b","description":""}]}`
	secretsJSON   = `{"items":[{"id":"db-password","name":"db-password","key_id":"key_a"}]}`
	backupsJSON   = `{"items":[{"id":"bkp_1","alias":"prod","kind":"provisioned","state":"enabled"},{"id":"upl_1","alias":"3 May","kind":"upload","state":"uploaded"}]}`
	uploadsJSON   = `{"items":[{"id":"upl_1","alias":"3 May","kind":"upload","state":"uploaded"}]}`
)

// TestCompletionOfIDs: arguments and flags that name an instance, a key,
// a secret, a backup instance or an upload complete with the IDs the
// server lists, asked with the command's address and token.
func TestCompletionOfIDs(t *testing.T) {
	api := newFakeAPI(t, map[string]reply{
		"GET /v1/kms/instances":    {200, instancesJSON},
		"GET /v1/kms/keys":         {200, keysJSON},
		"GET /v1/kms/secrets":      {200, secretsJSON},
		"GET /v1/backup-instances": {200, backupsJSON},
		"GET /v1/uploads":          {200, uploadsJSON},
	})
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"kms", "instance", "show", ""}, []string{"kms_1", "kms_2"}},
		{[]string{"kms", "key", "create", "--instance", ""}, []string{"kms_1", "kms_2"}},
		{[]string{"kms", "key", "rotate", ""}, []string{"key_a", "key_b", "key_a", "key_b"}}, // the keys of each active instance
		{[]string{"kms", "encrypt", "--key", "k"}, []string{"key_a", "key_b", "key_a", "key_b"}},
		{[]string{"kms", "secret", "get", ""}, []string{"db-password", "db-password"}},
		{[]string{"kms", "secret", "create", "n", "--instance", "kms_2", "--key", ""}, []string{"key_a", "key_b"}},
		{[]string{"backup-instance", "reset", ""}, []string{"bkp_1"}},
		{[]string{"data", "list", ""}, []string{"bkp_1", "upl_1"}},
		{[]string{"restore", "--from", ""}, []string{"bkp_1", "upl_1"}},
		{[]string{"restore", "--to-instance", ""}, []string{"kms_1", "kms_2"}},
		{[]string{"backup-instance", "enable", "bkp_1", "--kms-instance", ""}, []string{"kms_1", "kms_2"}},
		{[]string{"upload", "delete", ""}, []string{"upl_1"}},
		{[]string{"audit", "list", "--backup", ""}, []string{"bkp_1", "upl_1"}},
		{[]string{"kms", "key", "show", "key_a", ""}, nil}, // one ID only
	} {
		got, directive := completions(t, api, tt.args...)
		if !slices.Equal(got, tt.want) || directive != ":4" {
			t.Errorf("__complete %q = %q %s, want %q :4", tt.args, got, directive, tt.want)
		}
	}
	// With --instance set, only that instance's keys are listed.
	before := len(api.requests())
	completions(t, api, "kms", "secret", "create", "n", "--instance", "kms_2", "--key", "")
	for _, r := range api.requests()[before:] {
		if r.Path != "/v1/kms/keys" || r.Query != "instance=kms_2" {
			t.Errorf("completing --key of kms_2 asked %s %s?%s", r.Method, r.Path, r.Query)
		}
	}
	// Descriptions help choose.
	r := mustRun(t, api, nil, "__complete", "kms", "key", "show", "")
	if !strings.Contains(r.stdout, "key_a\tpayments\n") {
		t.Errorf("key completion without its description:\n%s", r.stdout)
	}
}

// TestCompletionIsSilentOnErrors: when the server refuses or cannot be
// reached, completion offers nothing (never files) and prints no error.
func TestCompletionIsSilentOnErrors(t *testing.T) {
	refusing := newFakeAPI(t, map[string]reply{"GET /v1/kms/instances": {401, `{"error":{"code":"unauthenticated","message":"no token"}}`}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	_ = ln.Close()
	for _, args := range [][]string{
		{"--addr", refusing.URL, "__complete", "kms", "instance", "show", ""},
		{"--addr", gone, "__complete", "kms", "key", "show", ""},
		{"--addr", refusing.URL, "--token", "bad\ntoken", "__complete", "kms", "instance", "show", ""},
	} {
		r := runCLI(context.Background(), nil, args...)
		if r.code != exitOK || r.stdout != ":4\n" || strings.Contains(r.stderr, "kmsbackup:") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
}

// TestIDCompletionTable: every command and flag the table names exists, so
// that renaming one cannot silently drop its completion.
func TestIDCompletionTable(t *testing.T) {
	root := newRootCmd(&app{})
	for _, c := range idArgs {
		cmd, _, err := root.Find(strings.Fields(c.cmd))
		if err != nil || cmd.CommandPath() != "kmsbackup "+c.cmd {
			t.Errorf("no command %q", c.cmd)
			continue
		}
		if c.arg != idNone && cmd.ValidArgsFunction == nil {
			t.Errorf("%s: no completion of its argument", c.cmd)
		}
		for name := range c.flags {
			if _, ok := cmd.GetFlagCompletionFunc(name); !ok {
				t.Errorf("%s --%s: no completion", c.cmd, name)
			}
		}
	}
}
