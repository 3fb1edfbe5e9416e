package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The README's tours: every ```sh block from the first tour to the end of
// the web console's, in order.
const (
	tourStart = "## A five-minute tour"
	tourEnd   = "## What the software KMS enforces"
)

// tourTimeout bounds the whole tour (it takes seconds).
const tourTimeout = 3 * time.Minute

// tourSections must each hold at least one block: a tour renamed or
// moved out of the range fails here rather than silently not running.
var tourSections = []string{"## A five-minute tour", "### Backups, with a clock you move yourself", "### Restore",
	"### Download a day, upload it back", "### The web console"}

// tourBlocks returns the tours' shell blocks of the README, in order.
func tourBlocks(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	from, to := strings.Index(text, tourStart), strings.Index(text, tourEnd)
	if from < 0 || to < from {
		t.Fatalf("README: %q and %q not found in that order", tourStart, tourEnd)
	}
	text = text[from:to]
	block := regexp.MustCompile("(?s)\n```sh\n(.*?)```")
	for i, h := range tourSections {
		start := strings.Index(text, "\n"+h+"\n")
		if start < 0 && i == 0 {
			start = 0
		}
		if start < 0 {
			t.Fatalf("README: the tour section %q is missing", h)
		}
		end := len(text)
		if i+1 < len(tourSections) {
			if e := strings.Index(text, "\n"+tourSections[i+1]+"\n"); e > start {
				end = e
			}
		}
		if !block.MatchString(text[start:end]) {
			t.Fatalf("README: the tour section %q has no ```sh block", h)
		}
	}
	var out []string
	for _, m := range block.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

// clockShown is a `dev clock show` whose comment says the time it shows
// ("# 2026-05-03T09:42:00Z still", after the restart).
var clockShown = regexp.MustCompile(`^(kmsbackup dev clock show)\s+#\s*(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\b`)

// expectedExit is a command line whose trailing comment says it fails
// with a status ("... # refused: exit 2").
var expectedExit = regexp.MustCompile(`^(\S.*?)\s+#.*\bexit (\d+)\b[^#]*$`)

// tourScript turns the README's blocks into one bash script, run as a
// reader runs them in the second terminal: every command must succeed,
// but one whose comment says it exits with a status must exit with that
// one, and `dev clock show` must show the time its comment says. `make run` (the first terminal) asks the test for a server, whose
// export line the script then pastes.
func tourScript(blocks []string) string {
	var b strings.Builder
	b.WriteString(`set -o pipefail
exec 5>.tour-trace; BASH_XTRACEFD=5; set -x # which command ran last, for a failure's message
trap 'tour_rc=$?; echo "README tour: exit $tour_rc from: $BASH_COMMAND" >&2; exit 1' ERR
# make run [DATA=dir] [ARGS="flags"]: the first terminal's server, stopped
# and started again by the test; its export line is pasted here.
make() {
  if [ "$1" != run ]; then echo "README tour: make $* is not run here" >&2; exit 1; fi
  shift
  local data=./data args= a reply
  for a in "$@"; do
    case $a in
      DATA=*) data=${a#DATA=} ;;
      ARGS=*) args=${a#ARGS=} ;;
      *) echo "README tour: make run $a?" >&2; exit 1 ;;
    esac
  done
  printf '%s\t%s\n' "$data" "$args" >&3
  IFS= read -r reply <&4 || exit 1
  case $reply in
    export\ *) eval "$reply" ;;
    *) echo "README tour: make run DATA=$data ARGS=\"$args\": $reply" >&2; exit 1 ;;
  esac
}
tour_expect() { # tour_expect STATUS README-LINE: the status the README says
  if [ "$tour_rc" != "$1" ]; then echo "README tour: exit $tour_rc, the README says $1: $2" >&2; exit 1; fi
}
`)
	for _, blk := range blocks {
		for _, line := range strings.Split(strings.TrimRight(blk, "\n"), "\n") {
			if m := clockShown.FindStringSubmatch(line); m != nil {
				fmt.Fprintf(&b, "tour_out=$(%s); echo \"$tour_out\"\n", m[1])
				fmt.Fprintf(&b, "case $tour_out in *%s*) ;; *) echo \"README tour: the clock is not at %s, the README says it is\" >&2; exit 1 ;; esac\n", m[2], m[2])
				continue
			}
			if m := expectedExit.FindStringSubmatch(line); m != nil && !strings.HasPrefix(strings.TrimSpace(line), "#") {
				fmt.Fprintf(&b, "tour_rc=0; %s || tour_rc=$?; tour_expect %s %q\n", m[1], m[2], m[1])
				continue
			}
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// TestReadmeTour runs the README's tours top to bottom with bash, as a
// reader does: the CLI built from the tree on the PATH as bin/kmsbackup,
// the export line the server printed pasted, and the server stopped and
// started again on the data directory and with the flags each `make run`
// line names (on one address, as `make run` listens on one). Every command
// must exit 0 unless the README says it fails; a restart on the same data
// directory must print the same export line, as the README says.
func TestReadmeTour(t *testing.T) {
	dir := t.TempDir() // the checkout, as the tour sees it
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binary, filepath.Join(dir, "bin", "kmsbackup")); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	exports := map[string]string{} // data directory: the export line its server printed
	var srv *Server
	run := func(data string, args []string) string {
		t.Helper()
		if srv != nil {
			srv.Stop()
		}
		dataDir := filepath.Join(dir, data)
		srv = StartServer(t, dataDir, append(args, "--listen", listen)...)
		line := exportLine(t, srv)
		if was, ok := exports[dataDir]; ok && was != line {
			t.Fatalf("after a restart on %s the export line changed:\n%s\nwas\n%s", data, line, was)
		}
		exports[dataDir] = line
		return line
	}
	// The reader's `make run` before the tour.
	first := run("./data", nil)

	script := tourScript(tourBlocks(t)) // the export line first, as the reader pastes it
	script = strings.Replace(script, "\n", "\n"+first+"\n", 1)
	reqR, reqW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "-c", script)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	cmd.ExtraFiles = []*os.File{reqW, repR} // fd 3: make run asks; fd 4: the test answers
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A command that waits for the reader (one that needs a Ctrl-C) would
	// hold the tour forever: end the script and its commands after a while.
	var timedOut atomic.Bool
	stop := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	timer := time.AfterFunc(tourTimeout, func() { timedOut.Store(true); stop() })
	defer timer.Stop()
	t.Cleanup(stop)
	reqW.Close()
	repR.Close()
	defer repW.Close()
	restarts := 0
	requests := bufio.NewScanner(reqR)
	for requests.Scan() { // until the script ends and closes its end
		data, args, _ := strings.Cut(requests.Text(), "\t")
		line := run(data, strings.Fields(args))
		restarts++
		if _, err := fmt.Fprintln(repW, line); err != nil {
			t.Fatal(err)
		}
	}
	reqR.Close()
	err = cmd.Wait()
	if timedOut.Load() {
		t.Fatalf("the README's tour did not end within %v (a command waits for the reader?)\nlast commands:\n%s",
			tourTimeout, lastLines(readTrace(dir), 3))
	}
	if err != nil {
		t.Fatalf("the README's tour fails: %v\nstderr (last lines):\n%s\nlast commands:\n%s\nserver log (last lines):\n%s",
			err, lastLines(stderr.String(), 20), lastLines(readTrace(dir), 3), lastLines(srv.Logs(), 30))
	}
	if restarts < 3 {
		t.Fatalf("the tour restarted the server %d times: want the backup tour's start and restart and the console's", restarts)
	}
}

// readTrace is the trace of the commands the tour ran.
func readTrace(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, ".tour-trace"))
	return string(b)
}

// freeAddr is a loopback address with a port free at the time of asking.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// exportLine is the export line a dev server printed last.
func exportLine(t *testing.T, s *Server) string {
	t.Helper()
	var line string
	for _, l := range strings.Split(s.Logs(), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "export KMSBACKUP_ADDR=") {
			line = l
		}
	}
	if line == "" || !strings.Contains(line, "ADMIN_TOKEN=") {
		t.Fatalf("the server printed no export line with the admin token:\n%s", lastLines(s.Logs(), 20))
	}
	return line
}
