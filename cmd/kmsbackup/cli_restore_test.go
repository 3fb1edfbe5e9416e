package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	restoreAppliedJSON = `{"applied":true,"dry_run":false,"plan":{"backup":"bkp_01","day":"2026-05-01","from_seq":3,"to_seq":7,` +
		`"at":"2026-05-01T23:55:00Z","target":"kms_01","region":"cn-hangzhou","items":[` +
		`{"kind":"key","id":"key_01","versions":2,"status":"restored"},` +
		`{"kind":"secret","id":"db","versions":1,"key_id":"key_01","status":"already-present"}],"findings":[]},` +
		`"restored":1,"already_present":1,"validation":[]}`
	restoreDryRunJSON = `{"applied":false,"dry_run":true,"plan":{"backup":"bkp_01","day":"2026-05-01","from_seq":7,"to_seq":7,` +
		`"at":"2026-05-01T10:05:00Z","target":"kms_01","region":"cn-hangzhou","items":[` +
		`{"kind":"key","id":"key_01","versions":2,"status":"planned"}],"findings":[]},"restored":0,"already_present":0,"validation":[]}`
	restoreFindingsJSON = `{"applied":false,"dry_run":false,"plan":{"backup":"bkp_01","day":"2026-05-01","from_seq":3,"to_seq":7,` +
		`"at":"2026-05-01T23:55:00Z","target":"kms_01","region":"cn-hangzhou","items":[` +
		`{"kind":"key","id":"key_01","versions":2,"status":"planned"}],"findings":[` +
		`{"code":"key-exists","item":"key_01","message":"a key with ID key_01 already exists in region cn-hangzhou: delete it there first"},` +
		`{"code":"item-not-in-backup","item":"gone","message":"secret gone is not in the data of 2026-05-01"}]},` +
		`"restored":0,"already_present":0,"validation":[]}`
	restoreExpiredJSON = `{"applied":false,"dry_run":true,"plan":{"backup":"bkp_02","day":"2026-05-01","from_seq":0,"to_seq":0,` +
		`"target":"kms_404","region":"","items":[],"findings":[` +
		`{"code":"backup-expired","item":"bkp_02","message":"backup instance bkp_02 is expired: renew it first"},` +
		`{"code":"target-not-found","item":"kms_404","message":"KMS instance kms_404 not found"}]},` +
		`"restored":0,"already_present":0,"validation":[]}`
	restoreInvalidJSON = `{"applied":true,"dry_run":false,"plan":{"backup":"bkp_01","day":"2026-05-01","from_seq":3,"to_seq":7,` +
		`"at":"2026-05-01T23:55:00Z","target":"kms_01","region":"cn-hangzhou","items":[` +
		`{"kind":"secret","id":"db","versions":1,"key_id":"key_01","status":"restored"}],"findings":[]},` +
		`"restored":1,"already_present":0,"validation":[` +
		`{"code":"secret-does-not-decrypt","item":"db","message":"version 1 does not decrypt under key_01"}]}`
	replayJSON = `{"id":"bkp_01","day":"2026-05-01","seq":7,"at":"2026-05-01T23:55:00Z","items":[` +
		`{"kind":"key","id":"key_01","versions":[` +
		`{"version":1,"digest":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},` +
		`{"version":2,"digest":"fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"}]},` +
		`{"kind":"secret","id":"db","key_id":"key_01","versions":[` +
		`{"version":1,"digest":"aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeeeffff"}]}],` +
		`"digest":"5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"}`
	replayEmptyJSON = `{"id":"bkp_01","day":"2026-04-30","seq":1,"at":"2026-04-30T00:00:00Z","items":[],` +
		`"digest":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}`
	auditJSON = `{"items":[{"id":"01KJMBR9R83MEHT78X3MEHT78X","at":"2026-05-02T09:49:00Z","action":"restore-key",` +
		`"actor":"acct_1","backup":"bkp_01","day":"2026-05-01","target":"kms_01","item":"key_01"},` +
		`{"id":"01KJMBR9R83MEHT78X3MEHT78Y","at":"2026-05-02T09:49:01Z","action":"restore-secret",` +
		`"actor":"acct_1","backup":"bkp_01","day":"2026-05-01","target":"kms_01","item":"db"}],"next_page_token":"12"}`
)

// restoreAPI answers POST /v1/restores with restore, and replays and
// audit records.
func restoreAPI(tb testing.TB, restore string) *fakeAPI {
	tb.Helper()
	return newFakeAPI(tb, map[string]reply{
		"POST /v1/restores":                      {200, restore},
		"GET /v1/backup-instances/bkp_01/replay": {200, replayJSON},
		"GET /v1/backup-instances/bkp_00/replay": {200, replayEmptyJSON},
		"GET /v1/audit":                          {200, auditJSON},
	})
}

// Key IDs as the command line parses them (the fake API's answers name
// key_01 and key_02).
const (
	key01 = "key_01JA0000000000000000000001"
	key02 = "key_01JA0000000000000000000002"
)

var restoreArgs = []string{"restore", "--from", "bkp_01", "--day", "2026-05-01", "--to-instance", "kms_01"}

func withArgs(base []string, more ...string) []string {
	return append(append([]string(nil), base...), more...)
}

func TestRestoreUsageErrorsSendNothing(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in the error line
	}{
		{"restore without from", []string{"restore", "--day", "2026-05-01", "--key", "k", "--to-instance", "kms_01"}, "--from is required"},
		{"restore with a bad day", []string{"restore", "--from", "bkp_01", "--day", "May 1", "--key", "k", "--to-instance", "kms_01"}, "--day must be a date as YYYY-MM-DD"},
		{"restore with a bad at", withArgs(restoreArgs, "--key", "k", "--at", "10:05"), "--at must be an RFC 3339 time"},
		{"restore of nothing", restoreArgs, "name what to restore: keys, secrets, or all (--key KEY_ID and --secret NAME are repeatable"},
		{"restore --all with --key", withArgs(restoreArgs, "--all", "--key", key01), "restore everything (all) or name keys and secrets, not both (--key KEY_ID and --secret NAME are repeatable; --all restores everything)"},
		{"restore --all with --secret", withArgs(restoreArgs, "--secret", "db", "--all"), "not both"},
		{"restore an empty key", withArgs(restoreArgs, "--key", key01, "--key", ""), `key ID "" must start with "key_"`},
		{"restore a malformed key", withArgs(restoreArgs, "--key", "k"), `key ID "k" must start with "key_"`},
		{"restore an empty secret", withArgs(restoreArgs, "--secret", ""), `secret name "" must be 1-192 letters`},
		{"restore a secret with a comma, not split", withArgs(restoreArgs, "--secret", "a,b"), `secret name "a,b" must be`},
		{"restore without target", []string{"restore", "--from", "bkp_01", "--day", "2026-05-01", "--all"}, "--to-instance is required"},
		{"restore with an argument", withArgs(restoreArgs, "--all", "key_01"), "takes no arguments"},
		{"replay without ID", []string{"replay", "--day", "2026-05-01"}, "missing BACKUP_ID"},
		{"replay without day or at", []string{"replay", "bkp_01"}, "pass --day YYYY-MM-DD"},
		{"replay with day and at", []string{"replay", "bkp_01", "--day", "2026-05-01", "--at", "2026-05-01T10:05:00Z"}, "--day and --at are mutually exclusive"},
		{"replay with a bad day", []string{"replay", "bkp_01", "--day", "2026-13-01"}, "--day must be a date"},
		{"replay with a bad at", []string{"replay", "bkp_01", "--at", "2026-05-01"}, "--at must be an RFC 3339 time"},
		{"audit list with a bad since", []string{"audit", "list", "--since", "yesterday"}, "--since must be an RFC 3339 time"},
		{"audit list with page size 0", []string{"audit", "list", "--page-size", "0"}, "--page-size must be a positive number"},
		{"audit list with an argument", []string{"audit", "list", "bkp_01"}, "takes no arguments"},
		{"unknown audit command", []string{"audit", "show"}, `unknown command "show" for "kmsbackup audit"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI(t, nil)
			r := mustRun(t, api, nil, tt.args...)
			if r.code != exitUsage {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", r.code, exitUsage, r.stderr)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "kmsbackup: ") || !strings.Contains(last, tt.want) {
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

// TestRestoreExitCodes checks the status of every kind of answer, in every
// output format: the output is printed whatever the status.
func TestRestoreExitCodes(t *testing.T) {
	tests := []struct {
		name    string
		restore string
		args    []string
		code    int
		message string // the error line, when the code is not 0
	}{
		{"applied", restoreAppliedJSON, withArgs(restoreArgs, "--key", key01, "--secret", "db"), exitOK, ""},
		{"dry run without findings", restoreDryRunJSON, withArgs(restoreArgs, "--key", key01, "--dry-run"), exitOK, ""},
		{"plan with findings", restoreFindingsJSON, withArgs(restoreArgs, "--key", key01, "--secret", "gone"), exitPrecondition,
			"kmsbackup: restore: the plan has 2 findings: nothing restored (resolve them and repeat; --dry-run checks without restoring)\n"},
		{"dry run with findings", restoreExpiredJSON, withArgs(restoreArgs, "--all", "--dry-run"), exitPrecondition,
			"kmsbackup: restore: the plan has 2 findings: nothing restored (resolve them and repeat; --dry-run checks without restoring)\n"},
		{"validation fails", restoreInvalidJSON, withArgs(restoreArgs, "--secret", "db"), exitCorrupt,
			"kmsbackup: restore: validation found 1 problem: the target does not match the backup\n"},
	}
	for _, tt := range tests {
		for _, format := range []string{"table", "json", "id"} {
			api := restoreAPI(t, tt.restore)
			r := mustRun(t, api, nil, withArgs(tt.args, "-o", format)...)
			if r.code != tt.code {
				t.Errorf("%s -o %s: exit %d, want %d\n%s", tt.name, format, r.code, tt.code, r.stderr)
			}
			empty := format == "id" && tt.restore == restoreExpiredJSON // no item to print
			if (r.stdout == "") != empty || strings.Contains(r.stderr, "Usage:") {
				t.Errorf("%s -o %s: stdout %q, stderr %q", tt.name, format, r.stdout, r.stderr)
			}
			if r.stderr != tt.message {
				t.Errorf("%s -o %s: stderr %q, want %q", tt.name, format, r.stderr, tt.message)
			}
		}
	}

	api := newFakeAPI(t, map[string]reply{"POST /v1/restores": {404, `{"error":{"code":"not_found","message":"plan restore bkp_09: backup instance not found"}}`}})
	if r := mustRun(t, api, nil, withArgs(restoreArgs, "--all")...); r.code != exitNotFound || r.stdout != "" {
		t.Errorf("restore from a missing backup: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestRestoreTableOutput(t *testing.T) {
	tests := []struct {
		name    string
		restore string
		args    []string
		stdout  string
	}{
		{"applied", restoreAppliedJSON, withArgs(restoreArgs, "--key", key01, "--secret", "db"), "" +
			"Target:           kms_01\n" +
			"Region:           cn-hangzhou\n" +
			"From backup:      bkp_01\n" +
			"Day:              2026-05-01\n" +
			"Checkpoint:       3 to 7 (2026-05-01T23:55:00Z)\n" +
			"Restored:         1\n" +
			"Already present:  1\n" +
			"Validation:       OK\n" +
			"\n" +
			"KIND    ID      VERSIONS  STATUS\n" +
			"key     key_01  2         restored\n" +
			"secret  db      1         already-present\n"},
		{"dry run", restoreDryRunJSON, withArgs(restoreArgs, "--key", key01, "--at", "2026-05-01T10:07:00+08:00", "--dry-run"), "" +
			"Target:       kms_01\n" +
			"Region:       cn-hangzhou\n" +
			"From backup:  bkp_01\n" +
			"Day:          2026-05-01\n" +
			"Checkpoint:   7 (2026-05-01T10:05:00Z)\n" +
			"Result:       OK, no findings (dry run: nothing restored)\n" +
			"\n" +
			"KIND  ID      VERSIONS  STATUS\n" +
			"key   key_01  2         planned\n"},
		{"findings", restoreFindingsJSON, withArgs(restoreArgs, "--key", key01, "--secret", "gone"), "" +
			"Target:       kms_01\n" +
			"Region:       cn-hangzhou\n" +
			"From backup:  bkp_01\n" +
			"Day:          2026-05-01\n" +
			"Checkpoint:   3 to 7 (2026-05-01T23:55:00Z)\n" +
			"Result:       2 findings: nothing restored\n" +
			"\n" +
			"KIND  ID      VERSIONS  STATUS\n" +
			"key   key_01  2         planned\n" +
			"\n" +
			"CODE                ITEM    MESSAGE\n" +
			"key-exists          key_01  a key with ID key_01 already exists in region cn-hangzhou: delete it there first\n" +
			"item-not-in-backup  gone    secret gone is not in the data of 2026-05-01\n"},
		{"unreadable source", restoreExpiredJSON, withArgs(restoreArgs, "--all", "--dry-run"), "" +
			"Target:       kms_404\n" +
			"Region:       -\n" +
			"From backup:  bkp_02\n" +
			"Day:          2026-05-01\n" +
			"Checkpoint:   -\n" +
			"Result:       2 findings: nothing restored\n" +
			"\n" +
			"CODE              ITEM     MESSAGE\n" +
			"backup-expired    bkp_02   backup instance bkp_02 is expired: renew it first\n" +
			"target-not-found  kms_404  KMS instance kms_404 not found\n"},
		{"validation", restoreInvalidJSON, withArgs(restoreArgs, "--secret", "db"), "" +
			"Target:           kms_01\n" +
			"Region:           cn-hangzhou\n" +
			"From backup:      bkp_01\n" +
			"Day:              2026-05-01\n" +
			"Checkpoint:       3 to 7 (2026-05-01T23:55:00Z)\n" +
			"Restored:         1\n" +
			"Already present:  0\n" +
			"Validation:       1 problem\n" +
			"\n" +
			"KIND    ID  VERSIONS  STATUS\n" +
			"secret  db  1         restored\n" +
			"\n" +
			"CODE                     ITEM  MESSAGE\n" +
			"secret-does-not-decrypt  db    version 1 does not decrypt under key_01\n"},
		{"replay", "", []string{"replay", "bkp_01", "--day", "2026-05-01"}, "" +
			"KIND    ID      VERSIONS  DIGESTS\n" +
			"key     key_01  2         1:0123456789ab 2:fedcba987654\n" +
			"secret  db      1         1:aaaaaaaaaaaa\n" +
			"\n" +
			"Checkpoint: 7 at 2026-05-01T23:55:00Z (day 2026-05-01)\n" +
			"Digest: 5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e\n"},
		{"empty replay", "", []string{"replay", "bkp_00", "--at", "2026-04-30T00:01:00Z"}, "" +
			"KIND  ID  VERSIONS  DIGESTS\n" +
			"\n" +
			"Checkpoint: 1 at 2026-04-30T00:00:00Z (day 2026-04-30)\n" +
			"Digest: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"},
		{"audit", "", []string{"audit", "list"}, "" +
			"AT                    ACTION          ITEM    TARGET  BACKUP  DAY         ACTOR\n" +
			"2026-05-02T09:49:00Z  restore-key     key_01  kms_01  bkp_01  2026-05-01  acct_1\n" +
			"2026-05-02T09:49:01Z  restore-secret  db      kms_01  bkp_01  2026-05-01  acct_1\n"},
	}
	for _, tt := range tests {
		api := restoreAPI(t, tt.restore)
		r := mustRun(t, api, nil, tt.args...)
		if diff := cmp.Diff(tt.stdout, r.stdout); diff != "" {
			t.Errorf("%s stdout (-want +got):\n%s", tt.name, diff)
		}
	}
	if r := mustRun(t, restoreAPI(t, ""), nil, "audit", "list"); !strings.Contains(r.stderr, "--page-token 12") {
		t.Errorf("audit list: stderr %q lacks the next page", r.stderr)
	}
}

// TestRestoreJSONOutput checks that -o json prints the API's document.
func TestRestoreJSONOutput(t *testing.T) {
	tests := []struct {
		restore string
		args    []string
		want    string
	}{
		{restoreAppliedJSON, withArgs(restoreArgs, "--all"), restoreAppliedJSON},
		{restoreFindingsJSON, withArgs(restoreArgs, "--all"), restoreFindingsJSON},
		{restoreInvalidJSON, withArgs(restoreArgs, "--all"), restoreInvalidJSON},
		{"", []string{"replay", "bkp_01", "--day", "2026-05-01"}, replayJSON},
		{"", []string{"replay", "bkp_00", "--day", "2026-04-30"}, replayEmptyJSON},
		{"", []string{"audit", "list"}, auditJSON},
	}
	for _, tt := range tests {
		r := mustRun(t, restoreAPI(t, tt.restore), nil, withArgs(tt.args, "-o", "json")...)
		dec := json.NewDecoder(strings.NewReader(r.stdout))
		var got any
		if err := dec.Decode(&got); err != nil || dec.More() {
			t.Errorf("%q: not one JSON document (%v):\n%s", tt.args, err, r.stdout)
			continue
		}
		var want any
		if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(normalizeTimes(want), normalizeTimes(got)); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tt.args, diff)
		}
	}
	// Absent lists print as [].
	r := mustRun(t, restoreAPI(t, `{"applied":false,"dry_run":true,"plan":{"backup":"bkp_01","day":"2026-05-01","target":"kms_01"}}`),
		nil, withArgs(restoreArgs, "--all", "--dry-run", "-o", "json")...)
	for _, want := range []string{`"items": []`, `"findings": []`, `"validation": []`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("-o json of a bare plan lacks %s:\n%s", want, r.stdout)
		}
	}
}

func TestRestoreIDOutput(t *testing.T) {
	tests := []struct {
		restore string
		args    []string
		stdout  string
	}{
		{restoreAppliedJSON, withArgs(restoreArgs, "--key", key01, "--secret", "db"), "key_01\ndb\n"},
		{restoreFindingsJSON, withArgs(restoreArgs, "--key", key01, "--secret", "gone"), "key_01\n"},
		{restoreExpiredJSON, withArgs(restoreArgs, "--all", "--dry-run"), ""},
		{"", []string{"replay", "bkp_01", "--day", "2026-05-01"}, "bkp_01\n"},
		{"", []string{"audit", "list"}, "01KJMBR9R83MEHT78X3MEHT78X\n01KJMBR9R83MEHT78X3MEHT78Y\n"},
	}
	for _, tt := range tests {
		r := mustRun(t, restoreAPI(t, tt.restore), nil, withArgs(tt.args, "-o", "id")...)
		if diff := cmp.Diff(tt.stdout, r.stdout); diff != "" {
			t.Errorf("%q -o id (-want +got):\n%s", tt.args, diff)
		}
	}
}

func TestRestoreRequestsCarryFlags(t *testing.T) {
	api := restoreAPI(t, restoreAppliedJSON)
	for _, args := range [][]string{
		withArgs(restoreArgs, "--key", key01, "--key", key02, "--secret", "db"),
		withArgs(restoreArgs, "--all", "--at", "2026-05-01T10:05:00Z", "--to-region", "cn-hangzhou", "--dry-run"),
		{"replay", "bkp_01", "--day", "2026-05-01"},
		{"replay", "bkp_01", "--at", "2026-05-01T10:05:00+08:00"},
		{"audit", "list"},
		{"audit", "list", "--backup", "bkp_01", "--since", "2026-05-01T10:05:00+08:00", "--page-size", "5", "--page-token", "12"},
	} {
		if r := mustRun(t, api, nil, args...); r.code != 0 {
			t.Fatalf("%q: %s", args, r.stderr)
		}
	}
	const to = `"to_instance":"kms_01"`
	want := []request{
		{Method: "POST", Path: "/v1/restores", Body: []byte(`{"from":"bkp_01","day":"2026-05-01","keys":["` + key01 + `","` + key02 + `"],"secrets":["db"],` + to + `}`)},
		{Method: "POST", Path: "/v1/restores", Body: []byte(`{"from":"bkp_01","day":"2026-05-01","at":"2026-05-01T10:05:00Z","all":true,` + to +
			`,"to_region":"cn-hangzhou","dry_run":true}`)},
		{Method: "GET", Path: "/v1/backup-instances/bkp_01/replay", Query: "day=2026-05-01"},
		{Method: "GET", Path: "/v1/backup-instances/bkp_01/replay", Query: "at=2026-05-01T10%3A05%3A00%2B08%3A00"},
		{Method: "GET", Path: "/v1/audit"},
		{Method: "GET", Path: "/v1/audit", Query: "backup=bkp_01&page_size=5&page_token=12&since=2026-05-01T02%3A05%3A00Z"},
	}
	if diff := cmp.Diff(want, api.requests(), cmp.Transformer("string", func(b []byte) string { return string(b) })); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// ttyBuffer is a stderr that looks like a terminal.
type ttyBuffer struct{ bytes.Buffer }

func (*ttyBuffer) Stat() (os.FileInfo, error) { return ttyInfo{}, nil }

// restoreStreamed is a restore answered as a stream: progress of each
// phase, then the result.
const restoreStreamed = `{"progress":{"phase":"plan","done":0,"total":2}}
{"progress":{"phase":"plan","done":2,"total":2}}
{"progress":{"phase":"apply","done":0,"total":2}}
{"progress":{"phase":"apply","done":2,"total":2}}
{"progress":{"phase":"validate","done":0,"total":2}}
{"progress":{"phase":"validate","done":2,"total":2}}
{"result":` + restoreAppliedJSON + `}
`

// TestRestoreAllProgress checks the progress bar --all shows on a
// terminal, phase by phase, and only there.
func TestRestoreAllProgress(t *testing.T) {
	api := newFakeAPI(t, map[string]reply{"POST /v1/restores": {200, restoreStreamed}})
	var stdout bytes.Buffer
	stderr := &ttyBuffer{}
	if err := execute(context.Background(), withArgs([]string{"--addr", api.URL}, withArgs(restoreArgs, "--all")...), nil, &stdout, stderr); err != nil {
		t.Fatal(err)
	}
	if reqs := api.requests(); len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	out := stderr.String()
	for _, want := range []string{"plan", "apply", "validate", "2/2", "100%"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr on a terminal lacks %q:\n%q", want, out)
		}
	}
	if strings.Index(out, "plan") > strings.Index(out, "apply") || strings.Index(out, "apply") > strings.Index(out, "validate") {
		t.Errorf("phases out of order:\n%q", out)
	}
	if !strings.Contains(stdout.String(), "Restored:         1\n") {
		t.Errorf("stdout:\n%s", stdout.String())
	}

	plain := restoreAPI(t, restoreAppliedJSON)
	if r := mustRun(t, plain, nil, withArgs(restoreArgs, "--all")...); r.stderr != "" {
		t.Errorf("stderr not a terminal: %q, want nothing", r.stderr)
	}
	stderr = &ttyBuffer{}
	if err := execute(context.Background(), withArgs([]string{"--addr", plain.URL}, withArgs(restoreArgs, "--key", key01)...), nil, &stdout, stderr); err != nil {
		t.Fatal(err)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr of a restore of named items: %q, want nothing", stderr.String())
	}
}
