package envelope

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kmsbackup/kmsbackup/domain"
)

// MasterKeySize is the length of the master key in bytes (AES-256).
const MasterKeySize = 32

// MasterKeyEnv is the environment variable that may hold the master key.
const MasterKeyEnv = "KMSBACKUP_MASTER_KEY"

// DevMasterKeyFile is the name of the master key file --dev mode generates
// in the data directory.
const DevMasterKeyFile = "master.key"

// maxKeyFile bounds how much of a key file is read: a valid one is 45 bytes
// of base64 plus whitespace.
const maxKeyFile = 4096

const howToProvide = "set " + MasterKeyEnv + " or pass --master-key-file FILE, holding the base64 of 32 random bytes " +
	"(for example: head -c 32 /dev/urandom | base64 > master.key && chmod 600 master.key); " +
	"--dev generates one in the data directory"

// LoadMasterKey returns the master key from exactly one source: the key
// file named by file (--master-key-file), or envValue, the value of
// KMSBACKUP_MASTER_KEY. Either holds the standard base64 encoding of exactly
// 32 bytes; surrounding whitespace is ignored. A key file must not be
// accessible to group or others.
//
// Errors wrap domain.ErrInvalidArgument: both sources or neither given, a
// key file that cannot be read or is too widely readable, or a value that is
// not base64 of 32 bytes. They never contain key bytes.
func LoadMasterKey(file string, envValue string) ([]byte, error) {
	const op = "envelope: load master key"
	switch {
	case file != "" && envValue != "":
		return nil, domain.Errorf(domain.ErrInvalidArgument, op, "", "unset one of them",
			"both --master-key-file and %s are set; give exactly one", MasterKeyEnv)
	case file == "" && envValue == "":
		return nil, domain.Errorf(domain.ErrInvalidArgument, op, "", howToProvide, "no master key given")
	case envValue != "":
		return parseMasterKey(op, MasterKeyEnv, envValue)
	}
	text, err := readKeyFile(op, file)
	if err != nil {
		return nil, err
	}
	return parseMasterKey(op, file, text)
}

// readKeyFile reads a key file after checking, on the opened file, that only
// its owner can access it.
func readKeyFile(op, file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", domain.Errorf(domain.ErrInvalidArgument, op, file, howToProvide, "cannot open key file: %v", pathless(err))
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", domain.Errorf(domain.ErrInvalidArgument, op, file, "", "cannot stat key file: %v", pathless(err))
	}
	if !info.Mode().IsRegular() {
		return "", domain.Errorf(domain.ErrInvalidArgument, op, file, "", "key file is not a regular file (mode %v)", info.Mode())
	}
	// Windows has no Unix permission bits to check.
	if perm := info.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return "", domain.Errorf(domain.ErrInvalidArgument, op, file, "chmod 600 "+file,
			"key file is accessible by group or others (mode %04o)", perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return "", domain.Errorf(domain.ErrInvalidArgument, op, file, "", "cannot read key file: %v", pathless(err))
	}
	if len(b) > maxKeyFile {
		return "", domain.Errorf(domain.ErrInvalidArgument, op, file, howToProvide, "key file is larger than %d bytes", maxKeyFile)
	}
	return string(b), nil
}

// pathless drops the path from a *fs.PathError: the file is already named
// in the error's Item.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parseMasterKey decodes base64 of exactly MasterKeySize bytes. Its errors
// describe the shape of the value only, never its content.
func parseMasterKey(op, source, text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, domain.Errorf(domain.ErrInvalidArgument, op, source, howToProvide, "master key is empty")
	}
	key, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		// The decoder's error names an offset only; still, say nothing of
		// the value.
		return nil, domain.Errorf(domain.ErrInvalidArgument, op, source, howToProvide, "master key is not valid standard base64")
	}
	if len(key) != MasterKeySize {
		n := len(key)
		clear(key)
		return nil, domain.Errorf(domain.ErrInvalidArgument, op, source, howToProvide,
			"master key decodes to %d bytes, want %d", n, MasterKeySize)
	}
	return key, nil
}

// EnsureDevMasterKey returns the --dev master key kept in
// dataDir/master.key, generating a random one when the file does not exist.
// It is for --dev mode only: the key lives next to the data it protects.
//
// The file is created with mode 0600 and complete contents in one step: the
// key is written and synced to a temporary file (opened with O_EXCL), which
// is then hard-linked to its final name; a link, like O_EXCL, fails if the
// name exists, so two processes starting at once end up with the same key,
// and a crash never leaves a half-written key file behind. created reports
// whether this call generated the key. An existing file is loaded with
// LoadMasterKey's checks and never overwritten.
func EnsureDevMasterKey(dataDir string) (key []byte, path string, created bool, err error) {
	const op = "envelope: dev master key"
	path = filepath.Join(dataDir, DevMasterKeyFile)
	// Only a key file that does not exist is created; one that exists is
	// loaded, and when unusable refused, never overwritten. (Loading first
	// and looking afterwards would take another process's key, linked in
	// between, for an unusable one.)
	if _, statErr := os.Lstat(path); !errors.Is(statErr, fs.ErrNotExist) {
		key, err = LoadMasterKey(path, "")
		return key, path, false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, path, false, fmt.Errorf("%s: create data directory: %w", op, err)
	}

	key = make([]byte, MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, path, false, fmt.Errorf("%s: draw random key: %w", op, err)
	}
	text := []byte(base64.StdEncoding.EncodeToString(key) + "\n")
	defer clear(text)

	tmp, err := os.CreateTemp(dataDir, "."+DevMasterKeyFile+".tmp-*") // O_EXCL, mode 0600
	if err != nil {
		clear(key)
		return nil, path, false, fmt.Errorf("%s: create temporary file: %w", op, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(text)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		clear(key)
		return nil, path, false, fmt.Errorf("%s: write temporary file: %w", op, werr)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		clear(key)
		if errors.Is(err, fs.ErrExist) { // another process won the race: use its key
			key, err = LoadMasterKey(path, "")
			return key, path, false, err
		}
		return nil, path, false, fmt.Errorf("%s: link %s: %w", op, path, err)
	}
	if err := syncDir(dataDir); err != nil {
		clear(key)
		return nil, path, false, fmt.Errorf("%s: sync %s: %w", op, dataDir, err)
	}
	return key, path, true, nil
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
