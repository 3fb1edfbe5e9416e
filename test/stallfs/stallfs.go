package stallfs

import (
	"slices"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// FS is a Pebble file system that, while stalled, holds back the creation
// of sstables: flushes cannot finish, so the write-ahead log files they
// would retire stay and pile up, as they do when a process is killed
// before its flushes finish. Everything else passes through. Safe for
// concurrent use.
type FS struct {
	vfs.FS
	mu      sync.Mutex
	release chan struct{} // nil: not stalled
}

// New wraps fs (vfs.Default for the real disk, vfs.NewCrashableMem() in
// memory).
func New(fs vfs.FS) *FS { return &FS{FS: fs} }

// Stall holds back every sstable created from now on.
func (f *FS) Stall() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.release == nil {
		f.release = make(chan struct{})
	}
}

// Unstall lets the held-back sstables be created. Call it before closing
// the database, whose close waits for its flushes.
func (f *FS) Unstall() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.release != nil {
		close(f.release)
		f.release = nil
	}
}

// Create creates name, waiting while stalled when it is an sstable.
func (f *FS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	if strings.HasSuffix(name, ".sst") {
		f.mu.Lock()
		release := f.release
		f.mu.Unlock()
		if release != nil {
			<-release
		}
	}
	return f.FS.Create(name, cat)
}

// WALs lists the write-ahead log files in dir, oldest first. The newest is
// the one being written; a recycled file kept for reuse has a lower number
// than any live one.
func WALs(fs vfs.FS, dir string) ([]string, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, ".log") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}
