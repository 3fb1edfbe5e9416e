package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	backupJSON = `{"id":"bkp_01","account":"acct_1","alias":"prod","kind":"provisioned","region":"cn-hangzhou",` +
		`"kms_instance":"kms_01","viewable_days":10,"time_zone":"Asia/Shanghai","state":"enabled",` +
		`"expires_at":"2026-06-01T09:30:00Z","created_at":"2026-05-01T09:30:00Z","enabled_at":"2026-05-01T09:31:00Z",` +
		`"enabled_day":"2026-05-01","generation":0,"checkpoints":3,"last_full_at":"2026-05-01T09:31:00Z",` +
		`"last_incremental_at":"2026-05-01T09:41:00+00:00","last_scrub":{"at":"2026-05-01T10:00:00Z","outcome":"clean","findings":0}}`
	defaultBackupJSON = `{"id":"bkp_DEFAULT","account":"acct_1","alias":"","kind":"default","region":"cn-hangzhou",` +
		`"kms_instance":"","viewable_days":7,"time_zone":"","state":"not-enabled","created_at":"2026-05-01T09:00:00Z",` +
		`"generation":0,"checkpoints":0}`
	expiredBackupJSON = `{"id":"bkp_02","account":"acct_1","alias":"old","kind":"provisioned","region":"cn-hangzhou",` +
		`"kms_instance":"kms_02","viewable_days":30,"time_zone":"UTC","state":"expired","expires_at":"2026-06-01T00:00:00Z",` +
		`"created_at":"2026-05-01T00:00:00Z","generation":2,"checkpoints":0,` +
		`"last_scrub":{"at":"2026-06-02T00:01:00Z","outcome":"findings","findings":3,"kinds":["checksum","missing-slice"]}}`
	troubledBackupJSON = `{"id":"bkp_03","account":"acct_1","alias":"gone","kind":"provisioned","region":"cn-hangzhou",` +
		`"kms_instance":"kms_03","viewable_days":30,"time_zone":"UTC","state":"enabled","expires_at":"2026-08-01T00:00:00Z",` +
		`"created_at":"2026-05-01T00:00:00Z","enabled_at":"2026-05-01T00:00:00Z","enabled_day":"2026-05-01","generation":0,` +
		`"checkpoints":9,"last_full_at":"2026-07-02T00:00:00Z",` +
		`"source_released":{"kms_instance":"kms_03","at":"2026-06-02T10:30:00Z","next_revision":5,"end_revision":7,"never_backed_up":2},` +
		`"failing":{"work":"full","reason":"take backup bkp_03: commit: log unavailable","since":"2026-07-03T00:00:00Z","attempts":6}}`
	dataJSON = `{"items":[{"id":"key_01","kind":"key","versions":2,"created_at":"2026-05-01T09:00:00Z",` +
		`"changed_at":"2026-05-01T09:35:00Z","description":"pay\u001b[31m"},{"id":"db","kind":"secret","versions":1,` +
		`"created_at":"2026-05-01T09:36:00Z","changed_at":"2026-05-01T09:36:00Z","key_id":"key_01"}],"next_page_token":"p2"}`
	diffJSON      = `{"items":[{"id":"db","kind":"secret","change":"deleted","versions":1},{"id":"key_02","kind":"key","change":"created","versions":1}]}`
	verifyOKJSON  = `{"id":"bkp_01","generation":0,"checkpoints":3,"events":5,"sealed":3,"findings":[],"ok":true}`
	verifyBadJSON = `{"id":"bkp_01","generation":0,"checkpoints":3,"events":5,"sealed":2,"findings":[` +
		`{"kind":"checksum","seq":2,"detail":"slice s2 does not match its digest"},` +
		`{"kind":"gap","seq":3,"detail":"KMS revisions 4 to 6 are in no checkpoint"}],"ok":false}`
	clockJSON   = `{"now":"2026-05-01T09:30:00Z","manual":true}`
	advanceJSON = `{"now":"2026-05-02T09:30:00Z","work":289}`
	scrubJSON   = `{"started_at":"2026-05-01T09:30:00Z","ended_at":"2026-05-01T09:30:00Z","duration_seconds":0,` +
		`"checked":4,"with_findings":1,"errors":1,"skipped":0}`
)

// backupAPI is a fake API with canned backup replies, and more.
func backupAPI(tb testing.TB, more map[string]reply) *fakeAPI {
	tb.Helper()
	replies := map[string]reply{
		"GET /v1/backup-instances":                {200, `{"items":[` + defaultBackupJSON + `,` + backupJSON + `],"next_page_token":"p2"}`},
		"POST /v1/backup-instances":               {200, strings.Replace(backupJSON, `"enabled"`, `"not-enabled"`, 1)},
		"GET /v1/backup-instances/bkp_01":         {200, backupJSON},
		"GET /v1/backup-instances/bkp_02":         {200, expiredBackupJSON},
		"GET /v1/backup-instances/bkp_03":         {200, troubledBackupJSON},
		"GET /v1/backup-instances/bkp_DEFAULT":    {200, defaultBackupJSON},
		"POST /v1/backup-instances/bkp_01/enable": {200, backupJSON},
		"POST /v1/backup-instances/bkp_01/extend": {200, backupJSON},
		"POST /v1/backup-instances/bkp_01/renew":  {200, backupJSON},
		"POST /v1/backup-instances/bkp_01/reset":  {200, defaultBackupJSON},
		"GET /v1/backup-instances/bkp_01/data":    {200, dataJSON},
		"GET /v1/backup-instances/bkp_01/diff":    {200, diffJSON},
		"POST /v1/backup-instances/bkp_01/verify": {200, verifyOKJSON},
		"POST /v1/backup-instances/bkp_02/verify": {200, verifyBadJSON},
		"GET /v1/dev/clock":                       {200, clockJSON},
		"POST /v1/dev/clock/advance":              {200, advanceJSON},
		"POST /v1/dev/scrub":                      {200, scrubJSON},
	}
	for k, v := range more {
		replies[k] = v
	}
	return newFakeAPI(tb, replies)
}

func TestBackupUsageErrorsSendNothing(t *testing.T) {
	long := strings.Repeat("a", 65)
	tests := []struct {
		name string
		args []string
		want string // in the error line
	}{
		{"create without region", []string{"backup-instance", "create", "--viewable-days", "10", "--term", "1mo"}, "--region is required"},
		{"create without days", []string{"backup-instance", "create", "--region", "r", "--term", "1mo"}, "--viewable-days is required"},
		{"create with too few days", []string{"backup-instance", "create", "--region", "r", "--viewable-days", "6", "--term", "1mo"}, "--viewable-days must be between 7 and 600"},
		{"create with too many days", []string{"backup-instance", "create", "--region", "r", "--viewable-days", "601", "--term", "1mo"}, "--viewable-days must be between 7 and 600"},
		{"create without term", []string{"backup-instance", "create", "--region", "r", "--viewable-days", "10"}, "--term is required"},
		{"create with a bad term", []string{"backup-instance", "create", "--region", "r", "--viewable-days", "10", "--term", "2w"}, "--term must be a number of months or years"},
		{"create with a long term", []string{"backup-instance", "create", "--region", "r", "--viewable-days", "10", "--term", "61mo"}, "at most 60 months"},
		{"create with an argument", []string{"backup-instance", "create", "x"}, "takes no arguments"},
		{"show without ID", []string{"backup-instance", "show"}, "missing BACKUP_ID"},
		{"enable without KMS instance", []string{"backup-instance", "enable", "bkp_01", "--alias", "a"}, "--kms-instance is required"},
		{"enable without alias", []string{"backup-instance", "enable", "bkp_01", "--kms-instance", "kms_01"}, "--alias is required"},
		{"enable with a long alias", []string{"backup-instance", "enable", "bkp_01", "--kms-instance", "kms_01", "--alias", long}, "--alias must be 1 to 64 characters without control or bidi characters"},
		{"enable with a bidi alias", []string{"backup-instance", "enable", "bkp_01", "--kms-instance", "kms_01", "--alias", "\u202eprod"}, "--alias must be"},
		{"enable in a zone that is not IANA's", []string{"backup-instance", "enable", "bkp_01", "--kms-instance", "kms_01", "--alias", "prod", "--time-zone", "Local"}, "--time-zone must be an IANA time zone name"},
		{"extend without days", []string{"backup-instance", "extend", "bkp_01"}, "--viewable-days is required"},
		{"extend too far", []string{"backup-instance", "extend", "bkp_01", "--viewable-days", "700"}, "--viewable-days must be between 7 and 600"},
		{"renew without term", []string{"backup-instance", "renew", "bkp_01"}, "--term is required"},
		{"reset without ID", []string{"backup-instance", "reset", "--yes"}, "missing BACKUP_ID"},
		{"data list with a bad day", []string{"data", "list", "bkp_01", "--day", "2026-02-30", "--tab", "full-keys"}, "--day must be a date as YYYY-MM-DD"},
		{"data list without tab", []string{"data", "list", "bkp_01", "--day", "2026-05-01"}, "--tab is required: pass one of full-keys, incremental-keys"},
		{"data list with a bad tab", []string{"data", "list", "bkp_01", "--day", "2026-05-01", "--tab", "everything"},
			"--tab must be one of full-keys, incremental-keys, rotated-keys, full-secrets, incremental-secrets, rotated-secrets, deleted"},
		{"data list with page size 0", []string{"data", "list", "bkp_01", "--day", "2026-05-01", "--tab", "deleted", "--page-size", "0"}, "--page-size must be a positive number"},
		{"data list without ID", []string{"data", "list", "--day", "2026-05-01", "--tab", "deleted"}, "missing BACKUP_ID"},
		{"diff without from", []string{"data", "diff", "bkp_01", "--to", "2026-05-01"}, "--from is required"},
		{"diff with a bad to", []string{"data", "diff", "bkp_01", "--from", "2026-05-01", "--to", "tomorrow"}, "--to must be a date"},
		{"diff backwards", []string{"data", "diff", "bkp_01", "--from", "2026-05-02", "--to", "2026-05-01"}, "--to must not be before --from"},
		{"verify without ID", []string{"verify"}, "missing BACKUP_ID"},
		{"advance without duration", []string{"dev", "clock", "advance"}, "missing DURATION"},
		{"advance by nothing", []string{"dev", "clock", "advance", "0s"}, "DURATION must be a whole number and one unit (s, m, h or d), such as 90s, 5m, 48h or 31d, at most 400 days"},
		{"advance by two units", []string{"dev", "clock", "advance", "1h30m"}, "one unit"},
		{"advance by less than a second", []string{"dev", "clock", "advance", "500ms"}, "one unit"},
		{"advance backwards", []string{"dev", "clock", "advance", "--", "-1h"}, "DURATION must be a whole number and one unit"},
		{"advance too far", []string{"dev", "clock", "advance", "401d"}, "DURATION must be a whole number and one unit"},
		{"advance by words", []string{"dev", "clock", "advance", "soon"}, "DURATION must be a whole number and one unit"},
		{"unknown dev command", []string{"dev", "calendar"}, `unknown command "calendar" for "kmsbackup dev"`},
		{"-o id without IDs", []string{"whoami", "-o", "id"}, "-o id: kmsbackup whoami has no ID to print; use -o table or -o json"},
		{"-o id hiding a token", []string{"account", "create", "acme", "-o", "id"}, "would hide the new account's token"},
		{"-o id of a ciphertext", []string{"kms", "encrypt", "--key", "k", "--plaintext", "p", "-o", "id"}, "prints a ciphertext"},
		{"-o id of plaintext", []string{"kms", "decrypt", "--ciphertext", "c", "-o", "id"}, "prints plaintext"},
		{"-o id of events", []string{"events", "tail", "-o", "id"}, "prints events"},
		{"-o id of the clock", []string{"dev", "clock", "show", "-o", "id"}, "has no ID to print"},
		{"-o id of an advance", []string{"dev", "clock", "advance", "1h", "-o", "id"}, "has no ID to print"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI(t, nil)
			r := mustRun(t, api, strings.NewReader(""), tt.args...)
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

func TestBackupValuesNeverInErrors(t *testing.T) {
	const secret = "hunter2-s3cret"
	for _, args := range [][]string{
		{"dev", "clock", "advance", secret},
		{"backup-instance", "create", "--region", "r", "--viewable-days", "10", "--term", secret},
		{"backup-instance", "renew", "bkp_01", "--term", secret},
		{"data", "list", "bkp_01", "--day", secret, "--tab", "deleted"},
		{"data", "list", "bkp_01", "--day", "2026-05-01", "--tab", secret},
		{"data", "diff", "bkp_01", "--from", secret, "--to", "2026-05-01"},
		{"backup-instance", "show", "bkp_01", secret},
	} {
		api := newFakeAPI(t, nil)
		r := mustRun(t, api, nil, args...)
		if r.code != exitUsage {
			t.Errorf("%q: exit %d", args, r.code)
		}
		if strings.Contains(r.stderr, secret) || strings.Contains(r.stdout, secret) {
			t.Errorf("%q: the value is in the output:\n%s%s", args, r.stdout, r.stderr)
		}
	}
}

func TestBackupTableOutput(t *testing.T) {
	api := backupAPI(t, nil)
	tests := []struct {
		args         []string
		stdout       string
		stderrSubstr string
	}{
		{[]string{"backup-instance", "list"}, "" +
			"ID           ALIAS  KIND         REGION       KMS INSTANCE  VIEWABLE  EXPIRES                    STATE        LAST FULL                  LAST INCREMENTAL\n" +
			"bkp_DEFAULT  -      default      cn-hangzhou  -             7d        never                      not-enabled  -                          -\n" +
			"bkp_01       prod   provisioned  cn-hangzhou  kms_01        10d       2026-06-01T17:30:00+08:00  enabled      2026-05-01T17:31:00+08:00  2026-05-01T17:41:00+08:00\n",
			"--page-token p2"},
		{[]string{"backup-instance", "show", "bkp_01"}, "" +
			"ID:                bkp_01\n" +
			"Alias:             prod\n" +
			"Kind:              provisioned\n" +
			"Region:            cn-hangzhou\n" +
			"KMS instance:      kms_01\n" +
			"State:             enabled\n" +
			"Viewable days:     10\n" +
			"Time zone:         Asia/Shanghai\n" +
			"Expires:           2026-06-01T17:30:00+08:00\n" +
			"Created:           2026-05-01T17:30:00+08:00\n" +
			"Enabled:           2026-05-01T17:31:00+08:00\n" +
			"Enabled day:       2026-05-01\n" +
			"Generation:        0\n" +
			"Checkpoints:       3\n" +
			"Last full:         2026-05-01T17:31:00+08:00\n" +
			"Last incremental:  2026-05-01T17:41:00+08:00\n" +
			"Last scrub:        2026-05-01T18:00:00+08:00: clean\n", ""},
		{[]string{"backup-instance", "show", "bkp_02"}, "" +
			"ID:                bkp_02\n" +
			"Alias:             old\n" +
			"Kind:              provisioned\n" +
			"Region:            cn-hangzhou\n" +
			"KMS instance:      kms_02\n" +
			"State:             expired\n" +
			"Viewable days:     30\n" +
			"Time zone:         UTC\n" +
			"Expires:           2026-06-01T00:00:00Z\n" +
			"Released:          2026-06-16T00:00:00Z unless renewed\n" +
			"Created:           2026-05-01T00:00:00Z\n" +
			"Enabled:           -\n" +
			"Enabled day:       -\n" +
			"Generation:        2\n" +
			"Checkpoints:       0\n" +
			"Last full:         -\n" +
			"Last incremental:  -\n" +
			"Last scrub:        2026-06-02T00:01:00Z: 3 findings (checksum, missing-slice); kmsbackup verify bkp_02 lists them\n", ""},
		{[]string{"backup-instance", "show", "bkp_03"}, "" +
			"ID:                bkp_03\n" +
			"Alias:             gone\n" +
			"Kind:              provisioned\n" +
			"Region:            cn-hangzhou\n" +
			"KMS instance:      kms_03\n" +
			"State:             enabled\n" +
			"Viewable days:     30\n" +
			"Time zone:         UTC\n" +
			"Expires:           2026-08-01T00:00:00Z\n" +
			"Source:            KMS instance kms_03 was released (recorded 2026-06-02T10:30:00Z); its last 2 events (revisions 5 to 6) were never backed up; only the daily full backup is taken now\n" +
			"Failing:           since 2026-07-03T00:00:00Z: the full backup work failed 6 times, retried with backoff\n" +
			"Failure reason:    take backup bkp_03: commit: log unavailable\n" +
			"Created:           2026-05-01T00:00:00Z\n" +
			"Enabled:           2026-05-01T00:00:00Z\n" +
			"Enabled day:       2026-05-01\n" +
			"Generation:        0\n" +
			"Checkpoints:       9\n" +
			"Last full:         2026-07-02T00:00:00Z\n" +
			"Last incremental:  -\n" +
			"Last scrub:        -\n", ""},
		{[]string{"data", "list", "bkp_01", "--day", "2026-05-01", "--tab", "full-keys"}, "" +
			"ID      KIND    VERSIONS  CHANGED\n" +
			"key_01  key     2         2026-05-01T09:35:00Z\n" +
			"db      secret  1         2026-05-01T09:36:00Z\n",
			"--page-token p2"},
		{[]string{"data", "diff", "bkp_01", "--from", "2026-05-01", "--to", "2026-05-02"}, "" +
			"ID      KIND    CHANGE   VERSIONS\n" +
			"db      secret  deleted  1\n" +
			"key_02  key     created  1\n", ""},
		{[]string{"verify", "bkp_01"}, "" +
			"Backup instance:      bkp_01\n" +
			"Generation:           0\n" +
			"Checkpoints:          3\n" +
			"Events:               5\n" +
			"Key versions opened:  3\n" +
			"Result:               OK, no findings\n", ""},
		{[]string{"dev", "clock", "show"}, "" +
			"Now:     2026-05-01T09:30:00Z\n" +
			"Manual:  true\n", ""},
		{[]string{"dev", "clock", "advance", "24h"}, "" +
			"Now:        2026-05-02T09:30:00Z\n" +
			"Work done:  289\n", ""},
		{[]string{"dev", "scrub"}, "" +
			"Started:           2026-05-01T09:30:00Z\n" +
			"Ended:             2026-05-01T09:30:00Z\n" +
			"Verified:          4\n" +
			"With findings:     1\n" +
			"Could not verify:  1\n" +
			"Skipped:           0\n", ""},
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

// TestBackupJSONOutput checks that -o json prints the API's document.
func TestBackupJSONOutput(t *testing.T) {
	api := backupAPI(t, nil)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"backup-instance", "list"}, `{"items":[` + defaultBackupJSON + `,` + backupJSON + `],"next_page_token":"p2"}`},
		{[]string{"backup-instance", "show", "bkp_01"}, backupJSON},
		{[]string{"backup-instance", "show", "bkp_DEFAULT"}, defaultBackupJSON},
		{[]string{"backup-instance", "enable", "bkp_01", "--kms-instance", "kms_01", "--alias", "prod"}, backupJSON},
		{[]string{"backup-instance", "reset", "bkp_01", "--yes"}, defaultBackupJSON},
		{[]string{"data", "list", "bkp_01", "--day", "2026-05-01", "--tab", "full-keys"}, dataJSON},
		{[]string{"data", "diff", "bkp_01", "--from", "2026-05-01", "--to", "2026-05-01"}, diffJSON},
		{[]string{"verify", "bkp_01"}, verifyOKJSON},
		{[]string{"dev", "clock", "show"}, clockJSON},
		{[]string{"dev", "clock", "advance", "1d"}, advanceJSON},
	}
	for _, tt := range tests {
		r := mustRun(t, api, nil, append(tt.args, "-o", "json")...)
		if r.code != 0 {
			t.Errorf("%q: code %d: %s", tt.args, r.code, r.stderr)
			continue
		}
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
}

func TestIDOutput(t *testing.T) {
	api := backupAPI(t, map[string]reply{
		"GET /v1/kms/instances":        {200, `{"items":[` + instanceJSON + `]}`},
		"GET /v1/kms/keys":             {200, `{"items":[]}`},
		"DELETE /v1/kms/keys/k1":       {http.StatusNoContent, ""},
		"GET /v1/kms/secrets/db/value": {200, `{"id":"db","name":"db","version":1,"key_id":"k1","value":"c2VjcmV0LXZhbHVl"}`},
		"GET /v1/accounts":             {200, `{"items":[{"id":"acct_1","name":"a","created_at":"2026-03-01T08:00:00Z"}]}`},
	})
	tests := []struct {
		args   []string
		stdout string
	}{
		{[]string{"backup-instance", "list"}, "bkp_DEFAULT\nbkp_01\n"},
		{[]string{"backup-instance", "show", "bkp_01"}, "bkp_01\n"},
		{[]string{"backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "10", "--term", "1mo"}, "bkp_01\n"},
		{[]string{"backup-instance", "renew", "bkp_01", "--term", "1y"}, "bkp_01\n"},
		{[]string{"data", "list", "bkp_01", "--day", "2026-05-01", "--tab", "full-keys"}, "key_01\ndb\n"},
		{[]string{"data", "diff", "bkp_01", "--from", "2026-05-01", "--to", "2026-05-02"}, "db\nkey_02\n"},
		{[]string{"verify", "bkp_01"}, "bkp_01\n"},
		{[]string{"kms", "instance", "list"}, "01INST\n"},
		{[]string{"kms", "key", "list", "--instance", "01INST"}, ""},
		{[]string{"kms", "key", "delete", "k1"}, "k1\n"},
		{[]string{"kms", "secret", "get", "db"}, "db\n"},
		{[]string{"account", "list"}, "acct_1\n"},
	}
	for _, tt := range tests {
		r := mustRun(t, api, nil, append(tt.args, "-o", "id")...)
		if r.code != 0 {
			t.Errorf("%q: code %d: %s", tt.args, r.code, r.stderr)
			continue
		}
		if diff := cmp.Diff(tt.stdout, r.stdout); diff != "" {
			t.Errorf("%q -o id (-want +got):\n%s", tt.args, diff)
		}
		if strings.Contains(r.stdout, "secret-value") || strings.Contains(r.stdout, "c2VjcmV0") {
			t.Errorf("%q -o id prints the secret value", tt.args)
		}
	}
	if r := mustRun(t, api, nil, "backup-instance", "list", "-o", "id"); !strings.Contains(r.stderr, "--page-token p2") {
		t.Errorf("-o id of a partial list: stderr %q lacks the next page", r.stderr)
	}
}

func TestVerifyExitCode(t *testing.T) {
	api := backupAPI(t, nil)
	r := mustRun(t, api, nil, "verify", "bkp_02")
	if r.code != exitCorrupt {
		t.Fatalf("verify with findings: exit %d, want %d\n%s", r.code, exitCorrupt, r.stderr)
	}
	want := "" +
		"Backup instance:      bkp_01\n" +
		"Generation:           0\n" +
		"Checkpoints:          3\n" +
		"Events:               5\n" +
		"Key versions opened:  2\n" +
		"Result:               2 findings\n" +
		"\n" +
		"KIND      CHECKPOINT  DETAIL\n" +
		"checksum  2           slice s2 does not match its digest\n" +
		"gap       3           KMS revisions 4 to 6 are in no checkpoint\n"
	if diff := cmp.Diff(want, r.stdout); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	if r.stderr != "kmsbackup: verify bkp_01: 2 findings: the backup data is not intact\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	for _, format := range []string{"json", "id"} {
		r := mustRun(t, api, nil, "verify", "bkp_02", "-o", format)
		if r.code != exitCorrupt || r.stdout == "" || strings.Contains(r.stderr, "Usage:") {
			t.Errorf("verify -o %s with findings: exit %d, stdout %q, stderr %q", format, r.code, r.stdout, r.stderr)
		}
	}
	if r := mustRun(t, api, nil, "verify", "bkp_01"); r.code != exitOK {
		t.Errorf("verify without findings: exit %d", r.code)
	}
}

func TestResetNeedsYes(t *testing.T) {
	api := backupAPI(t, nil)
	r := mustRun(t, api, nil, "backup-instance", "reset", "bkp_01")
	if r.code != exitUsage {
		t.Fatalf("reset without --yes: exit %d, want %d", r.code, exitUsage)
	}
	wantMsg := "kmsbackup: reset would destroy every full and incremental backup of backup instance bkp_01 " +
		"(3 checkpoints since 2026-05-01, the last at 2026-05-01T09:41:00Z) and unbind it from KMS instance kms_01; " +
		"this cannot be undone: repeat with --yes to confirm\n"
	if !strings.HasSuffix(r.stderr, wantMsg) {
		t.Errorf("stderr %q, want it to end with %q", r.stderr, wantMsg)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q", r.stdout)
	}
	for _, req := range api.requests() {
		if req.Method != "GET" {
			t.Errorf("reset without --yes sent %s %s", req.Method, req.Path)
		}
	}

	r = mustRun(t, api, nil, "backup-instance", "reset", "bkp_404")
	if r.code != exitNotFound {
		t.Errorf("reset of a missing instance without --yes: exit %d, want %d", r.code, exitNotFound)
	}

	r = mustRun(t, api, nil, "backup-instance", "reset", "bkp_01", "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "State:             not-enabled") {
		t.Fatalf("reset --yes: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	reqs := api.requests()
	last := reqs[len(reqs)-1]
	if last.Method != "POST" || last.Path != "/v1/backup-instances/bkp_01/reset" || string(last.Body) != `{"confirm":true}` {
		t.Errorf("reset --yes sent %s %s %s", last.Method, last.Path, last.Body)
	}
}

func TestBackupRequestsCarryFlags(t *testing.T) {
	api := backupAPI(t, nil)
	for _, args := range [][]string{
		{"backup-instance", "list", "--page-size", "5", "--page-token", "p2"},
		{"backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "10", "--term", "1mo"},
		{"backup-instance", "enable", "bkp_01", "--kms-instance", "kms_01", "--alias", "prod", "--time-zone", "Asia/Shanghai"},
		{"backup-instance", "enable", "bkp_01", "--kms-instance", "kms_01", "--alias", "prod"},
		{"backup-instance", "extend", "bkp_01", "--viewable-days", "16"},
		{"backup-instance", "renew", "bkp_01", "--term", "1y"},
		{"data", "list", "bkp_01", "--day", "2026-05-01", "--tab", "rotated-secrets", "--page-size", "1", "--page-token", "t1"},
		{"data", "diff", "bkp_01", "--from", "2026-05-01", "--to", "2026-05-02"},
		{"verify", "bkp_01"},
		{"dev", "clock", "show"},
		{"dev", "clock", "advance", "31d"},
	} {
		if r := mustRun(t, api, nil, args...); r.code != 0 {
			t.Fatalf("%q: %s", args, r.stderr)
		}
	}
	want := []request{
		{Method: "GET", Path: "/v1/backup-instances", Query: "page_size=5&page_token=p2"},
		{Method: "POST", Path: "/v1/backup-instances", Body: []byte(`{"region":"cn-hangzhou","viewable_days":10,"term":"1mo"}`)},
		{Method: "POST", Path: "/v1/backup-instances/bkp_01/enable", Body: []byte(`{"kms_instance":"kms_01","alias":"prod","time_zone":"Asia/Shanghai"}`)},
		{Method: "POST", Path: "/v1/backup-instances/bkp_01/enable", Body: []byte(`{"kms_instance":"kms_01","alias":"prod"}`)},
		{Method: "POST", Path: "/v1/backup-instances/bkp_01/extend", Body: []byte(`{"viewable_days":16}`)},
		{Method: "POST", Path: "/v1/backup-instances/bkp_01/renew", Body: []byte(`{"term":"1y"}`)},
		{Method: "GET", Path: "/v1/backup-instances/bkp_01/data", Query: "day=2026-05-01&page_size=1&page_token=t1&tab=rotated-secrets"},
		{Method: "GET", Path: "/v1/backup-instances/bkp_01/diff", Query: "from=2026-05-01&to=2026-05-02"},
		{Method: "POST", Path: "/v1/backup-instances/bkp_01/verify"},
		{Method: "GET", Path: "/v1/dev/clock"},
		{Method: "POST", Path: "/v1/dev/clock/advance", Body: []byte(`{"duration":"31d"}`)},
	}
	if diff := cmp.Diff(want, api.requests(), cmp.Transformer("string", func(b []byte) string { return string(b) })); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestBackupCompletion(t *testing.T) {
	r := runCLI(context.Background(), nil, "__complete", "data", "list", "bkp_01", "--tab", "")
	if !strings.HasPrefix(r.stdout, "full-keys\nincremental-keys\nrotated-keys\nfull-secrets\nincremental-secrets\nrotated-secrets\ndeleted\n:4\n") {
		t.Errorf("completing --tab: %q", r.stdout)
	}
	r = runCLI(context.Background(), nil, "__complete", "backup-instance", "")
	for _, sub := range []string{"create", "enable", "extend", "list", "renew", "reset", "show"} {
		if !strings.Contains(r.stdout, sub+"\t") {
			t.Errorf("completing backup-instance: %q lacks %s", r.stdout, sub)
		}
	}
}

// TestBackupListShowsTrouble: the list's state column says when a backup
// instance's source is released and when its work fails.
func TestBackupListShowsTrouble(t *testing.T) {
	api := backupAPI(t, map[string]reply{"GET /v1/backup-instances": {200, `{"items":[` + troubledBackupJSON + `]}`}})
	r := mustRun(t, api, nil, "backup-instance", "list")
	want := "" +
		"ID      ALIAS  KIND         REGION       KMS INSTANCE  VIEWABLE  EXPIRES               STATE                              LAST FULL             LAST INCREMENTAL\n" +
		"bkp_03  gone   provisioned  cn-hangzhou  kms_03        30d       2026-08-01T00:00:00Z  enabled, source released, failing  2026-07-02T00:00:00Z  -\n"
	if diff := cmp.Diff(want, r.stdout); r.code != 0 || diff != "" {
		t.Fatalf("exit %d, stdout (-want +got):\n%s%s", r.code, diff, r.stderr)
	}
}
