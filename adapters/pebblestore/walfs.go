package pebblestore

import (
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// walFS reserves the blocks of write-ahead log files on disk a little
// ahead of their writes (see reserveAhead), in place of Pebble, which
// reserves each log file in steps of 110% of the memtable size (fallocate
// with FALLOC_FL_KEEP_SIZE): about 74 MiB with the store's 64 MiB
// memtables, however little a file holds. Pebble starts with small
// memtables (each with a log file of its own) and keeps up to three used
// log files to recycle, so that a data directory of 11 MB of files, both
// databases together, took 451 MB (test/e2e TestDiskUseCloseToTheData).
// Reserving nothing made synced appends slower (BenchmarkWALReserve in
// docs/BENCHMARKS.md): each append then extends the file's allocation.
// Every other file and call goes to the wrapped FS unchanged.
type walFS struct {
	vfs.FS
	// ahead says how far ahead of its writes a log file holding written
	// bytes is reserved; nil reserves nothing (for the benchmark).
	ahead func(written int64) int64
}

// reserveAhead is how far ahead of its writes the store reserves a log
// file holding written bytes: an eighth of that, at least 1 MiB and at most
// 4 MiB. So a log file takes at most 1 MiB or an eighth more than it holds,
// and a growing one is extended once per MiB at most. With 64 KiB at least,
// 16 synced appenders on a new store were slower than with Pebble's own
// reservation (docs/BENCHMARKS.md, "Disk use").
func reserveAhead(written int64) int64 { return min(max(written/8, 1<<20), 4<<20) }

func isWAL(name string) bool { return strings.HasSuffix(name, ".log") }

func (fs walFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil || !isWAL(name) {
		return f, err
	}
	return &walFile{File: f, ahead: fs.ahead}, nil
}

func (fs walFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil || !isWAL(newname) {
		return f, err
	}
	return &walFile{File: f, ahead: fs.ahead}, nil
}

// Unwrap returns the wrapped FS (vfs.Root).
func (fs walFS) Unwrap() vfs.FS { return fs.FS }

// walFile is a write-ahead log file written from its start (a new one, or
// a recycled one overwritten), which reserves its blocks ahead of its
// writes. Pebble writes a log file from one goroutine.
type walFile struct {
	vfs.File
	ahead             func(written int64) int64
	written, reserved int64
}

func (f *walFile) Write(p []byte) (int, error) {
	if end := f.written + int64(len(p)); f.ahead != nil && end > f.reserved {
		next := end + f.ahead(end)
		// Reserving is an optimisation: a file system that cannot
		// allocates as it writes.
		_ = f.File.Preallocate(f.reserved, next-f.reserved)
		f.reserved = next
	}
	n, err := f.File.Write(p)
	f.written += int64(n)
	return n, err
}

// Preallocate ignores Pebble's reservation (see walFS).
func (*walFile) Preallocate(int64, int64) error { return nil }
