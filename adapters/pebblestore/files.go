package pebblestore

import (
	"errors"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The package keeps two small files of its own beside Pebble's in each
// database directory (Pebble ignores names it did not make):
//
//	kmsbackup-log-mark       the event log's high-water mark (mark.go), in the log store only
//	kmsbackup-checked-tables the sstables whose checksums were validated (tables.go)
//
// Both are replaced whole, never edited in place (writeFileAtomic), and both
// are small: a line, and a line per live sstable.

// maxSmallFile bounds what readSmallFile reads.
const maxSmallFile = 16 << 20

// writeFileAtomic replaces dir/name with data: it writes and syncs a
// temporary file, renames it over name and syncs the directory, so that a
// crash leaves either the old file or the new one, whole.
func writeFileAtomic(fs vfs.FS, dir, name string, data []byte) error {
	tmp := fs.PathJoin(dir, name+".tmp")
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = fs.Remove(tmp)
		return err
	}
	if err := fs.Rename(tmp, fs.PathJoin(dir, name)); err != nil {
		_ = fs.Remove(tmp)
		return err
	}
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// readSmallFile returns the contents of path; ok is false when it does not
// exist.
func readSmallFile(fs vfs.FS, path string) (data []byte, ok bool, err error) {
	f, err := fs.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, maxSmallFile))
	if err != nil {
		return nil, false, err
	}
	return data, true, nil
}

// dirExists reports whether dir exists on fs.
func dirExists(fs vfs.FS, dir string) (bool, error) {
	_, err := fs.Stat(dir)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, err
}
