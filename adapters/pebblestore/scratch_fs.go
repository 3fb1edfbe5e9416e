package pebblestore

import "github.com/cockroachdb/pebble/v2/vfs"

// unsyncedFS is the file system of scratch stores: its syncs do nothing.
// A scratch is thrown away after its read, and at every start, so nothing
// in it ever needs to reach the disk: its flushed and ingested tables, its
// manifest and its directory stay in the page cache until the kernel
// writes them back (or the scratch is removed first), where a sync would
// wait for the disk each time. Used as a pointer: Pebble compares file
// systems (an ingest links a file only within one).
type unsyncedFS struct {
	vfs.FS
}

func (fs *unsyncedFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return unsynced(fs.FS.Create(name, category))
}

func (fs *unsyncedFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return unsynced(fs.FS.OpenReadWrite(name, category, opts...))
}

func (fs *unsyncedFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return unsynced(fs.FS.ReuseForWrite(oldname, newname, category))
}

func (fs *unsyncedFS) OpenDir(name string) (vfs.File, error) {
	return unsynced(fs.FS.OpenDir(name))
}

func unsynced(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return unsyncedFile{f}, nil
}

// unsyncedFile is a file of unsyncedFS.
type unsyncedFile struct {
	vfs.File
}

func (unsyncedFile) Sync() error     { return nil }
func (unsyncedFile) SyncData() error { return nil }

func (unsyncedFile) SyncTo(int64) (fullSync bool, err error) { return false, nil }
