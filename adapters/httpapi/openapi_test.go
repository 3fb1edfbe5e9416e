package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// TestOpenAPIMatchesRoutes checks that the OpenAPI document lists exactly
// the operations the server registers.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	// Stand-ins make the optional routes (backups, restores, the audit, the
	// dev clock) register; the handlers are never called.
	s := &Server{Backups: &commands.BackupInstances{}, Days: &commands.DayData{}, Checkpoints: &commands.Checkpoints{}, Files: &commands.DayFiles{}, Restores: &commands.Restores{}, Audit: &commands.Audit{}, DevClock: &fakeClock{},
		DevScrub: &fakeScrub{}}
	s.Handler()
	var served []string
	for _, r := range s.Routes() {
		served = append(served, r.Method+" "+r.Pattern)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if diff := cmp.Diff(documented, served); diff != "" {
		t.Fatalf("openapi.json and the routes differ (-documented +served):\n%s", diff)
	}
}

func TestErrorBodyTable(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{domain.NotFound("show key", "key", "key_X"), http.StatusNotFound, "not_found"},
		{domain.Invalid("x", "bad"), http.StatusBadRequest, "invalid_argument"},
		{domain.Errorf(domain.ErrQuotaExceeded, "create key", "kms_X", "delete a key", "full"), http.StatusUnprocessableEntity, "quota_exceeded"},
		{domain.WrongRevision("s", domain.ExpectNoStream, true, 1), http.StatusConflict, "conflict"},
		{errors.New("disk on fire at /secret/path"), http.StatusInternalServerError, "internal"},
	} {
		status, body := errorBody(c.err)
		if status != c.status || body.Error.Code != c.code {
			t.Errorf("%v: got %d %s, want %d %s", c.err, status, body.Error.Code, c.status, c.code)
		}
		if c.code == "internal" && strings.Contains(body.Error.Message, "secret") {
			t.Errorf("internal error text leaks to the client: %q", body.Error.Message)
		}
		// The client maps the code back to the same sentinel.
		if k := domain.Kind(c.err); k != nil {
			if got := (&APIError{ErrorDetail: body.Error}).Unwrap(); got != k {
				t.Errorf("client maps %s to %v, want %v", body.Error.Code, got, k)
			}
		}
	}
}

// TestOpenAPISchemasMatchTypes checks that the OpenAPI schemas of these
// types list exactly the JSON fields the server writes.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{"BackupInstance": BackupInstance{}, "SourceReleased": SourceReleased{}, "BackupFailing": BackupFailing{},
		"RestoreRequest": RestoreRequest{}, "RestoreResult": RestoreResult{}, "RestorePlan": RestorePlan{}, "RestoreItem": RestoreItem{},
		"RestoreFinding": RestoreFinding{}, "RestoreProgress": RestoreProgress{}, "RestoreStreamLine": RestoreStreamLine{},
		"AuditRecord": AuditRecord{}} {
		var documented, written []string
		for p := range doc.Components.Schemas[name].Properties {
			documented = append(documented, p)
		}
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			if tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ","); tag != "" && tag != "-" {
				written = append(written, tag)
			}
		}
		sort.Strings(documented)
		sort.Strings(written)
		if diff := cmp.Diff(documented, written); diff != "" {
			t.Errorf("schema %s and type %s differ (-documented +written):\n%s", name, rt.Name(), diff)
		}
	}
}
