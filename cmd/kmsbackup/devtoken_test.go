package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
)

// TestDevAdminTokenSurvivesRestarts: the --dev admin token is kept in the
// data directory (mode 0600), as the account token is, so that a restart
// does not invalidate the one printed before; --dev-admin-token still
// overrides it. (Close is idempotent: startMain closes again at the end.)
func TestDevAdminTokenSurvivesRestarts(t *testing.T) {
	dir := t.TempDir()
	cfg := devConfig(dir)
	cfg.DevAdminToken = ""
	m := startMain(t, cfg)
	first := m.AdminToken
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, "admin-token"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin-token file: %v, %v; want mode 0600", info, err)
	}

	m = startMain(t, cfg)
	if m.AdminToken != first || first == "" {
		t.Fatalf("admin token after a restart %q, want the first one %q", m.AdminToken, first)
	}
	c := &httpapi.Client{Base: "http://" + m.Addr(), Token: first}
	if who, err := c.WhoAmI(context.Background()); err != nil || !who.Admin {
		t.Fatalf("whoami with the kept admin token: %+v, %v", who, err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	cfg.DevAdminToken = "fixed-admin-token-0123456789"
	m = startMain(t, cfg)
	if m.AdminToken != cfg.DevAdminToken {
		t.Errorf("with --dev-admin-token: %q", m.AdminToken)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}
