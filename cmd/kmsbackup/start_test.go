package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
)

// devConfig is a --dev server on dir, on a free port.
func devConfig(dir string) Config {
	return Config{Dev: true, DataDir: dir, Listen: "127.0.0.1:0", LogFormat: "text", LogLevel: "info", Clock: "real",
		EventLog: "pebble", Bus: "gochannel", DevAdminToken: "test-admin-token-0123456789"}
}

// runMain runs the server in-process on cfg and stops it; the error is
// Run's.
func runMain(t *testing.T, cfg Config) error {
	t.Helper()
	m := &Main{Config: cfg}
	err := m.Run(context.Background())
	if err == nil {
		if cerr := m.Close(); cerr != nil {
			t.Fatalf("Close: %v", cerr)
		}
	}
	return err
}

// TestStartFailureExitCodes: a start refused for a damaged store or a
// wrong master key maps to exit codes 10 and 11, with one line of message.
func TestStartFailureExitCodes(t *testing.T) {
	dir := t.TempDir()
	if err := runMain(t, devConfig(dir)); err != nil {
		t.Fatalf("first start: %v", err)
	}
	if err := runMain(t, devConfig(dir)); err != nil { // a second start, on flushed tables
		t.Fatalf("second start: %v", err)
	}

	// Another master key.
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	keyFile := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(k)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := devConfig(dir)
	cfg.MasterKeyFile = keyFile
	err := runMain(t, cfg)
	if code := exitCode(err); code != exitWrongMasterKey {
		t.Fatalf("start with another master key: exit %d (%v), want %d", code, err, exitWrongMasterKey)
	}
	if msg := errorMessage(err); strings.Contains(msg, "\n") || !strings.Contains(msg, "master key") {
		t.Fatalf("message %q: want one line about the master key", msg)
	}

	// A damaged table of the log store.
	tables, err := filepath.Glob(filepath.Join(dir, "db", "*.sst"))
	if err != nil || len(tables) == 0 {
		t.Fatalf("no sstable in db/: %v", err)
	}
	b, err := os.ReadFile(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0xff
	if err := os.WriteFile(tables[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	err = runMain(t, devConfig(dir))
	if code := exitCode(err); code != exitDamaged {
		t.Fatalf("start on a damaged table: exit %d (%v), want %d", code, err, exitDamaged)
	}
	if msg := errorMessage(err); strings.Contains(msg, "\n") || !strings.Contains(msg, tables[0]) {
		t.Fatalf("message %q: want one line naming %s", msg, tables[0])
	}
}

// TestFatalExitCode: a store's fatal error while running exits with the
// damage code when it is damage, as unavailable otherwise.
func TestFatalExitCode(t *testing.T) {
	if got := fatalExitCode(domain.Corruption("bad block")); got != exitDamaged {
		t.Errorf("fatal damage exits %d, want %d", got, exitDamaged)
	}
	if got := fatalExitCode(errors.New("MANIFEST sync failed")); got != exitUnavailable {
		t.Errorf("fatal I/O error exits %d, want %d", got, exitUnavailable)
	}
}

// TestAcceptLostLogPositionsIsForTheEmbeddedLog: the flag concerns the
// embedded log only.
func TestAcceptLostLogPositionsIsForTheEmbeddedLog(t *testing.T) {
	cfg := devConfig(t.TempDir())
	cfg.AcceptLostLogPositions = true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with the embedded log: %v", err)
	}
	cfg.EventLog = "nats://127.0.0.1:4222"
	cfg.MasterKeyEnv = "x"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--accept-lost-log-positions") {
		t.Fatalf("with a shared log: %v, want a refusal naming the flag", err)
	}
}
