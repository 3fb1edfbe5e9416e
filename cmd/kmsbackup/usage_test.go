package main

import (
	"strings"
	"testing"
)

// TestUsageErrorIsOneLine: a mistake in the command line prints one line,
// the error and where to read more, not the command's whole usage.
func TestUsageErrorIsOneLine(t *testing.T) {
	api := newFakeAPI(t, nil)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"backup-instance", "enable", "bkp_1", "--kms-instance", "kms_1"},
			"kmsbackup: --alias is required: pass a name for the backup instance, such as --alias prod (see kmsbackup backup-instance enable --help)\n"},
		{[]string{"kms", "key", "list", "--instance", "i", "--bogus"},
			"kmsbackup: unknown flag: --bogus (see kmsbackup kms key list --help)\n"},
		{[]string{"kms", "nope"},
			"kmsbackup: unknown command \"nope\" for \"kmsbackup kms\" (see kmsbackup kms --help)\n"},
		{[]string{"kms", "instance", "list", "x"},
			"kmsbackup: kmsbackup kms instance list takes no arguments, received 1; values go in flags (see kmsbackup kms instance list --help)\n"},
	} {
		r := mustRun(t, api, nil, tt.args...)
		if r.code != exitUsage || r.stderr != tt.want {
			t.Errorf("%q: exit %d, stderr\n%q\nwant exit %d, stderr\n%q", tt.args, r.code, r.stderr, exitUsage, tt.want)
		}
	}
}

// TestTokenWithCharactersNoHeaderCarries: a token holding a newline (a
// copy-paste, a file read whole) cannot be sent in a header; the command
// line says so, before any request, without printing the token, rather
// than that the server cannot be reached.
func TestTokenWithCharactersNoHeaderCarries(t *testing.T) {
	api := newFakeAPI(t, map[string]reply{"GET /v1/whoami": {200, `{"account":"acc1","admin":false}`}})
	const token = "kmsb_SECRETPART"
	for _, tt := range []struct {
		name, token, what string
		env               bool
	}{
		{"trailing newline", token + "\n", "a newline", false},
		{"carriage return", token + "\r\n", "a carriage return", false},
		{"from the environment", token + "\n", "a newline", true},
		{"control character", "kmsb_\x1bSECRETPART", "a control character", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"whoami", "--token", tt.token}
			if tt.env {
				t.Setenv(envToken, tt.token)
				args = args[:1]
			}
			before := len(api.requests())
			r := mustRun(t, api, nil, args...)
			if r.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
			}
			if !strings.Contains(r.stderr, "holds "+tt.what) || !strings.Contains(r.stderr, "no HTTP header can carry") {
				t.Errorf("stderr %q does not say what is wrong", r.stderr)
			}
			if strings.Contains(r.stderr, "SECRETPART") || strings.Contains(r.stderr, "cannot reach") {
				t.Errorf("stderr %q", r.stderr)
			}
			if n := len(api.requests()) - before; n != 0 {
				t.Errorf("%d requests sent", n)
			}
		})
	}
	// Spaces and tabs are no reason to refuse: the server decides.
	if r := mustRun(t, api, nil, "whoami", "--token", token+" "); r.code != exitOK {
		t.Errorf("token with a trailing space: exit %d, %s", r.code, r.stderr)
	}
}
