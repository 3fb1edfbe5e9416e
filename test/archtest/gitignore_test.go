package archtest

import (
	"errors"
	"os/exec"
	"testing"
)

// TestGitignoreCoversTheTour: what the README's tour and `make run` leave
// in a checkout (data directories with their master key and tokens, backup
// data files, their data keys, the built binary) is never committed by
// mistake, wherever it was made; the sources are not ignored.
func TestGitignoreCoversTheTour(t *testing.T) {
	root := mustModule(t).root // its directories are the inputs of the cached result
	if err := exec.Command("git", "-C", root, "rev-parse", "--git-dir").Run(); err != nil {
		t.Skip("not a git checkout")
	}
	ignored := []string{
		"data/db/000001.log", "data/master.key", "data/dev-token", // make run
		"data-tour/master.key",                              // make run DATA=./data-tour
		"cmd/kmsbackup/data/projections/LOCK",               // go run ./cmd/kmsbackup server --dev from another directory
		"may3.kmsbk", "may3b.key", "tmp/backups/prod.kmsbk", // download --out, --key-out
		"admin.token",   // --admin-token-file
		"bin/kmsbackup", // make build
	}
	kept := []string{
		"cmd/kmsbackup/main.go", "projections/backupdata/doc.go", "adapters/envelope/masterkey.go",
		"docs/img/console-backups.png", "test/e2e/testdata/axe-4.14.1.min.js", "Makefile", "go.sum",
	}
	check := func(path string) bool {
		err := exec.Command("git", "-C", root, "check-ignore", "-q", "--no-index", path).Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return true
		case errors.As(err, &ee) && ee.ExitCode() == 1:
			return false
		}
		t.Fatalf("git check-ignore %s: %v", path, err)
		return false
	}
	for _, p := range ignored {
		if !check(p) {
			t.Errorf(".gitignore does not cover %s", p)
		}
	}
	for _, p := range kept {
		if check(p) {
			t.Errorf(".gitignore covers %s, a source file", p)
		}
	}
}
