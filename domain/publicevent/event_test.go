package publicevent_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// domainTypes is every event type of domain/events.go. A new type there
// must be added here, to publicevent, to a golden file and to
// docs/events.md.
var domainTypes = []string{
	domain.TypeAccountCreated, domain.TypeInstanceCreated, domain.TypeInstanceReleased,
	domain.TypeKeyCreated, domain.TypeKeyRotated, domain.TypeKeyDeleted,
	domain.TypeSecretCreated, domain.TypeSecretRotated, domain.TypeSecretDeleted,
	domain.TypeBackupCreated, domain.TypeBackupEnabled, domain.TypeBackupExtended,
	domain.TypeBackupRenewed, domain.TypeBackupExpired, domain.TypeBackupReleased,
	domain.TypeBackupReset, domain.TypeBackupCheckpointed,
	domain.TypeKeyRestored, domain.TypeSecretRestored, domain.TypeAudited,
	domain.TypeBackupUploaded, domain.TypeBackupUploadDeleted,
	domain.TypeSourceReleased, domain.TypeBackupFailing, domain.TypeBackupBaseStored,
}

func goldenPath(typ string) string { return filepath.Join("testdata", typ+".json") }

// indented is the published JSON of e, indented as in the golden files and
// the documentation.
func indented(tb testing.TB, e publicevent.Event) []byte {
	tb.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		tb.Fatalf("marshal %s: %v", e.Type, err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		tb.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func TestGolden(t *testing.T) {
	var seen []string
	for _, e := range goldenEvents(t) {
		t.Run(e.Type, func(t *testing.T) {
			pub, err := publicevent.FromEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			got := indented(t, pub)
			path := goldenPath(e.Type)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s differs from %s (-golden +got); if the change is intended and additive, run go test -update:\n%s", e.Type, path, diff)
			}
		})
		seen = append(seen, e.Type)
	}

	// Every domain type has a golden file, and no golden file is stale.
	slices.Sort(seen)
	want := slices.Clone(domainTypes)
	slices.Sort(want)
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("golden events do not cover the domain's event types (-domain +golden):\n%s", diff)
	}
	types := publicevent.Types()
	slices.Sort(types)
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("publicevent.Types() differs from the domain's event types (-domain +Types):\n%s", diff)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !slices.Contains(want, strings.TrimSuffix(filepath.Base(f), ".json")) {
			t.Errorf("stale golden file %s: no such event type", f)
		}
	}
}

// TestDocsShowEveryGolden keeps docs/events.md in step with the code: the
// example of every event type there is its golden file, verbatim.
func TestDocsShowEveryGolden(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "events.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range publicevent.Types() {
		golden, err := os.ReadFile(goldenPath(typ))
		if err != nil {
			t.Fatal(err)
		}
		block := "```json\n" + string(golden) + "```\n"
		if !bytes.Contains(doc, []byte(block)) {
			t.Errorf("docs/events.md does not show the example of %s; paste %s into it as a json block", typ, goldenPath(typ))
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, e := range goldenEvents(t) {
		pub, err := publicevent.FromEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(pub)
		if err != nil {
			t.Fatal(err)
		}
		got, err := publicevent.Parse(b)
		if err != nil {
			t.Fatalf("parse %s: %v\n%s", e.Type, err, b)
		}
		if diff := cmp.Diff(pub, got); diff != "" {
			t.Errorf("%s: parse(marshal(e)) != e (-want +got):\n%s", e.Type, diff)
		}
		var viaJSON publicevent.Event
		if err := json.Unmarshal(b, &viaJSON); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(pub, viaJSON); diff != "" {
			t.Errorf("%s: json.Unmarshal differs from Parse (-want +got):\n%s", e.Type, diff)
		}
	}
}

func TestEnvelope(t *testing.T) {
	events := goldenEvents(t)
	e := events[2] // KeyCreated
	e.OccurredAt = time.Date(2026, 3, 1, 17, 30, 0, 5000, time.FixedZone("CST", 8*3600))
	pub, err := publicevent.FromEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(mustMarshal(t, pub), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"schema":      "kmsbackup.event/v1",
		"id":          e.ID.String(),
		"type":        "KeyCreated",
		"stream":      e.Stream,
		"revision":    float64(e.Revision),
		"position":    float64(e.Position),
		"occurred_at": "2026-03-01T09:30:00.000005000Z",
		"account":     string(e.Account),
		"region":      "cn-hangzhou",
		"instance":    string(e.Instance),
	}
	delete(m, "data")
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("envelope (-want +got):\n%s", diff)
	}
}

func mustMarshal(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestParseErrors(t *testing.T) {
	valid, err := publicevent.FromEvent(goldenEvents(t)[2])
	if err != nil {
		t.Fatal(err)
	}
	good := mustMarshal(t, valid)
	with := func(field string, value any) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		if value == nil {
			delete(m, field)
		} else {
			m[field] = value
		}
		return mustMarshal(t, m)
	}
	tests := []struct {
		name    string
		in      []byte
		want    error
		mention string
	}{
		{"not JSON", []byte("kms1:abc"), publicevent.ErrMalformed, "invalid character"},
		{"no schema", with("schema", nil), publicevent.ErrUnknownSchema, "no \"schema\" field"},
		{"other product", []byte(`{"schema":"cloudevents/1.0","id":1}`), publicevent.ErrUnknownSchema, `"cloudevents/1.0"`},
		// A v2 may change field types: the schema is checked before the shape.
		{"v2", with("schema", "kmsbackup.event/v2"), publicevent.ErrUnknownSchema, `"kmsbackup.event/v2"`},
		{"v2 other shape", []byte(`{"schema":"kmsbackup.event/v2","position":"7"}`), publicevent.ErrUnknownSchema, "reads \"kmsbackup.event/v1\" only"},
		{"bad id", with("id", "42"), publicevent.ErrMalformed, `id "42" is not a ULID`},
		{"no type", with("type", ""), publicevent.ErrMalformed, "no type"},
		{"bad time", with("occurred_at", "yesterday"), publicevent.ErrMalformed, "occurred_at"},
		{"position of wrong type", with("position", "7"), publicevent.ErrMalformed, "position"},
		{"data not an object", with("data", "x"), publicevent.ErrMalformed, "must be an object"},
		{"no data", with("data", nil), publicevent.ErrMalformed, "must be an object"},
		{"data of wrong shape", with("data", map[string]any{"key_id": 7}), publicevent.ErrMalformed, "key_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := publicevent.Parse(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

// TestParseForwardCompatible: within v1, new fields and new event types are
// additive, and a v1 consumer keeps working.
func TestParseForwardCompatible(t *testing.T) {
	in := []byte(`{"schema":"kmsbackup.event/v1","id":"01HQZ5J8Q4V6D3N2M1K0JHGFED","type":"BackupSealed",
		"stream":"backup-bkp_1","revision":3,"position":9,"occurred_at":"2026-03-01T09:30:00Z","account":"acct_1",
		"region":"cn-hangzhou","instance":"","data":{"slice":4,"digest":"abc"},"trace":"new envelope field"}`)
	e, err := publicevent.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := e.Data.(*publicevent.Unknown)
	if !ok || u.Type != "BackupSealed" {
		t.Fatalf("Data = %#v, want *Unknown of BackupSealed", e.Data)
	}
	out := mustMarshal(t, e)
	if !bytes.Contains(out, []byte(`"data":{"slice":4,"digest":"abc"}`)) {
		t.Errorf("unknown data not written back unchanged: %s", out)
	}

	known := []byte(`{"schema":"kmsbackup.event/v1","id":"01HQZ5J8Q4V6D3N2M1K0JHGFED","type":"KeyDeleted",
		"stream":"kms-kms_1","revision":3,"position":9,"occurred_at":"2026-03-01T09:30:00.5+08:00","account":"acct_1",
		"region":"cn-hangzhou","instance":"kms_1","data":{"key_id":"key_1","reason":"added later"}}`)
	e, err = publicevent.Parse(known)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := e.Data.(*publicevent.KeyDeleted); !ok || d.KeyID != "key_1" {
		t.Errorf("Data = %#v, want KeyDeleted of key_1", e.Data)
	}
	if want := time.Date(2026, 3, 1, 1, 30, 0, 5e8, time.UTC); !e.OccurredAt.Equal(want) || e.OccurredAt.Location() != time.UTC {
		t.Errorf("OccurredAt = %v, want %v in UTC", e.OccurredAt, want)
	}
}

func TestMarshalChecksData(t *testing.T) {
	e := publicevent.Event{Schema: publicevent.Schema, ID: "01HQZ5J8Q4V6D3N2M1K0JHGFED", Type: "KeyDeleted"}
	if _, err := json.Marshal(e); err == nil {
		t.Error("marshalled an event without data")
	}
	e.Data = &publicevent.SecretDeleted{Name: "x"}
	if _, err := json.Marshal(e); err == nil {
		t.Error("marshalled a KeyDeleted event carrying SecretDeleted data")
	}
}

func TestFromEventCorrupt(t *testing.T) {
	e := goldenEvents(t)[2]
	e.Data = e.Data[:len(e.Data)-5]
	if _, err := publicevent.FromEvent(e); !domain.IsCorruption(err) {
		t.Errorf("truncated payload: err = %v, want a corruption", err)
	}
	e = goldenEvents(t)[2]
	e.Type = "NoSuchType"
	if _, err := publicevent.FromEvent(e); !domain.IsCorruption(err) {
		t.Errorf("unknown type: err = %v, want a corruption", err)
	}
}

func TestFromEventDoesNotAlias(t *testing.T) {
	e := goldenEvents(t)[2]
	pub, err := publicevent.FromEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	before := slices.Clone(pub.Data.(*publicevent.KeyCreated).MaterialSealed)
	for i := range e.Data {
		e.Data[i] = 0
	}
	if got := pub.Data.(*publicevent.KeyCreated).MaterialSealed; !bytes.Equal(got, before) {
		t.Error("public event shares its bytes with the log event")
	}
}
