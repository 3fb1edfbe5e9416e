package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/oklog/ulid/v2"
)

// dayTabs are the seven lists of a day's data.
var dayTabs = []string{"full-keys", "incremental-keys", "rotated-keys", "full-secrets", "incremental-secrets", "rotated-secrets", "deleted"}

// fileMagic starts every backup data file (docs/backup-file.md).
const fileMagic = "KMSBKUP\n"

// badFileMessage is the one error every unusable backup file gets.
const badFileMessage = "open backup file: the file cannot be opened with this data key: "

// mustDownload downloads a day of a backup instance (the day of an upload
// when day is empty) to out, checks what download printed against the file
// it wrote, and returns the data key and the printed document.
func mustDownload(t *testing.T, s *Server, tok, backup, day, out string, flags ...string) (string, map[string]any) {
	t.Helper()
	args := append([]string{"download", backup, "--out", out}, flags...)
	if day != "" {
		args = append(args, "--day", day)
	}
	v := s.MustJSON(tok, args...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("download printed %v but: %v", v, err)
	}
	if !bytes.HasPrefix(b, []byte(fileMagic)) || v["bytes"] != float64(len(b)) || v["backup"] != backup || v["file"] != out {
		t.Fatalf("download printed %v for a file of %d bytes starting %q", v, len(b), b[:min(len(b), 8)])
	}
	key := str(t, v, "data_key")
	if !strings.HasPrefix(key, "kbk1_") || len(key) != len("kbk1_")+43 {
		t.Fatalf("data key %q is not kbk1_ and 43 base64url characters", key)
	}
	return key, v
}

// headerEnd is the length of a backup data file's header: magic, length,
// body and MAC (docs/backup-file.md, "File layout").
func headerEnd(t *testing.T, f []byte) int {
	t.Helper()
	if len(f) < 12 || string(f[:8]) != fileMagic {
		t.Fatalf("not a backup data file: %q", f[:min(len(f), 12)])
	}
	n := 12 + (int(f[8])<<24 | int(f[9])<<16 | int(f[10])<<8 | int(f[11])) + 32 // length is uint32 BE
	if n+16 > len(f) {
		t.Fatalf("header of %d bytes in a file of %d: no chunk after it", n, len(f))
	}
	return n
}

// actions lists the actions of an account's audit records.
func actions(t *testing.T, s *Server, tok string, args ...string) []string {
	t.Helper()
	var out []string
	for _, a := range items(t, s.MustJSON(tok, append([]string{"audit", "list"}, args...)...)) {
		out = append(out, a["action"].(string))
	}
	return out
}

// smallDay makes a KMS instance with a key and a secret, backed up by a
// provisioned instance enabled on 2026-05-01 (UTC) on a manual clock, with
// a rotation and two incrementals: a small day to download.
func smallDay(t *testing.T, s *Server, tok string) (bkp, day string) {
	t.Helper()
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	s.MustJSON(tok, "kms", "secret", "create", "db", "--instance", inst, "--key", key, "--value", "db-v1")
	bkp = str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "30", "--term", "1y"), "id")
	s.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "small")
	s.MustJSON(tok, "kms", "key", "rotate", key)
	s.MustJSON(tok, "dev", "clock", "advance", "11m")
	return bkp, "2026-05-01"
}

// TestDownloadUploadRoundTrip takes a day with every kind of change through
// download and upload: the upload is listed beside the backup instances,
// holds the same seven lists as the day, verifies, restores a deleted key
// (whose old ciphertext decrypts again) into another region and everything
// into a third, reports a conflicting restore as a finding, and is deleted.
func TestDownloadUploadRoundTrip(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok

	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	k1 := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "payments"), "id")
	k2 := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	ct := str(t, s.MustJSON(tok, "kms", "encrypt", "--key", k1, "--plaintext", "made with version 1"), "ciphertext")
	s.MustJSON(tok, "kms", "key", "rotate", k1)
	s.MustJSON(tok, "kms", "secret", "create", "db", "--instance", inst, "--key", k1, "--value", "db-v1")
	s.MustJSON(tok, "kms", "secret", "rotate", "db", "--value", "db-v2")
	s.MustJSON(tok, "kms", "secret", "create", "api", "--instance", inst, "--key", k2, "--value", "api-v1")
	bkp := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "30", "--term", "1y"), "id")
	s.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "prod", "--time-zone", "Asia/Shanghai")
	s.MustJSON(tok, "dev", "clock", "advance", "12m")

	// 09:42Z is 17:42 in Shanghai: seven hours on it is 00:42 of the next
	// day there, after its midnight full. A key and its secret are deleted
	// by mistake; other keys and secrets are created and rotated.
	s.MustJSON(tok, "dev", "clock", "advance", "7h")
	day := "2026-05-02"
	for _, args := range [][]string{{"kms", "secret", "delete", "db"}, {"kms", "key", "delete", k1}} {
		if r := s.CLI(tok, "", args...); r.Code != 0 {
			t.Fatalf("%v: exit %d %s", args, r.Code, r.Stderr)
		}
	}
	k3 := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	s.MustJSON(tok, "kms", "key", "rotate", k2)
	s.MustJSON(tok, "kms", "secret", "rotate", "api", "--value", "api-v2")
	s.MustJSON(tok, "kms", "secret", "create", "cache", "--instance", inst, "--key", k3, "--value", "cache-v1")
	s.MustJSON(tok, "dev", "clock", "advance", "17m")

	dir := t.TempDir()
	file := filepath.Join(dir, "day.kmsbk")
	dataKey, dl := mustDownload(t, s, tok, bkp, day, file)
	if dl["day"] != day {
		t.Fatalf("download printed %v", dl)
	}
	keyFile := filepath.Join(dir, "day.key")
	if err := os.WriteFile(keyFile, []byte(dataKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := s.MustJSON(tok, "upload", file, "--key-file", keyFile, "--name", "prod on day 2")
	upID := str(t, up, "id")
	for field, want := range map[string]any{"kind": "upload", "state": "uploaded", "alias": "prod on day 2", "region": "cn-hangzhou",
		"upload_day": day, "source_backup": bkp, "source_kms_instance": inst, "file_id": dl["id"], "time_zone": "Asia/Shanghai"} {
		if up[field] != want {
			t.Fatalf("upload %s = %v, want %v; the upload: %v", field, up[field], want, up)
		}
	}

	// Listed beside the backup instances, and by upload list.
	kinds := map[string]any{}
	for _, b := range items(t, s.MustJSON(tok, "backup-instance", "list")) {
		kinds[b["id"].(string)] = b["kind"]
	}
	if kinds[upID] != "upload" || kinds[bkp] != "provisioned" {
		t.Fatalf("backup-instance list: %v", kinds)
	}
	if got := ids(items(t, s.MustJSON(tok, "upload", "list"))); len(got) != 1 || got[0] != upID {
		t.Fatalf("upload list = %v, want [%s]", got, upID)
	}
	if a := actions(t, s, tok, "--backup", upID); !cmp.Equal(a, []string{"upload"}) {
		t.Fatalf("audit of the upload: %v", a)
	}

	// The upload holds the day: every list is the day's.
	for _, tab := range dayTabs {
		want := items(t, s.MustJSON(tok, "data", "list", bkp, "--day", day, "--tab", tab))
		got := items(t, s.MustJSON(tok, "data", "list", upID, "--tab", tab))
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("tab %s of the upload differs from the day's (-day +upload):\n%s", tab, d)
		}
		if len(want) == 0 {
			t.Errorf("tab %s of the day is empty: the comparison shows nothing", tab)
		}
	}
	if got := ids(items(t, s.MustJSON(tok, "data", "list", upID, "--tab", "deleted"))); len(got) != 2 || !slices.Contains(got, k1) || !slices.Contains(got, "db") {
		t.Fatalf("deleted in the upload = %v, want %s and db", got, k1)
	}
	if r := s.CLI(tok, "", "verify", upID); r.Code != 0 {
		t.Fatalf("verify the upload: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// The deleted key comes back, with its old version, in another region.
	eu := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "eu-central-1"), "id")
	res := s.MustJSON(tok, "restore", "--from", upID, "--key", k1, "--to-instance", eu, "--to-region", "eu-central-1")
	if res["applied"] != true || res["restored"] != float64(1) {
		t.Fatalf("restore the deleted key: %v", res)
	}
	if r := s.CLI(tok, "", "kms", "decrypt", "--ciphertext", ct, "--region", "eu-central-1"); r.Code != 0 || r.Stdout != "made with version 1" {
		t.Fatalf("decrypt with the restored key: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}

	// Everything, into a fresh instance of a third region: every secret as
	// it last stood within the day, with all its versions.
	ap := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "ap-southeast-1"), "id")
	res = s.MustJSON(tok, "restore", "--from", upID, "--all", "--to-instance", ap)
	if res["applied"] != true || res["restored"] != float64(6) {
		t.Fatalf("restore --all (3 keys, 3 secrets): %v", res)
	}
	for _, c := range []struct{ name, version, want string }{
		{"db", "1", "db-v1"}, {"db", "2", "db-v2"}, {"api", "2", "api-v2"}, {"cache", "1", "cache-v1"},
	} {
		if r := s.CLI(tok, "", "kms", "secret", "get", c.name, "--version", c.version, "--region", "ap-southeast-1"); r.Code != 0 || r.Stdout != c.want {
			t.Fatalf("secret %s v%s restored from the upload: exit %d %q %s", c.name, c.version, r.Code, r.Stdout, r.Stderr)
		}
	}

	// The key now lives in eu-central-1: restoring it next to itself is a
	// finding of the plan (exit 6), and nothing is written.
	eu2 := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "eu-central-1"), "id")
	r := s.CLI(tok, "", "restore", "--from", upID, "--key", k1, "--to-instance", eu2, "-o", "json")
	if r.Code != 6 || !strings.Contains(r.Stderr, "finding") {
		t.Fatalf("restore over an existing key: exit %d, want 6\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	var conflict struct {
		Applied bool `json:"applied"`
		Plan    struct {
			Findings []struct{ Code, Item string } `json:"findings"`
		} `json:"plan"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &conflict); err != nil {
		t.Fatalf("restore -o json: %v\n%s", err, r.Stdout)
	}
	if conflict.Applied || len(conflict.Plan.Findings) != 1 || conflict.Plan.Findings[0].Code != "key-exists" || conflict.Plan.Findings[0].Item != k1 {
		t.Fatalf("restore over an existing key: %s", r.Stdout)
	}
	if in := s.MustJSON(tok, "kms", "instance", "show", eu2); in["keys"] != float64(0) {
		t.Fatalf("a restore with findings wrote: %v", in)
	}

	// Deleting the upload destroys it, not what was restored from it.
	if r := s.CLI(tok, "", "upload", "delete", upID); r.Code != 0 {
		t.Fatalf("upload delete: exit %d %s", r.Code, r.Stderr)
	}
	if got := items(t, s.MustJSON(tok, "upload", "list")); len(got) != 0 {
		t.Fatalf("upload list after delete: %v", got)
	}
	s.MustFail(tok, 3, []string{"not found"}, "backup-instance", "show", upID)
	s.MustFail(tok, 3, []string{"not found"}, "data", "list", upID, "--tab", "full-keys")
	if r := s.CLI(tok, "", "kms", "decrypt", "--ciphertext", ct, "--region", "eu-central-1"); r.Code != 0 || r.Stdout != "made with version 1" {
		t.Fatalf("decrypt after the upload was deleted: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestBadFilesAreRefusedAlike uploads a downloaded file with a wrong key,
// with one byte changed at several places, truncated, extended, with
// another file's header, and by another account: every one is refused with
// the same message and exit status, and nothing of any of them is kept.
func TestBadFilesAreRefusedAlike(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	bkp, day := smallDay(t, s, tok)
	otherTok := str(t, s.MustJSON(AdminToken, "account", "create", "other"), "token")

	dir := t.TempDir()
	pathA, pathB := filepath.Join(dir, "a.kmsbk"), filepath.Join(dir, "b.kmsbk")
	keyA, _ := mustDownload(t, s, tok, bkp, day, pathA)
	keyB, _ := mustDownload(t, s, tok, bkp, day, pathB)
	a, err := os.ReadFile(pathA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pathB)
	if err != nil {
		t.Fatal(err)
	}
	if keyA == keyB || bytes.Equal(a, b) {
		t.Fatal("two downloads of a day gave the same key or the same bytes")
	}
	ha, hb := headerEnd(t, a), headerEnd(t, b)
	if len(a)/2 <= ha {
		t.Fatalf("file of %d bytes with a header of %d: its middle is not in a chunk", len(a), ha)
	}

	listsBefore := map[string]map[string]any{
		"mine":  s.MustJSON(tok, "backup-instance", "list"),
		"other": s.MustJSON(otherTok, "backup-instance", "list"),
	}

	flip := func(i int) []byte {
		c := bytes.Clone(a)
		c[i] ^= 0x01
		return c
	}
	cases := []struct {
		name string
		tok  string
		file []byte
		key  string
	}{
		{"wrong key", tok, a, keyB},
		{"first byte flipped", tok, flip(0), keyA},
		{"header body byte flipped", tok, flip(12 + (ha-44)/2), keyA},
		{"header MAC byte flipped", tok, flip(ha - 1), keyA},
		{"first byte after the header flipped", tok, flip(ha), keyA},
		{"middle byte flipped", tok, flip(len(a) / 2), keyA},
		{"last byte flipped", tok, flip(len(a) - 1), keyA},
		{"truncated to half", tok, a[:len(a)/2], keyA},
		{"truncated by one byte", tok, a[:len(a)-1], keyA},
		{"truncated to the header", tok, a[:ha], keyA},
		{"one byte appended", tok, append(bytes.Clone(a), 0), keyA},
		{"another file's header, its key", tok, append(bytes.Clone(b[:hb]), a[ha:]...), keyB},
		{"another file's header, the chunks' key", tok, append(bytes.Clone(b[:hb]), a[ha:]...), keyA},
		{"another account's file", otherTok, a, keyA},
	}
	var first string
	for i, c := range cases {
		path := filepath.Join(dir, "bad-"+string(rune('a'+i))+".kmsbk")
		if err := os.WriteFile(path, c.file, 0o600); err != nil {
			t.Fatal(err)
		}
		r := s.CLI(c.tok, "", "upload", path, "--key", c.key, "--name", "bad")
		if r.Code != 2 || r.Stdout != "" || !strings.Contains(r.Stderr, badFileMessage) {
			t.Fatalf("%s: exit %d, want 2 with %q\nstdout: %s\nstderr: %s", c.name, r.Code, badFileMessage, r.Stdout, r.Stderr)
		}
		if first == "" {
			first = r.Stderr
		} else if r.Stderr != first {
			t.Errorf("%s is refused with\n%q\nthe first case with\n%q", c.name, r.Stderr, first)
		}
	}

	// A string that is no data key at all is a usage error of its own,
	// naming the format.
	r := s.MustFail(tok, 2, []string{"kbk1_", "43 base64url characters"}, "upload", pathA, "--key", "nonsense", "--name", "bad")
	if strings.Contains(r.Stderr, badFileMessage) {
		t.Fatalf("a malformed key is reported as a bad file: %s", r.Stderr)
	}

	// Nothing of any of them is kept.
	for who, tk := range map[string]string{"mine": tok, "other": otherTok} {
		if got := items(t, s.MustJSON(tk, "upload", "list")); len(got) != 0 {
			t.Errorf("upload list of %s after refused uploads: %v", who, got)
		}
		if d := cmp.Diff(listsBefore[who], s.MustJSON(tk, "backup-instance", "list")); d != "" {
			t.Errorf("backup-instance list of %s changed (-before +after):\n%s", who, d)
		}
		for _, act := range actions(t, s, tk) {
			if act == "upload" {
				t.Errorf("the audit of %s records an upload", who)
			}
		}
	}

	// The intact file with its key is accepted, so the cases above failed
	// for what was done to them.
	if up := s.MustJSON(tok, "upload", pathA, "--key", keyA, "--name", "intact"); up["kind"] != "upload" {
		t.Fatalf("intact upload: %v", up)
	}

	s.Stop()
	spool, err := os.ReadDir(filepath.Join(s.DataDir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	if len(spool) != 0 {
		var names []string
		for _, e := range spool {
			names = append(names, e.Name())
		}
		t.Fatalf("the spool directory keeps %v", names)
	}
}

// TestDataKeyIsNeverKept downloads days, uploads one, fails uploads with the
// keys, then looks for every data key (as text, raw, base64 and hex) in
// everything the server shows or keeps: only download's output holds it.
func TestDataKeyIsNeverKept(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	bkp, day := smallDay(t, s, tok)
	otherTok := str(t, s.MustJSON(AdminToken, "account", "create", "other"), "token")

	dir := t.TempDir()
	pathA, pathB := filepath.Join(dir, "a.kmsbk"), filepath.Join(dir, "b.kmsbk")
	r := s.CLI(tok, "", "download", bkp, "--day", day, "--out", pathA)
	if r.Code != 0 {
		t.Fatalf("download: exit %d %s", r.Code, r.Stderr)
	}
	var keyA string
	for _, line := range strings.Split(r.Stdout, "\n") {
		if k, ok := strings.CutPrefix(line, "Data key:"); ok {
			keyA = strings.TrimSpace(k)
		}
	}
	if !strings.HasPrefix(keyA, "kbk1_") {
		t.Fatalf("download printed no data key:\n%s", r.Stdout)
	}
	keyB, _ := mustDownload(t, s, tok, bkp, day, pathB)
	a, err := os.ReadFile(pathA)
	if err != nil {
		t.Fatal(err)
	}

	up := str(t, s.MustJSON(tok, "upload", pathA, "--key", keyA, "--name", "kept"), "id")
	// A download of the upload draws a key of its own.
	keyC, _ := mustDownload(t, s, tok, up, "", filepath.Join(dir, "c.kmsbk"))

	truncated := filepath.Join(dir, "truncated.kmsbk")
	if err := os.WriteFile(truncated, a[:len(a)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tok, file, key string
	}{{tok, truncated, keyA}, {tok, pathB, keyA}, {tok, pathA, keyB}, {otherTok, pathA, keyA}, {otherTok, pathB, keyB}} {
		if r := s.CLI(c.tok, "", "upload", c.file, "--key", c.key, "--name", "refused"); r.Code != 2 {
			t.Fatalf("upload of %s: exit %d, want 2\n%s", c.file, r.Code, r.Stderr)
		}
	}

	needles := map[string][]byte{}
	for name, key := range map[string]string{"A": keyA, "B": keyB, "C": keyC} {
		enc := strings.TrimPrefix(key, "kbk1_")
		raw, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil || len(raw) != 32 {
			t.Fatalf("data key %s %q: %d bytes, %v", name, key, len(raw), err)
		}
		needles["data key "+name] = []byte(key)
		needles["data key "+name+" (base64url)"] = []byte(enc)
		needles["data key "+name+" (raw)"] = raw
		needles["data key "+name+" (base64)"] = []byte(strings.TrimRight(base64.StdEncoding.EncodeToString(raw), "="))
		needles["data key "+name+" (hex)"] = []byte(hex.EncodeToString(raw))
		needles["data key "+name+" (HEX)"] = []byte(strings.ToUpper(hex.EncodeToString(raw)))
	}

	// Everything the API shows about the downloads and uploads.
	marker := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "eu-central-1"), "id")
	mustOut := func(tk string, args ...string) string {
		t.Helper()
		r := s.CLI(tk, "", args...)
		if r.Code != 0 {
			t.Fatalf("kmsbackup %s: exit %d %s", strings.Join(args, " "), r.Code, r.Stderr)
		}
		return r.Stdout
	}
	shown := map[string]string{
		"backup-instance list":  mustOut(tok, "backup-instance", "list", "-o", "json"),
		"upload list":           mustOut(tok, "upload", "list", "-o", "json"),
		"audit list":            mustOut(tok, "audit", "list", "-o", "json"),
		"other's audit list":    mustOut(otherTok, "audit", "list", "-o", "json"),
		"events tail (admin)":   s.CLIUntilLine(AdminToken, marker, "events", "tail", "--from", "0"),
		"events tail (account)": s.CLIUntilLine(tok, marker, "events", "tail", "--from", "0"),
	}
	for what, fragment := range map[string]string{"backup-instance list": up, "upload list": up, "audit list": `"download"`,
		"events tail (admin)": "BackupUploaded", "events tail (account)": "BackupUploaded"} {
		if !strings.Contains(shown[what], fragment) {
			t.Fatalf("%s does not show %s: it is no evidence\n%s", what, fragment, shown[what])
		}
	}
	for what, out := range shown {
		for n, needle := range needles {
			if strings.Contains(out, string(needle)) {
				t.Errorf("%s appears in %s", n, what)
			}
		}
	}
	assertNowhere(t, s, needles)
}

// TestDownloadRefusals: days outside the viewable window, an expired
// instance (until renewed), -o id, an existing --out and an unknown
// instance are refused, and a refused download writes nothing.
func TestDownloadRefusals(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	s.MustJSON(tok, "kms", "key", "create", "--instance", inst)
	bkp := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "7", "--term", "1mo"), "id")
	day1 := "2026-05-01"

	dir := t.TempDir()
	out := filepath.Join(dir, "day.kmsbk")
	// onlyFiles checks that dir holds exactly these files: a refused
	// download leaves neither its output nor a partial file.
	onlyFiles := func(what string, want ...string) {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		if !cmp.Equal(got, want) {
			t.Fatalf("after %s the directory holds %v, want %v", what, got, want)
		}
	}
	downloads := func() int {
		n := 0
		for _, a := range actions(t, s, tok) {
			if a == "download" {
				n++
			}
		}
		return n
	}

	// Before enabling, no day is viewable; after, none before the enabled day.
	s.MustFail(tok, 6, []string{"not viewable"}, "download", bkp, "--day", day1, "--out", out)
	onlyFiles("a download before enabling")
	s.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "short")
	s.MustFail(tok, 6, []string{"not viewable"}, "download", bkp, "--day", "2026-04-30", "--out", out)
	onlyFiles("a download of a day before enabling")

	// -o id would hide the key: refused before any request.
	r := s.MustFail(tok, 2, []string{"-o id", "data key"}, "download", bkp, "--day", day1, "--out", out, "-o", "id")
	if r.Stdout != "" {
		t.Fatalf("download -o id printed %q", r.Stdout)
	}
	onlyFiles("download -o id")
	if n := downloads(); n != 0 {
		t.Fatalf("%d downloads audited after refused ones", n)
	}

	// An unknown instance, and another account's, are not found.
	missing := "bkp_" + ulid.Make().String()
	a := s.MustFail(tok, 3, []string{"not found"}, "download", missing, "--day", day1, "--out", out)
	otherTok := str(t, s.MustJSON(AdminToken, "account", "create", "other"), "token")
	b := s.MustFail(otherTok, 3, []string{"not found"}, "download", bkp, "--day", day1, "--out", out)
	if strings.ReplaceAll(a.Stderr, missing, "ID") != strings.ReplaceAll(b.Stderr, bkp, "ID") {
		t.Fatalf("another account's instance answers %q, a missing one %q", b.Stderr, a.Stderr)
	}
	onlyFiles("downloads of instances not found")

	// An existing --out is kept unless --force.
	if err := os.WriteFile(out, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.MustFail(tok, 4, []string{"exists", "--force"}, "download", bkp, "--day", day1, "--out", out)
	if b, err := os.ReadFile(out); err != nil || string(b) != "precious" {
		t.Fatalf("a refused download changed the existing file: %q %v", b, err)
	}
	if n := downloads(); n != 0 {
		t.Fatalf("%d downloads audited after refused ones", n)
	}
	mustDownload(t, s, tok, bkp, day1, out, "--force") // checks the file: it was replaced
	onlyFiles("download --force", "day.kmsbk")
	if n := downloads(); n != 1 {
		t.Fatalf("%d downloads audited, want 1", n)
	}

	// Ten days on, with seven viewable days, the first day is out of the
	// window; a day inside it downloads.
	s.MustJSON(tok, "dev", "clock", "advance", "10d")
	s.MustFail(tok, 6, []string{"not viewable"}, "download", bkp, "--day", day1, "--out", filepath.Join(dir, "old.kmsbk"))
	onlyFiles("a download of a day out of the window", "day.kmsbk")
	mustDownload(t, s, tok, bkp, "2026-05-05", filepath.Join(dir, "in-window.kmsbk"))

	// Past the term (2026-06-01T09:30Z) the instance is expired: even a day
	// in the window is refused, until renew reactivates it.
	s.MustJSON(tok, "dev", "clock", "advance", "22d")
	if b := s.MustJSON(tok, "backup-instance", "show", bkp); b["state"] != "expired" {
		t.Fatalf("after the term: %v", b)
	}
	late := filepath.Join(dir, "late.kmsbk")
	s.MustFail(tok, 6, []string{"expired"}, "download", bkp, "--day", "2026-05-31", "--out", late)
	onlyFiles("a download from an expired instance", "day.kmsbk", "in-window.kmsbk")
	if b := s.MustJSON(tok, "backup-instance", "renew", bkp, "--term", "1mo"); b["state"] != "enabled" {
		t.Fatalf("after renew: %v", b)
	}
	key, _ := mustDownload(t, s, tok, bkp, "2026-05-31", late)
	// What the renewed instance hands out is a whole day that uploads.
	if up := s.MustJSON(tok, "upload", late, "--key", key, "--name", "late"); up["upload_day"] != "2026-05-31" {
		t.Fatalf("upload of the day after renew: %v", up)
	}
}
