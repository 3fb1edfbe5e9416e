package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/audit"
)

func TestRestoreRoutesAbsentWithoutUseCases(t *testing.T) {
	c := MustServe(t, &Server{Backups: &commands.BackupInstances{}})
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/restores", `{}`},
		{"GET", "/v1/backup-instances/bkp_01J00000000000000000000000/replay?day=2026-05-01", ""},
		{"GET", "/v1/audit", ""},
	} {
		if status, eb := call(t, c, r.method, r.path, r.body); status != http.StatusNotFound || eb.Error.Code != "not_found" {
			t.Errorf("%s %s without the use case: %d %+v, want 404 not_found", r.method, r.path, status, eb.Error)
		}
	}
}

// TestRestoreRequestsValidated checks the refusals the handlers make before
// any use case runs (the stand-ins would fail if called).
func TestRestoreRequestsValidated(t *testing.T) {
	c := MustServe(t, &Server{Restores: &commands.Restores{}, Audit: &commands.Audit{}})
	const (
		ok     = `"from":"bkp_01J00000000000000000000000","day":"2026-05-01","to_instance":"kms_01J00000000000000000000000"`
		replay = "/v1/backup-instances/bkp_01J00000000000000000000000/replay"
	)
	for _, r := range []struct {
		method, path, body string
		want               string // in the message
	}{
		{"POST", "/v1/restores", ``, "request body is empty"},
		{"POST", "/v1/restores", `{"day":"2026-05-01","to_instance":"kms_1","all":true}`, "from is required"},
		{"POST", "/v1/restores", `{"from":"bkp_1","day":"2026-05-01","all":true}`, "to_instance is required"},
		{"POST", "/v1/restores", `{` + ok + `}`, "name what to restore"},
		{"POST", "/v1/restores", `{` + ok + `,"all":true,"keys":["key_1"]}`, "restore everything (all) or name keys and secrets, not both"},
		{"POST", "/v1/restores", `{` + ok + `,"all":true,"secrets":["db"]}`, "not both"},
		{"POST", "/v1/restores", `{` + ok + `,"keys":["key_01J00000000000000000000000",""]}`, `key ID "" must start with "key_"`},
		{"POST", "/v1/restores", `{` + ok + `,"keys":["key_1"]}`, `key ID "key_1" is not a valid ID`},
		{"POST", "/v1/restores", `{` + ok + `,"secrets":[""]}`, `secret name "" must be`},
		{"POST", "/v1/restores", strings.Replace(`{`+ok+`,"all":true}`, "bkp_01J", "bkp_0", 1), `backup instance ID "bkp_0`},
		{"POST", "/v1/restores", strings.Replace(`{`+ok+`,"all":true}`, "kms_01J", "kms_0", 1), `KMS instance ID "kms_0`},
		{"POST", "/v1/restores", `{` + ok + `,"all":true,"to_region":"Hangzhou"}`, `region "Hangzhou"`},
		{"POST", "/v1/restores", strings.Replace(`{`+ok+`,"all":true}`, "2026-05-01", "2026-02-30", 1), "day must be a date as YYYY-MM-DD"},
		{"POST", "/v1/restores", `{` + ok + `,"all":true,"at":"10:05"}`, "at must be an RFC 3339 time"},
		{"POST", "/v1/restores", `{` + ok + `,"all":true,"at":"2026-05-01 10:05:00"}`, "at must be an RFC 3339 time"},
		{"POST", "/v1/restores", `{` + ok + `,"all":"yes"}`, `field "all"`},
		{"POST", "/v1/restores", `{` + ok + `,"keys":"key_1"}`, `field "keys"`},
		{"POST", "/v1/restores", `{` + ok + `,"all":true,"force":true}`, `unknown field "force"`},
		{"POST", "/v1/restores", `{` + ok + `,"all":true}{}`, "exactly one JSON object"},
		{"GET", replay, ``, "query parameter day or at is required"},
		{"GET", replay + "?day=May", ``, "query parameter day must be a date"},
		{"GET", replay + "?at=yesterday", ``, "query parameter at must be an RFC 3339 time"},
		{"GET", replay + "?day=2026-05-01&at=2026-05-01", ``, "query parameter at must be an RFC 3339 time"},
		{"GET", "/v1/audit?since=2026-05-01", ``, "query parameter since must be an RFC 3339 time"},
		{"GET", "/v1/audit?page_size=1001", ``, "page_size"},
	} {
		status, eb := call(t, c, r.method, r.path, r.body)
		if status != http.StatusBadRequest || eb.Error.Code != "invalid_argument" || !strings.Contains(eb.Error.Message, r.want) {
			t.Errorf("%s %s %s: %d %+v, want 400 invalid_argument with %q", r.method, r.path, r.body, status, eb.Error, r.want)
		}
	}
}

func TestRestoreJSONShapes(t *testing.T) {
	at := time.Date(2026, 5, 1, 18, 5, 0, 0, time.FixedZone("CST", 8*3600))
	toJSON := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	plan := &commands.RestorePlan{Backup: "bkp_1", Day: "2026-05-01", From: 3, To: 7, At: at, Target: "kms_1", Region: "cn-hangzhou",
		Items: []commands.RestoreItem{
			{Kind: "key", ID: "key_1", Versions: 2, Description: "pay", Status: commands.StatusRestored},
			{Kind: "secret", ID: "db", Versions: 1, KeyID: "key_1", Status: commands.StatusPresent},
		}}
	tests := []struct {
		name string
		got  any
		want string
	}{
		{"applied", restoreView(&commands.RestoreResult{Plan: plan, Applied: true, Restored: 1, AlreadyPresent: 1, Batches: 1}, false),
			`{"applied":true,"dry_run":false,"plan":{"backup":"bkp_1","day":"2026-05-01","from_seq":3,"to_seq":7,` +
				`"at":"2026-05-01T10:05:00Z","target":"kms_1","region":"cn-hangzhou","items":[` +
				`{"kind":"key","id":"key_1","versions":2,"status":"restored"},` +
				`{"kind":"secret","id":"db","versions":1,"key_id":"key_1","status":"already-present"}],"findings":[]},` +
				`"restored":1,"already_present":1,"batches":1,"validation":[]}`},
		{"validation findings", restoreView(&commands.RestoreResult{Plan: &commands.RestorePlan{Backup: "bkp_1", Day: "2026-05-01", To: 7, At: at, Target: "kms_1"},
			Applied: true, Validation: []commands.RestoreFinding{{Code: commands.FindingUndecryptableSecret, Item: "db", Message: "version 1 does not decrypt"}}}, false),
			`{"applied":true,"dry_run":false,"plan":{"backup":"bkp_1","day":"2026-05-01","from_seq":0,"to_seq":7,` +
				`"at":"2026-05-01T10:05:00Z","target":"kms_1","region":"","items":[],"findings":[]},"restored":0,"already_present":0,` +
				`"validation":[{"code":"secret-does-not-decrypt","item":"db","message":"version 1 does not decrypt"}]}`},
		{"unreadable source, dry run", restoreView(&commands.RestoreResult{Plan: &commands.RestorePlan{Backup: "bkp_1", Day: "2026-05-01", Target: "kms_1",
			Findings: []commands.RestoreFinding{{Code: commands.FindingBackupExpired, Item: "bkp_1", Message: "expired"}}}}, true),
			`{"applied":false,"dry_run":true,"plan":{"backup":"bkp_1","day":"2026-05-01","from_seq":0,"to_seq":0,` +
				`"target":"kms_1","region":"","items":[],"findings":[{"code":"backup-expired","item":"bkp_1","message":"expired"}]},` +
				`"restored":0,"already_present":0,"validation":[]}`},
		{"replay", replayView(&commands.ReplayState{Backup: "bkp_1", Day: "2026-05-01", Seq: 7, At: at, Digest: "ab12",
			Items: []commands.ReplayItem{
				{Kind: "key", ID: "key_1", Versions: []commands.ReplayVersion{{Version: 1, Digest: "d1"}, {Version: 2, Digest: "d2"}}},
				{Kind: "secret", ID: "db", KeyID: "key_1", Versions: []commands.ReplayVersion{{Version: 1, Digest: "d3"}}},
			}}),
			`{"id":"bkp_1","day":"2026-05-01","seq":7,"at":"2026-05-01T10:05:00Z","items":[` +
				`{"kind":"key","id":"key_1","versions":[{"version":1,"digest":"d1"},{"version":2,"digest":"d2"}]},` +
				`{"kind":"secret","id":"db","key_id":"key_1","versions":[{"version":1,"digest":"d3"}]}],"digest":"ab12"}`},
		{"empty replay", replayView(&commands.ReplayState{Backup: "bkp_1", Day: "2026-05-01", Seq: 1, At: at, Digest: "e3b0"}),
			`{"id":"bkp_1","day":"2026-05-01","seq":1,"at":"2026-05-01T10:05:00Z","items":[],"digest":"e3b0"}`},
		{"audit record", auditView(audit.Record{Position: 9, Event: ulid.ULID{1}, At: at, Action: "restore-key", Actor: "acct_1",
			Backup: "bkp_1", Day: "2026-05-01", Target: "kms_1", Item: "key_1"}),
			`{"id":"` + ulid.ULID{1}.String() + `","at":"2026-05-01T10:05:00Z","action":"restore-key","actor":"acct_1",` +
				`"backup":"bkp_1","day":"2026-05-01","target":"kms_1","item":"key_1"}`},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, toJSON(tt.got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

// seqIDs draws ULIDs 1, 2, 3, ...
type seqIDs struct{ n byte }

func (s *seqIDs) NewULID() ulid.ULID {
	s.n++
	return ulid.ULID{15: s.n}
}

// TestListAudit serves the audit read model through the route and the
// client: the backup and since filters, and paging.
func TestListAudit(t *testing.T) {
	ctx := context.Background()
	// The real projection store, on a temporary directory.
	store, err := pebblestore.OpenProjections(t.TempDir(), pebblestore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	bkp1, bkp2 := domain.NewBackupID(ulid.ULID{15: 1}), domain.NewBackupID(ulid.ULID{15: 2})
	start := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	caller := commands.Caller{Account: "acct_1"}
	ids := &seqIDs{}
	for i, a := range []domain.Audited{
		{Action: "restore-key", Backup: bkp1, Day: "2026-04-30", Target: "kms_1", Item: "key_1"},
		{Action: "restore-secret", Backup: bkp1, Day: "2026-04-30", Target: "kms_1", Item: "db"},
		{Action: "restore-key", Backup: bkp2, Day: "2026-04-29", Target: "kms_2", Item: "key_2"},
	} {
		e := commands.AuditEvent(caller, start.Add(time.Duration(i)*time.Hour), ids, caller.Account, &a)
		e.Position = uint64(10 + i)
		if err := store.Update(audit.Name, e.Position, func(txn projections.Txn) error { return audit.Apply(txn, e) }); err != nil {
			t.Fatal(err)
		}
	}
	c := MustServe(t, &Server{Audit: &commands.Audit{State: store}})
	items := func(l List[AuditRecord]) []string {
		var out []string
		for _, r := range l.Items {
			out = append(out, r.Action+" "+r.Item+" "+r.At.Format(time.RFC3339))
		}
		return out
	}

	all, err := c.ListAudit(ctx, "", time.Time{}, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"restore-key key_1 2026-05-01T10:00:00Z", "restore-secret db 2026-05-01T11:00:00Z", "restore-key key_2 2026-05-01T12:00:00Z"}
	if diff := cmp.Diff(want, items(all)); diff != "" || all.NextPageToken != "" {
		t.Errorf("all records (-want +got):\n%s (next %q)", diff, all.NextPageToken)
	}
	if r := all.Items[0]; r.ID != (ulid.ULID{15: 1}).String() || r.Actor != "acct_1" || r.Backup != string(bkp1) ||
		r.Day != "2026-04-30" || r.Target != "kms_1" {
		t.Errorf("first record %+v", r)
	}

	l, err := c.ListAudit(ctx, string(bkp1), start.Add(30*time.Minute), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[1:2], items(l)); diff != "" {
		t.Errorf("backup 1 since 10:30 (-want +got):\n%s", diff)
	}

	var paged []string
	token := ""
	for range 4 {
		l, err := c.ListAudit(ctx, "", time.Time{}, 2, token)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, items(l)...)
		if token = l.NextPageToken; token == "" {
			break
		}
	}
	if diff := cmp.Diff(want, paged); diff != "" {
		t.Errorf("pages of 2 (-want +got):\n%s", diff)
	}

	if status, eb := call(t, c, "GET", "/v1/audit?backup=bkp_nope", ""); status != http.StatusBadRequest || eb.Error.Code != "invalid_argument" {
		t.Errorf("malformed backup ID: %d %+v", status, eb.Error)
	}
}

func TestWantsNDJSON(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                     false,
		"application/json":     false,
		"application/x-ndjson": true,
		"application/json, application/x-ndjson;q=0.9": true,
		"Application/X-NDJSON; charset=utf-8":          true,
		"text/plain, */*":                              false,
	} {
		r, _ := http.NewRequest("POST", "/v1/restores", nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		if got := wantsNDJSON(r); got != want {
			t.Errorf("Accept %q: %v, want %v", accept, got, want)
		}
	}
}

// TestRestoreWithProgress reads a streamed answer (progress, then the
// result or an error) and a plain one.
func TestRestoreWithProgress(t *testing.T) {
	answers := map[string]struct{ ctype, body string }{
		"stream": {"application/x-ndjson", `{"progress":{"phase":"plan","done":0,"total":2}}` + "\n" +
			`{"progress":{"phase":"apply","done":2,"total":2}}` + "\n" +
			`{"result":{"applied":true,"dry_run":false,"plan":{"backup":"bkp_1","day":"2026-05-01","from_seq":1,"to_seq":2,"target":"kms_1","region":"r","items":[],"findings":[]},"restored":2,"already_present":0,"validation":[]}}` + "\n"},
		"error": {"application/x-ndjson", `{"progress":{"phase":"apply","done":0,"total":2}}` + "\n" + `{"error":{"code":"already_exists","message":"restore key_1: taken"}}` + "\n"},
		"cut":   {"application/x-ndjson", `{"progress":{"phase":"apply","done":0,"total":2}}` + "\n"},
		"plain": {"application/json", `{"applied":true,"dry_run":false,"plan":{"backup":"bkp_1","day":"2026-05-01","from_seq":1,"to_seq":2,"target":"kms_1","region":"r","items":[],"findings":[]},"restored":1,"already_present":1,"validation":[]}`},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") == "" || !wantsNDJSON(r) {
			t.Errorf("the client did not ask for a stream: Accept %q", r.Header.Get("Accept"))
		}
		var req RestoreRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Error(err)
		}
		a := answers[req.From]
		w.Header().Set("Content-Type", a.ctype)
		_, _ = io.WriteString(w, a.body)
	}))
	defer srv.Close()
	for name, want := range map[string]struct {
		progress []RestoreProgress
		restored int
		err      error
	}{
		"stream": {[]RestoreProgress{{"plan", 0, 2}, {"apply", 2, 2}}, 2, nil},
		"error":  {[]RestoreProgress{{"apply", 0, 2}}, 0, domain.ErrAlreadyExists},
		"cut":    {[]RestoreProgress{{"apply", 0, 2}}, 0, domain.ErrUnavailable},
		"plain":  {nil, 1, nil},
	} {
		var got []RestoreProgress
		c := &Client{Base: srv.URL}
		res, err := c.RestoreWithProgress(context.Background(), RestoreRequest{From: name}, func(p RestoreProgress) { got = append(got, p) })
		if !errors.Is(err, want.err) || (want.err == nil && err != nil) || res.Restored != want.restored {
			t.Errorf("%s: restored %d, %v; want %d, %v", name, res.Restored, err, want.restored, want.err)
		}
		if diff := cmp.Diff(want.progress, got); diff != "" {
			t.Errorf("%s: progress (-want +got):\n%s", name, diff)
		}
	}
}
