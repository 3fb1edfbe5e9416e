package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/adapters/clock"
	idsource "github.com/kmsbackup/kmsbackup/adapters/ids"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/stallfs"
)

// The data directory's faults, tested on copies of a real one: the server
// makes it (keys, secrets, a backup with incrementals) and stops; each test
// damages a copy and starts the server on it.

const faultClockStart = "2026-05-01T09:30:00Z"

// realData is a data directory made by the server, and what the server
// showed of its data.
type realData struct {
	dir     string
	view    map[string]string
	account string
}

// makeRealData runs the server on a fresh directory and fills it.
func makeRealData(t *testing.T) realData {
	t.Helper()
	s := StartServer(t, "", "--clock", "manual", "--clock-start", faultClockStart)
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "payments"), "id")
	s.MustJSON(tok, "kms", "key", "rotate", key)
	s.MustJSON(tok, "kms", "secret", "create", "db", "--instance", inst, "--key", key, "--value", "v1")
	bkp := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "10", "--term", "1mo"), "id")
	s.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "prod", "--time-zone", "UTC")
	s.MustJSON(tok, "kms", "secret", "rotate", "db", "--value", "v2")
	s.MustJSON(tok, "kms", "key", "create", "--instance", inst)
	s.MustJSON(tok, "dev", "clock", "advance", "12m")
	d := realData{dir: s.DataDir, view: dataView(t, s, inst, bkp), account: str(t, s.MustJSON(tok, "whoami"), "account")}
	// A second run as an operator's restart leaves it: (older versions
	// flushed what their write-ahead log held at the next start only).
	s.Restart()
	s.Stop()
	return d
}

// dataView is what the server shows of the data: keys, secrets and their
// values, the backup instance, its day lists, and verify's verdict.
func dataView(t *testing.T, s *Server, inst, bkp string) map[string]string {
	t.Helper()
	tok := s.DevTok
	canon := func(args ...string) string {
		b, err := json.Marshal(s.MustJSON(tok, args...))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	v := map[string]string{
		"keys":        canon("kms", "key", "list", "--instance", inst),
		"secrets":     canon("kms", "secret", "list", "--instance", inst),
		"secret v1":   canon("kms", "secret", "get", "db", "--version", "1"),
		"secret v2":   canon("kms", "secret", "get", "db"),
		"backup":      canon("backup-instance", "show", bkp),
		"full keys":   canon("data", "list", bkp, "--day", "2026-05-01", "--tab", "full-keys"),
		"new secrets": canon("data", "list", bkp, "--day", "2026-05-01", "--tab", "incremental-secrets"),
	}
	r := s.CLI(tok, "", "verify", bkp)
	v["verify"] = fmt.Sprintf("exit %d", r.Code)
	return v
}

// serverView starts the server on dir (its manual clock continuing from
// the log) and returns its view of the data.
func (d realData) serverView(t *testing.T, dir string, extra ...string) (map[string]string, *Server) {
	t.Helper()
	s := StartServer(t, dir, append([]string{"--clock", "manual"}, extra...)...)
	waitReady(t, s)
	var inst, bkp string
	for _, it := range items(t, s.MustJSON(s.DevTok, "kms", "instance", "list")) {
		inst = it["id"].(string)
	}
	for _, it := range items(t, s.MustJSON(s.DevTok, "backup-instance", "list")) {
		if it["kind"] == "provisioned" {
			bkp = it["id"].(string)
		}
	}
	return dataView(t, s, inst, bkp), s
}

// waitReady waits until /readyz answers 200.
func waitReady(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		code := readyz(t, s)
		if code == http.StatusOK {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("the server never became ready (readyz %d); logs:\n%s", code, s.Logs())
		}
	}
}

// copyDir copies the directory tree src to dst, keeping permissions.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// copyOf copies d's directory into a new temporary directory.
func (d realData) copyOf(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "data")
	copyDir(t, d.dir, dst)
	return dst
}

// treeState describes every file and directory under dir: kind,
// permissions, size, modification time and SHA-256 of the contents. The one
// exception is the modification time of Pebble's lock files (LOCK): taking
// the lock re-creates the file (os.Create truncates it: it stays empty),
// which is the only trace a refused start leaves.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			out[rel+"/"] = info.Mode().String()
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		mtime := info.ModTime().Format(time.RFC3339Nano)
		if d.Name() == "LOCK" {
			mtime = "(lock file)"
		}
		out[rel] = fmt.Sprintf("%s %d %s %x", info.Mode(), info.Size(), mtime, sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runServer runs `kmsbackup server` until it exits (it must, within a
// minute) and returns its exit code and output.
func runServer(t *testing.T, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"server", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = cleanEnv()
	return runCmd(t, cmd)
}

// mustRefuse starts the server on dir with args and requires the refusal:
// exit code want, exactly one line on stderr (naming every fragment),
// nothing on stdout, and the directory exactly as it was.
func mustRefuse(t *testing.T, dir string, want int, fragments []string, args ...string) string {
	t.Helper()
	before := treeState(t, dir)
	r := runServer(t, append([]string{"--data-dir", dir}, args...)...)
	if r.Code != want {
		t.Fatalf("server exited %d, want %d\nstdout: %s\nstderr: %s", r.Code, want, r.Stdout, r.Stderr)
	}
	lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "kmsbackup: ") || r.Stdout != "" {
		t.Fatalf("want one message on stderr and nothing on stdout; stdout %q, stderr:\n%s", r.Stdout, r.Stderr)
	}
	for _, f := range fragments {
		if !strings.Contains(lines[0], f) {
			t.Fatalf("message %q does not say %q", lines[0], f)
		}
	}
	if diff := cmp.Diff(before, treeState(t, dir)); diff != "" {
		t.Fatalf("a refused start changed the data directory (-before +after):\n%s", diff)
	}
	t.Logf("exit %d: %s", r.Code, lines[0])
	return lines[0]
}

// largestTable returns the largest sstable in dir.
func largestTable(t *testing.T, dir string) (string, int64) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no sstable in %s: %v", dir, err)
	}
	var best string
	var size int64
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() > size {
			best, size = p, info.Size()
		}
	}
	return best, size
}

// flipByteAt flips the byte at offset at of the file at path.
func flipByteAt(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func TestDataDirectoryFaults(t *testing.T) {
	d := makeRealData(t)
	if d.view["verify"] != "exit 0" {
		t.Fatalf("test setup: verify of the backup: %s", d.view["verify"])
	}
	devArgs := []string{"--dev", "--dev-admin-token", AdminToken}

	// (a) One flipped byte in an sstable of the log store: exit 10, one
	// message naming the file and what it holds, nothing written.
	t.Run("DamagedLogStore", func(t *testing.T) {
		dir := d.copyOf(t)
		table, size := largestTable(t, filepath.Join(dir, "db"))
		flipByteAt(t, table, size/3)
		mustRefuse(t, dir, 10, []string{table, "is damaged", "event log", "restore the data directory from a copy"}, devArgs...)
	})

	// (a') One flipped byte in the read models: the server rebuilds them
	// from the log, says so at warning level, and serves the same data.
	t.Run("DamagedReadModels", func(t *testing.T) {
		dir := d.copyOf(t)
		table, size := largestTable(t, filepath.Join(dir, "projections"))
		flipByteAt(t, table, size/3)
		view, s := d.serverView(t, dir)
		if diff := cmp.Diff(d.view, view); diff != "" {
			t.Errorf("the rebuilt read models show other data (-before +after):\n%s", diff)
		}
		warn := regexp.MustCompile(`level=WARN msg="the read models were damaged[^"]*".*` + regexp.QuoteMeta(filepath.Base(table)))
		if !warn.MatchString(s.Logs()) {
			t.Errorf("no warning naming %s in the logs:\n%s", filepath.Base(table), s.Logs())
		}
	})

	// (b) Another master key: exit 11, one message, nothing written; in
	// --dev with a replaced master.key, and in production with
	// --master-key-file.
	t.Run("WrongMasterKey", func(t *testing.T) {
		dir := d.copyOf(t)
		other := filepath.Join(t.TempDir(), "other.key")
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		if err := os.WriteFile(other, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		want := []string{"master key is not the one", "written with", "nothing was written"}
		mustRefuse(t, dir, 11, want, "--master-key-file", other)
		b, err := os.ReadFile(other)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "master.key"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		mustRefuse(t, dir, 11, want, devArgs...)
	})

	// (c) Acknowledged events in write-ahead log files: the store is opened
	// in-process with flushes held back (stallfs), so that two WAL files
	// hold events, and copied as a crash would leave it; the server is then
	// started on copies with one WAL file removed.
	t.Run("LostLogFiles", func(t *testing.T) {
		img, flushed, head := walImage(t, d)
		older, newest := twoNewestWALs(t, filepath.Join(img, "db"))

		// An older WAL removed: a gap after the flushed position.
		hole := d.copyOfDir(t, img)
		if err := os.Remove(filepath.Join(hole, "db", older)); err != nil {
			t.Fatal(err)
		}
		msg := mustRefuse(t, hole, 12, []string{"lost acknowledged events", "restore the data directory from a copy",
			"--accept-lost-log-positions cannot help"}, devArgs...)
		first, last := missingRange(t, msg)
		if first != flushed+1 || last >= head {
			t.Fatalf("missing positions %d-%d, want a range from %d ending before %d", first, last, flushed+1, head)
		}
		mustRefuse(t, hole, 12, []string{"cannot help"}, append(devArgs, "--accept-lost-log-positions")...)

		// The newest WAL removed: the log's end is lost; the flag accepts
		// it, loudly, and the data from before is all there.
		end := d.copyOfDir(t, img)
		if err := os.Remove(filepath.Join(end, "db", newest)); err != nil {
			t.Fatal(err)
		}
		msg = mustRefuse(t, end, 12, []string{"lost acknowledged events", "--accept-lost-log-positions (the read models are then rebuilt"}, devArgs...)
		if _, last := missingRange(t, msg); last != head {
			t.Fatalf("missing positions end at %d, want %d (the acknowledged head)", last, head)
		}
		view, s := d.serverView(t, end, "--accept-lost-log-positions")
		if diff := cmp.Diff(d.view, view); diff != "" {
			t.Errorf("after accepting the lost end (-before +after):\n%s", diff)
		}
		if !strings.Contains(s.Logs(), "level=ERROR msg=\"ACCEPTED THE LOSS OF ACKNOWLEDGED EVENTS") {
			t.Errorf("accepting the loss was not logged as an error:\n%s", s.Logs())
		}
		s.Stop()
		// Accepted once: the next start needs no flag.
		view, _ = d.serverView(t, end)
		if diff := cmp.Diff(d.view, view); diff != "" {
			t.Errorf("the start after (-before +after):\n%s", diff)
		}
	})
}

// copyOfDir copies src into a new temporary directory.
func (d realData) copyOfDir(t *testing.T, src string) string {
	t.Helper()
	return realData{dir: src}.copyOf(t)
}

// walImage copies d and, on the copy, appends audit records through the
// store with flushes held back until two write-ahead log files hold
// acknowledged events; it returns a copy of that directory as a crash
// would leave it, with the mark's flushed position and the head.
func walImage(t *testing.T, d realData) (img string, flushed, head uint64) {
	t.Helper()
	dir := d.copyOf(t)
	db := filepath.Join(dir, "db")
	sfs := stallfs.New(vfs.Default)
	st, err := pebblestore.Open(db, pebblestore.Options{FS: sfs, MemTableSize: 64 << 10, MarkInterval: -1, FlushInterval: -1,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sfs.Unstall()
		_ = st.Close()
	}()
	ctx := context.Background()
	if flushed, err = st.Head(ctx); err != nil { // Open flushed everything
		t.Fatal(err)
	}
	sfs.Stall()
	// The time the data's manual clock stands at (makeRealData advanced it
	// by 12 minutes): the server continues from the log's latest time.
	clk := clock.NewManual(time.Date(2026, 5, 1, 9, 42, 0, 0, time.UTC))
	aud := &commands.Audit{Log: st, Clock: clk, IDs: idsource.Random{Clock: clk}}
	record := func() {
		t.Helper()
		err := aud.Record(ctx, commands.Caller{Admin: true}, domain.AccountID(d.account), &domain.Audited{Action: "note", Item: "filler"})
		if err != nil {
			t.Fatal(err)
		}
	}
	wals := func() []string {
		w, err := stallfs.WALs(vfs.Default, db)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	current := wals()[len(wals())-1]
	for i := 0; wals()[len(wals())-1] == current; i++ {
		if i > 100000 {
			t.Fatal("the write-ahead log never switched files")
		}
		record()
	}
	record() // one in the new file too
	if head, err = st.Head(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.SyncMark(false); err != nil {
		t.Fatal(err)
	}
	// Nothing writes now: the flush waits, nothing else runs.
	img = d.copyOfDir(t, dir)
	return img, flushed, head
}

// twoNewestWALs returns the names of the two newest write-ahead log files
// in dir.
func twoNewestWALs(t *testing.T, dir string) (older, newest string) {
	t.Helper()
	w, err := stallfs.WALs(vfs.Default, dir)
	if err != nil || len(w) < 2 {
		t.Fatalf("write-ahead logs of %s: %v, %v", dir, w, err)
	}
	return w[len(w)-2], w[len(w)-1]
}

var missingRe = regexp.MustCompile(`positions (\d+)(?:-(\d+))? are missing`)

// missingRange reads the first missing range from the refusal's message.
func missingRange(t *testing.T, msg string) (first, last uint64) {
	t.Helper()
	m := missingRe.FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("message %q lists no missing positions", msg)
	}
	first, _ = strconv.ParseUint(m[1], 10, 64)
	last = first
	if m[2] != "" {
		last, _ = strconv.ParseUint(m[2], 10, 64)
	}
	return first, last
}
