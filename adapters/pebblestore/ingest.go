package pebblestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Large writes skip the write-ahead log: their keys are written, sorted,
// into tables in the database's directory, which Pebble then ingests (links
// into its levels) in one atomic, durable step. Written once instead of
// three times (log, flush, compaction), and with no memtable copy: a
// base's rows in the read models (Projections.Load) and large blobs
// (Store.PutBlob). Their keys are new, so the tables land in the bottom
// level, under nothing.

// maxLoadRuns bounds the runs (tables) of one load.
const maxLoadRuns = 8

// loadFilePrefix names the files a load writes before it ingests them; a
// database's open removes those a crash left (removeLoadLeftovers).
const loadFilePrefix = "kmsbackup-load-"

// tableLoad is the tables of one load being written.
type tableLoad struct {
	op       string
	fs       vfs.FS
	prefix   string
	opts     sstable.WriterOptions
	runs     [maxLoadRuns]*loadRun
	ingested bool
}

// loadRun is one run's table.
type loadRun struct {
	path string
	w    *sstable.Writer
	last []byte
	keys int
}

// newTableLoad starts a load of tables written with opts in dir on fs;
// op names it in errors.
func newTableLoad(op string, fs vfs.FS, dir string, opts sstable.WriterOptions) *tableLoad {
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &tableLoad{op: op, fs: fs, prefix: fs.PathJoin(dir, loadFilePrefix+hex.EncodeToString(id[:])), opts: opts}
}

// add adds key (as stored) with value to run. Errors:
// domain.ErrInvalidArgument for a run outside [0, maxLoadRuns) or a key
// not after the run's last; domain.ErrUnavailable when the table cannot be
// written.
func (l *tableLoad) add(run int, key, value []byte) error {
	if run < 0 || run >= maxLoadRuns {
		return domain.Invalid(l.op, "run %d is not in [0, %d)", run, maxLoadRuns)
	}
	r := l.runs[run]
	if r == nil {
		path := fmt.Sprintf("%s-%d.sst", l.prefix, run)
		f, err := l.fs.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			return storeErr(l.op, err)
		}
		r = &loadRun{path: path, w: sstable.NewWriter(objstorageprovider.NewFileWritable(f), l.opts)}
		l.runs[run] = r
	}
	if r.keys > 0 && bytes.Compare(key, r.last) <= 0 {
		return domain.Invalid(l.op, "run %d: a key out of order", run)
	}
	var err error
	if value == nil {
		err = r.w.Delete(key)
	} else {
		err = r.w.Set(key, value)
	}
	if err != nil {
		return storeErr(l.op, err)
	}
	r.last = append(r.last[:0], key...)
	r.keys++
	return nil
}

// ingest closes the runs' tables (each synced) and has db ingest them
// all at once. Errors: domain.ErrInvalidArgument when the runs overlap;
// domain.ErrUnavailable when a table cannot be closed or ingested.
func (l *tableLoad) ingest(ctx context.Context, db *pebble.DB) error {
	var paths []string
	for i, r := range l.runs {
		if r == nil {
			continue
		}
		err := r.w.Close()
		r.w = nil
		if err != nil {
			return storeErr(fmt.Sprintf("%s: close run %d", l.op, i), err)
		}
		paths = append(paths, r.path)
	}
	if len(paths) == 0 {
		return nil
	}
	if err := db.Ingest(ctx, paths); err != nil {
		if strings.Contains(err.Error(), "overlap") {
			return domain.Invalid(l.op, "the runs overlap: %s", firstLine(err.Error()))
		}
		return storeErr(l.op, err)
	}
	l.ingested = true // Pebble removed the files it linked
	return nil
}

// discard removes the tables of a load that was not ingested.
func (l *tableLoad) discard() {
	if l.ingested {
		return
	}
	for _, r := range l.runs {
		if r == nil {
			continue
		}
		if r.w != nil {
			_ = r.w.Close()
		}
		_ = l.fs.Remove(r.path)
	}
}

// removeLoadLeftovers removes the tables of loads a crash interrupted.
func removeLoadLeftovers(fs vfs.FS, dir string) error {
	names, err := fs.List(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasPrefix(n, loadFilePrefix) {
			if err := fs.Remove(fs.PathJoin(dir, n)); err != nil {
				return err
			}
		}
	}
	return nil
}
