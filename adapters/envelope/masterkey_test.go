package envelope

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
)

// MustWriteFile writes content to a new file in dir with mode perm.
func MustWriteFile(tb testing.TB, dir, name, content string, perm os.FileMode) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), perm); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // WriteFile's mode is filtered by the umask
		tb.Fatal(err)
	}
	return p
}

func TestLoadMasterKey(t *testing.T) {
	key := MustMasterKey(t)
	b64 := base64.StdEncoding.EncodeToString(key)
	short := base64.StdEncoding.EncodeToString(key[:31])
	long := base64.StdEncoding.EncodeToString(append(bytes.Clone(key), 0))
	dir := t.TempDir()
	good := MustWriteFile(t, dir, "good.key", "\n  "+b64+"\n\n", 0o600)
	readOnly := MustWriteFile(t, dir, "ro.key", b64, 0o400)
	groupReadable := MustWriteFile(t, dir, "group.key", b64, 0o640)
	worldReadable := MustWriteFile(t, dir, "world.key", b64, 0o644)
	otherOnly := MustWriteFile(t, dir, "other.key", b64, 0o604)
	groupWritable := MustWriteFile(t, dir, "gw.key", b64, 0o620)
	shortFile := MustWriteFile(t, dir, "short.key", short, 0o600)
	emptyFile := MustWriteFile(t, dir, "empty.key", "", 0o600)
	hugeFile := MustWriteFile(t, dir, "huge.key", strings.Repeat("A", 10000), 0o600)
	notBase64File := MustWriteFile(t, dir, "raw.key", string(key), 0o600)

	tests := []struct {
		name    string
		file    string
		env     string
		ok      bool
		contain []string // in the error message
	}{
		{name: "env", env: b64, ok: true},
		{name: "env with whitespace", env: " \t" + b64 + "\n", ok: true},
		{name: "file 0600 with whitespace", file: good, ok: true},
		{name: "file 0400", file: readOnly, ok: true},
		{name: "neither", contain: []string{"no master key", MasterKeyEnv, "--master-key-file", "--dev"}},
		{name: "both", file: good, env: b64, contain: []string{"both", MasterKeyEnv, "--master-key-file"}},
		{name: "env not base64", env: "not*base64!", contain: []string{MasterKeyEnv, "base64"}},
		{name: "env url-safe base64", env: strings.NewReplacer("+", "-", "/", "_").Replace(b64) + "-_", contain: []string{"base64"}},
		{name: "env 31 bytes", env: short, contain: []string{"31 bytes", "want 32"}},
		{name: "env 33 bytes", env: long, contain: []string{"33 bytes", "want 32"}},
		{name: "env whitespace only", env: " \n", contain: []string{"empty"}},
		{name: "file group readable", file: groupReadable, contain: []string{"chmod 600 " + groupReadable, "0640"}},
		{name: "file world readable", file: worldReadable, contain: []string{"chmod 600 " + worldReadable, "0644"}},
		{name: "file readable by others only", file: otherOnly, contain: []string{"chmod 600 " + otherOnly}},
		{name: "file group writable", file: groupWritable, contain: []string{"chmod 600 " + groupWritable}},
		{name: "file missing", file: filepath.Join(dir, "missing.key"), contain: []string{"missing.key", "no such file"}},
		{name: "file is a directory", file: dir, contain: []string{"not a regular file"}},
		{name: "file 31 bytes", file: shortFile, contain: []string{shortFile, "31 bytes"}},
		{name: "file empty", file: emptyFile, contain: []string{"empty"}},
		{name: "file huge", file: hugeFile, contain: []string{"larger than"}},
		{name: "file holds raw bytes", file: notBase64File, contain: []string{"base64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadMasterKey(tt.file, tt.env)
			if tt.ok {
				if err != nil {
					t.Fatalf("LoadMasterKey: %v", err)
				}
				if !bytes.Equal(got, key) {
					t.Fatalf("LoadMasterKey returned a different key (%d bytes)", len(got))
				}
				return
			}
			if !errors.Is(err, domain.ErrInvalidArgument) {
				t.Fatalf("error %v, want ErrInvalidArgument", err)
			}
			if got != nil {
				t.Errorf("returned %d key bytes along with the error", len(got))
			}
			msg := err.Error()
			for _, c := range tt.contain {
				if !strings.Contains(msg, c) {
					t.Errorf("error %q does not contain %q", msg, c)
				}
			}
			for _, secret := range []string{b64, short, long, string(key), "not*base64!"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error message contains the key value")
				}
			}
		})
	}
}

func TestEnsureDevMasterKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	key, path, created, err := EnsureDevMasterKey(dir)
	if err != nil {
		t.Fatalf("EnsureDevMasterKey: %v", err)
	}
	if !created || path != filepath.Join(dir, DevMasterKeyFile) || len(key) != MasterKeySize {
		t.Fatalf("got created=%v path=%s len=%d, want a new %d-byte key at %s",
			created, path, len(key), MasterKeySize, filepath.Join(dir, DevMasterKeyFile))
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %04o, want 0600", perm)
	}
	if loaded, err := LoadMasterKey(path, ""); err != nil || !bytes.Equal(loaded, key) {
		t.Errorf("the file does not hold the returned key (err %v)", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data directory holds %d entries, want only %s", len(entries), DevMasterKeyFile)
	}

	again, path2, created2, err := EnsureDevMasterKey(dir)
	if err != nil || created2 || path2 != path || !bytes.Equal(again, key) {
		t.Errorf("second call: err %v created %v path %s equal %v; want the same key reused", err, created2, path2, bytes.Equal(again, key))
	}

	// A present but unusable file is reported, never replaced.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	_, _, _, err = EnsureDevMasterKey(dir)
	if !errors.Is(err, domain.ErrInvalidArgument) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("with a 0644 key file: %v, want the chmod hint", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("an unusable key file was overwritten")
	}
}

func TestEnsureDevMasterKeyRace(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	keys := make([][]byte, n)
	created := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var err error
			keys[i], _, created[i], err = EnsureDevMasterKey(dir)
			if err != nil {
				t.Errorf("EnsureDevMasterKey: %v", err)
			}
		})
	}
	wg.Wait()
	winners := 0
	for i := range n {
		if created[i] {
			winners++
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Errorf("caller %d got a different key", i)
		}
	}
	if winners != 1 {
		t.Errorf("%d callers created the key, want exactly 1", winners)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries after the race, want 1", len(entries))
	}
}
