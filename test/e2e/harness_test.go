package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the kmsbackup binary built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kmsbackup-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "kmsbackup")
	build := exec.Command("go", "build", "-o", binary, "github.com/kmsbackup/kmsbackup/cmd/kmsbackup")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build kmsbackup:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// AdminToken is the fixed --dev-admin-token of test servers.
const AdminToken = "test-admin-token-0123456789"

// Server is a running `kmsbackup server --dev` process.
type Server struct {
	t       testing.TB
	DataDir string
	Addr    string // host:port
	DevTok  string
	cmd     *exec.Cmd
	mu      sync.Mutex
	logs    bytes.Buffer // everything the server wrote to stdout and stderr
	done    chan struct{}
	extra   []string
}

// StartServer starts a dev server on a free port over dataDir (a new temp dir
// when empty).
func StartServer(t testing.TB, dataDir string, extra ...string) *Server {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	s := &Server{t: t, DataDir: dataDir, extra: extra}
	s.start()
	t.Cleanup(func() { s.Stop() })
	return s
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (s *Server) start() {
	s.t.Helper()
	if err := s.launch(); err != nil {
		s.t.Fatal(err)
	}
}

// launch starts the server process and waits until it prints its address
// and token; the error says why it did not, with what it printed.
func (s *Server) launch() error {
	t := s.t
	t.Helper()
	args := append([]string{"server", "--dev", "--data-dir", s.DataDir, "--listen", "127.0.0.1:0",
		"--dev-admin-token", AdminToken, "--log-level", "debug"}, s.extra...)
	cmd := exec.Command(binary, args...)
	cmd.Env = cleanEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = lockedWriter{&s.mu, &s.logs}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs.WriteString(line + "\n")
			if f, ok := strings.CutPrefix(strings.TrimSpace(line), "kmsbackup --dev is listening on "); ok {
				s.Addr = strings.TrimPrefix(f, "http://")
			}
			if f, ok := strings.CutPrefix(strings.TrimSpace(line), "account dev token:"); ok {
				s.DevTok = strings.TrimSpace(f)
			}
			s.mu.Unlock()
			if !signalled && strings.HasPrefix(line, "Development mode") {
				signalled = true
				close(ready)
			}
		}
		if !signalled {
			close(ready)
		}
	}()
	go func() { _ = cmd.Wait(); close(s.done) }()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-s.done
		s.cmd = nil
		return fmt.Errorf("server did not start; output:\n%s", s.Logs())
	}
	if s.Addr == "" || s.DevTok == "" {
		_ = cmd.Process.Kill()
		<-s.done
		s.cmd = nil
		return fmt.Errorf("server did not print its address and token; output:\n%s", s.Logs())
	}
	return nil
}

// Logs returns everything the server printed so far.
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// Stop stops the server with SIGTERM and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("server did not stop on SIGTERM")
	}
	s.cmd = nil
}

// Restart stops the server and starts it again on the same data directory,
// with the same flags but --clock-start: a manual clock continues from the
// time its log holds (an earlier start is refused).
func (s *Server) Restart() {
	s.Stop()
	s.startAgain()
}

// startAgain starts the server again on its data directory after Stop or
// Kill. A manual clock continues from the log, so the first start's
// --clock-start is left out (an earlier start is refused).
func (s *Server) startAgain() {
	var kept []string
	for i := 0; i < len(s.extra); i++ {
		if s.extra[i] == "--clock-start" {
			i++
			continue
		}
		kept = append(kept, s.extra[i])
	}
	s.extra = kept
	s.start()
}

func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KMSBACKUP_") {
			env = append(env, e)
		}
	}
	return env
}

// Result is a finished CLI run.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// CLI runs the kmsbackup command line against the server with a token.
func (s *Server) CLI(token string, stdin string, args ...string) Result {
	s.t.Helper()
	// Long manual-clock advances do thousands of checkpoints in one call.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cleanEnv(), "KMSBACKUP_ADDR=http://"+s.Addr, "KMSBACKUP_TOKEN="+token)
	cmd.Stdin = strings.NewReader(stdin)
	return runCmd(s.t, cmd)
}

// runCmd runs cmd to its end and returns its exit code and output.
func runCmd(tb testing.TB, cmd *exec.Cmd) Result {
	tb.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		tb.Fatalf("run %v: %v", cmd.Args, err)
	}
	return Result{Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// MustJSON runs a CLI command with -o json, requires success, and decodes
// its output.
func (s *Server) MustJSON(token string, args ...string) map[string]any {
	s.t.Helper()
	r := s.CLI(token, "", append(args, "-o", "json")...)
	if r.Code != 0 {
		s.t.Fatalf("kmsbackup %s: exit %d\nstderr: %s", strings.Join(args, " "), r.Code, r.Stderr)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		s.t.Fatalf("kmsbackup %s: output is not one JSON document: %v\n%s", strings.Join(args, " "), err, r.Stdout)
	}
	return v
}

// MustFail runs a CLI command that must fail with exit code want and an
// error message containing every fragment.
func (s *Server) MustFail(token string, want int, fragments []string, args ...string) Result {
	s.t.Helper()
	r := s.CLI(token, "", args...)
	if r.Code != want {
		s.t.Fatalf("kmsbackup %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, want, r.Stdout, r.Stderr)
	}
	for _, f := range fragments {
		if !strings.Contains(r.Stderr, f) {
			s.t.Fatalf("kmsbackup %s: stderr %q does not mention %q", strings.Join(args, " "), r.Stderr, f)
		}
	}
	return r
}

// CLIUntil runs a streaming CLI command until it has printed n lines, then
// interrupts it and returns what it printed.
func (s *Server) CLIUntil(token string, n int, args ...string) string {
	s.t.Helper()
	return s.cliUntil(token, fmt.Sprintf("%d lines", n), func(lines []string) bool { return len(lines) >= n }, args...)
}

// CLIUntilLine runs a streaming CLI command until it has printed a line
// containing fragment, then interrupts it and returns what it printed.
func (s *Server) CLIUntilLine(token, fragment string, args ...string) string {
	s.t.Helper()
	return s.cliUntil(token, fmt.Sprintf("a line with %q", fragment), func(lines []string) bool {
		return len(lines) > 0 && strings.Contains(lines[len(lines)-1], fragment)
	}, args...)
}

// cliUntil runs a streaming CLI command until done says that what it has
// printed is enough (want says what that is), for at most 30 seconds.
func (s *Server) cliUntil(token, want string, done func(lines []string) bool, args ...string) string {
	s.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), "KMSBACKUP_ADDR=http://"+s.Addr, "KMSBACKUP_TOKEN="+token)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out []string
	ok := done(out)
	timeout := time.After(30 * time.Second)
loop:
	for !ok {
		select {
		case l, more := <-lines:
			if !more {
				break loop
			}
			out = append(out, l)
			ok = done(out)
		case <-timeout:
			break loop
		}
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	go func() {
		for range lines {
		}
	}()
	_ = cmd.Wait()
	if !ok {
		s.t.Fatalf("kmsbackup %s printed %d lines, never %s; stderr: %s", strings.Join(args, " "), len(out), want, errb.String())
	}
	return strings.Join(out, "\n")
}
