package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// api sends one raw request to the server's JSON API and returns the status
// and the error body (empty on success).
func api(t *testing.T, s *Server, tok, method, path, body string, headers ...string) (int, string, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+s.Addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb struct {
		Error struct{ Code, Message, Hint string }
	}
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &eb)
	return resp.StatusCode, eb.Error.Code, eb.Error.Message + " " + eb.Error.Hint
}

// TestBadValuesAreShownShort: a bad value comes back in an error cut to
// about 100 characters, whatever its size and wherever it was sent.
func TestBadValuesAreShownShort(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	bkp := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "7", "--term", "1mo"), "id")
	huge := strings.Repeat("X", 900<<10)
	mid := strings.Repeat("y", 4000) // fits in a URL
	q := url.QueryEscape
	for _, c := range []struct{ name, method, path, body string }{
		{"region", "POST", "/v1/kms/instances", `{"region":"` + huge + `"}`},
		{"term", "POST", "/v1/backup-instances", `{"region":"cn-hangzhou","viewable_days":7,"term":"` + huge + `"}`},
		{"time zone", "POST", "/v1/backup-instances/" + bkp + "/enable", `{"kms_instance":"` + inst + `","alias":"a","time_zone":"` + huge + `"}`},
		{"KMS instance ID", "POST", "/v1/backup-instances/" + bkp + "/enable", `{"kms_instance":"` + huge + `","alias":"a"}`},
		{"secret name", "POST", "/v1/kms/secrets", `{"name":"` + huge + `","instance":"` + inst + `","key_id":"key_x","value":"eA=="}`},
		{"unknown field", "POST", "/v1/kms/instances", `{"` + huge + `":1}`},
		{"account name", "POST", "/v1/accounts", `{"name":"` + huge + `"}`},
		{"advance", "POST", "/v1/dev/clock/advance", `{"duration":"` + huge + `"}`},
		{"key ID in the path", "GET", "/v1/kms/keys/" + mid, ""},
		{"day", "GET", "/v1/backup-instances/" + bkp + "/data?tab=full-keys&day=" + q(mid), ""},
		{"tab", "GET", "/v1/backup-instances/" + bkp + "/data?day=2026-05-01&tab=" + q(mid), ""},
		{"audit backup", "GET", "/v1/audit?backup=" + q(mid), ""},
		{"page token", "GET", "/v1/kms/instances?page_token=" + q(mid), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			tk := tok
			if c.name == "account name" {
				tk = AdminToken
			}
			status, code, msg := api(t, s, tk, c.method, c.path, c.body)
			if status != 400 || code != "invalid_argument" {
				t.Fatalf("%d %s, want 400 invalid_argument: %.300s", status, code, msg)
			}
			if len(msg) > 400 || strings.Contains(msg, strings.Repeat("X", 101)) || strings.Contains(msg, strings.Repeat("y", 101)) {
				t.Fatalf("the error repeats the value (%d bytes): %.300s", len(msg), msg)
			}
		})
	}
}

// TestJSONErrorsNameTheField: a body of the wrong shape is refused with the
// JSON field and the form it takes, never a Go type.
func TestJSONErrorsNameTheField(t *testing.T) {
	s := StartServer(t, "")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	for _, c := range []struct {
		name, path, body string
		want             []string
	}{
		{"number as a string", "/v1/kms/instances", `{"region":"cn-hangzhou","key_quota":"ten"}`, []string{`"key_quota"`, "whole number"}},
		{"fraction", "/v1/kms/instances", `{"region":"cn-hangzhou","key_quota":1.5}`, []string{`"key_quota"`, "whole number"}},
		{"array body", "/v1/kms/instances", `[1]`, []string{"JSON object"}},
		{"string body", "/v1/kms/instances", `"cn-hangzhou"`, []string{"JSON object"}},
		{"value as a number", "/v1/kms/secrets", `{"name":"db","instance":"` + inst + `","key_id":"` + key + `","value":5}`, []string{`"value"`, "base64"}},
		{"value not base64", "/v1/kms/secrets", `{"name":"db","instance":"` + inst + `","key_id":"` + key + `","value":"!!not base64!!"}`, []string{`"value"`, "base64"}},
		{"plaintext not base64", "/v1/kms/encrypt", `{"key_id":"` + key + `","plaintext":"%%%"}`, []string{`"plaintext"`, "base64"}},
		{"region as a number", "/v1/kms/instances", `{"region":5}`, []string{`"region"`, "string"}},
		{"confirm as a string", "/v1/backup-instances/bkp_01KQ0000000000000000000000/reset", `{"confirm":"yes"}`, []string{`"confirm"`, "true or false"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, code, msg := api(t, s, tok, "POST", c.path, c.body)
			if status != 400 || code != "invalid_argument" {
				t.Fatalf("%d %s: %s", status, code, msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Fatalf("message %q does not say %q", msg, w)
				}
			}
			for _, goType := range []string{"int64", "uint8", "httpapi.", "[]", "bool", "of type"} {
				if strings.Contains(msg, goType) {
					t.Fatalf("message %q names a Go type (%s)", msg, goType)
				}
			}
		})
	}
}

// TestPageTokensAreVerified: every paged listing refuses a page token it
// did not issue, or that another listing issued, and accepts its own.
func TestPageTokensAreVerified(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou")
	k1 := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	s.MustJSON(tok, "kms", "key", "create", "--instance", inst)
	s.MustJSON(tok, "kms", "secret", "create", "a", "--instance", inst, "--key", k1, "--value", "1")
	s.MustJSON(tok, "kms", "secret", "create", "b", "--instance", inst, "--key", k1, "--value", "2")
	bkp := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "7", "--term", "1mo"), "id")
	s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "7", "--term", "1mo")
	s.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "prod")
	s.MustJSON(tok, "backup-instance", "extend", bkp, "--viewable-days", "8")

	lists := map[string]string{
		"instances":        "/v1/kms/instances?page_size=1",
		"keys":             "/v1/kms/keys?instance=" + inst + "&page_size=1",
		"secrets":          "/v1/kms/secrets?instance=" + inst + "&page_size=1",
		"backup instances": "/v1/backup-instances?page_size=1",
		"data":             "/v1/backup-instances/" + bkp + "/data?day=2026-05-01&tab=full-keys&page_size=1",
		"audit":            "/v1/audit?page_size=1",
		"uploads":          "/v1/uploads?page_size=1",
	}
	// A token each listing issued (uploads has none to give).
	issued := map[string]string{}
	for name, path := range lists {
		req, _ := http.NewRequest("GET", "http://"+s.Addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var l struct {
			NextPageToken string `json:"next_page_token"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", name, resp.StatusCode)
		}
		if l.NextPageToken != "" {
			issued[name] = l.NextPageToken
		}
	}
	if len(issued) != 6 {
		t.Fatalf("next page tokens of %d listings, want 6: %v", len(issued), issued)
	}
	for name, path := range lists {
		bads := []string{"zzz", "kms_01KQ0000000000000000000000", "a", strings.Repeat("A", 200)}
		for other, tk := range issued {
			if other != name {
				bads = append(bads, tk) // another listing's token
			}
		}
		for _, bad := range bads {
			status, code, msg := api(t, s, tok, "GET", path+"&page_token="+url.QueryEscape(bad), "")
			if status != 400 || code != "invalid_argument" || !strings.Contains(msg, "page_token") {
				t.Errorf("%s with page token %.20q: %d %s %s, want 400 invalid_argument naming page_token", name, bad, status, code, msg)
			}
		}
		if tk, ok := issued[name]; ok {
			if status, _, msg := api(t, s, tok, "GET", path+"&page_token="+url.QueryEscape(tk), ""); status != 200 {
				t.Errorf("%s with its own token: %d %s", name, status, msg)
			}
		}
	}
	// The command line and the console refuse it too.
	s.MustFail(tok, 2, []string{"page_token"}, "kms", "instance", "list", "--page-token", "zzz")
	s.MustFail(tok, 2, []string{"page_token"}, "backup-instance", "list", "--page-token", issued["instances"])
	w := signIn(t, s, tok)
	resp, body := w.do("GET", "/backups?page=zzz", nil)
	wantStatus(t, "/backups with a forged page", resp, body, 400, "page")
	resp, body = w.do("GET", "/backups/"+bkp+"/data?tab=full-keys&page="+url.QueryEscape(issued["keys"]), nil)
	wantStatus(t, "the data page with another listing's page", resp, body, 400)
}

// TestNamesAndZonesAtTheEdges: aliases, upload names and descriptions are
// trimmed and free of control and bidi characters; time zones are IANA
// names; dev clock advances are whole units.
func TestNamesAndZonesAtTheEdges(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	bkp := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "7", "--term", "1mo"), "id")
	enable := `/v1/backup-instances/` + bkp + `/enable`
	for _, zone := range []string{"Local", "Factory", "posixrules", "right/UTC", "posix/Asia/Shanghai", "localtime", "../etc/passwd", "asia/shanghai"} {
		status, code, msg := api(t, s, tok, "POST", enable, `{"kms_instance":"`+inst+`","alias":"prod","time_zone":"`+zone+`"}`)
		if status != 400 || code != "invalid_argument" || !strings.Contains(msg, "IANA") {
			t.Errorf("time zone %q: %d %s %s, want 400 naming IANA zones", zone, status, code, msg)
		}
	}
	s.MustFail(tok, 2, []string{"IANA"}, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "prod", "--time-zone", "Local")
	for _, alias := range []string{"   ", "\u202eevil", "a\u2066b", "bell\a", "new\nline", "tab\there", "\u200f"} {
		b, _ := json.Marshal(map[string]string{"kms_instance": inst, "alias": alias})
		status, code, msg := api(t, s, tok, "POST", enable, string(b))
		if status != 400 || code != "invalid_argument" || !strings.Contains(msg, "alias") {
			t.Errorf("alias %q: %d %s %s, want 400 about the alias", alias, status, code, msg)
		}
	}
	s.MustFail(tok, 2, []string{"alias"}, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "\u202eevil")
	on := s.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "  prod  ", "--time-zone", "Asia/Shanghai")
	if on["alias"] != "prod" {
		t.Fatalf("alias %q, want it trimmed to prod", on["alias"])
	}

	// Upload names (refused before the file is read).
	key := "kbk1_" + strings.Repeat("A", 43)
	for _, name := range []string{"  ", "\u202eupload", "nul\x00name", "esc\x1b[31m"} {
		req, _ := http.NewRequest("POST", "http://"+s.Addr+"/v1/uploads?name="+url.QueryEscape(name), strings.NewReader("not a file"))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Kmsbackup-Data-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb struct {
			Error struct{ Code, Message string }
		}
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(eb.Error.Message, "name") {
			t.Errorf("upload name %q: %d %+v, want 400 about the name", name, resp.StatusCode, eb.Error)
		}
	}

	// Descriptions: no NUL, no control characters but newline and tab, no
	// bidi controls; trimmed.
	for _, d := range []string{"nul\x00", "esc\x1b[2J", "bidi\u202e", "cr\rlf"} {
		b, _ := json.Marshal(map[string]string{"instance": inst, "description": d})
		status, code, msg := api(t, s, tok, "POST", "/v1/kms/keys", string(b))
		if status != 400 || code != "invalid_argument" || !strings.Contains(msg, "description") {
			t.Errorf("description %q: %d %s %s, want 400 about the description", d, status, code, msg)
		}
	}
	k := s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "  line one\nline\ttwo  ")
	if k["description"] != "line one\nline\ttwo" {
		t.Fatalf("description %q, want it trimmed with its newline and tab", k["description"])
	}

	// Account names.
	for _, n := range []string{" acme", "acme\u202e", "ac\x00me", ""} {
		b, _ := json.Marshal(map[string]string{"name": n})
		if status, code, msg := api(t, s, AdminToken, "POST", "/v1/accounts", string(b)); status != 400 || code != "invalid_argument" || !strings.Contains(msg, "account name") {
			t.Errorf("account name %q: %d %s %s", n, status, code, msg)
		}
	}

	// Dev clock advances: whole seconds or more, one unit.
	for _, d := range []string{"1h30m", "500ms", "1.5d", "90", "-5m", "0s", "1d12h", "5 m"} {
		status, code, msg := api(t, s, tok, "POST", "/v1/dev/clock/advance", `{"duration":"`+d+`"}`)
		if status != 400 || code != "invalid_argument" || !strings.Contains(msg, "5m, 48h or 31d") {
			t.Errorf("advance %q: %d %s %s, want 400 giving the form", d, status, code, msg)
		}
	}
	s.MustFail(tok, 2, []string{"one unit"}, "dev", "clock", "advance", "1h30m")
	if v := s.MustJSON(tok, "dev", "clock", "advance", "90s"); v["now"] != "2026-05-01T09:31:30Z" {
		t.Fatalf("advance 90s: %v", v)
	}
}
