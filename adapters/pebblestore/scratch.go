package pebblestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Scratch stores: temporary Pebble databases, one per read, each in a
// directory of its own under the scratch directory (<data-dir>/scratch),
// with no write-ahead log, a block cache of its own (64 MiB by default:
// the replay of a day reads beneath every deletion into the ingested base,
// and the pass over the state reads it all) and small memtables, removed
// when the read ends. Nothing in them needs to survive a crash: a scratch
// directory left by one is removed when the next Scratches opens.

// Defaults of ScratchOptions.
const (
	DefaultScratchCache    = 64 << 20
	DefaultScratchMemTable = 8 << 20
	// scratchBatchBytes is how much a scratch buffers before it commits.
	scratchBatchBytes = 1 << 20
	// scratchNodeBytes is what Pebble reckons a record takes in a
	// memtable besides its key and value (arenaskl.MaxNodeSize: a node of
	// the largest height), about 190 bytes.
	scratchNodeBytes = 256
)

const opScratch = "scratch"

// scratchBlockSize is the data block size of a scratch's tables (and so of
// the bases written from one): a scratch is read in order, where larger
// blocks mean fewer block loads and index steps, and compress better.
const scratchBlockSize = 32 << 10

// ScratchOptions configures NewScratches. The zero value uses the
// defaults.
type ScratchOptions struct {
	// FS is the file system; nil means the real disk.
	FS vfs.FS
	// CacheSize and MemTableSize are each scratch's block cache and
	// memtable, in bytes; 0 means DefaultScratchCache and
	// DefaultScratchMemTable.
	CacheSize    int64
	MemTableSize uint64
	// Logger receives Pebble's background errors; nil: slog.Default().
	Logger *slog.Logger
}

// Scratches makes scratch stores (commands.ScratchStores) in one
// directory. Safe for concurrent use.
type Scratches struct {
	dir  string
	opts ScratchOptions
}

var _ commands.ScratchStores = (*Scratches)(nil)

// NewScratches returns the scratch stores of dir, creating dir and
// removing whatever an earlier process left in it (no scratch outlives its
// process). Errors: domain.ErrUnavailable.
func NewScratches(dir string, opts ScratchOptions) (*Scratches, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultScratchCache
	}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = DefaultScratchMemTable
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := opts.FS.RemoveAll(dir); err != nil {
		return nil, storeErr("clear the scratch directory "+dir, err)
	}
	if err := opts.FS.MkdirAll(dir, 0o700); err != nil {
		return nil, storeErr("make the scratch directory "+dir, err)
	}
	opts.FS = &unsyncedFS{FS: opts.FS} // nothing of a scratch needs to reach the disk
	return &Scratches{dir: dir, opts: opts}, nil
}

// OpenScratch makes an empty scratch store in a directory of its own.
// Errors: domain.ErrUnavailable; ctx's.
func (s *Scratches) OpenScratch(ctx context.Context) (commands.Scratch, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var name [8]byte
	_, _ = rand.Read(name[:])
	dir := s.opts.FS.PathJoin(s.dir, hex.EncodeToString(name[:]))
	cache := pebble.NewCache(s.opts.CacheSize)
	defer cache.Unref()
	po := &pebble.Options{
		FS:                 s.opts.FS,
		Cache:              cache,
		MemTableSize:       s.opts.MemTableSize,
		DisableWAL:         true,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{l: s.opts.Logger, dir: dir, kind: scratchKind},
		// A scratch lives for one read: few flushes, and reads right after
		// them. Compactions would compete with the read for the CPU, and so
		// would table statistics (which estimate what every range deletion
		// would reclaim beneath it, reading the ingested tables' indexes).
		L0CompactionThreshold: 16,
		L0StopWritesThreshold: 1000,
		DisableTableStats:     true,
	}
	po.EnsureDefaults()
	for i := range po.Levels {
		po.Levels[i].BlockSize = scratchBlockSize
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		_ = s.opts.FS.RemoveAll(dir)
		return nil, storeErr("open a scratch store", err)
	}
	// A batch that Pebble reckons at half a memtable or more is committed
	// as a memtable of its own, flushed and sorted at once: one table in
	// level 0 per commit. Small records reach that long before
	// scratchBatchBytes, so a batch is also committed at a count of
	// records that keeps it to a quarter of a memtable.
	maxRecords := max(int(s.opts.MemTableSize/4/scratchNodeBytes), 64)
	return &scratch{db: db, fs: s.opts.FS, dir: dir, b: db.NewBatch(), maxRecords: uint32(maxRecords),
		writeOpts: po.MakeWriterOptions(6, db.TableFormat())}, nil
}

// scratchKind names scratch stores in errors.
var scratchKind = &storeKind{name: "scratch store", hint: "it is a cache of the blob store: run the read again"}

// scratch is one scratch store.
type scratch struct {
	db         *pebble.DB
	fs         vfs.FS
	dir        string
	b          *pebble.Batch
	maxRecords uint32 // records in a batch before it commits
	writeOpts  sstable.WriterOptions
	tables     []string // added, not yet ingested
	n          int      // files made, for their names
	closeOnce  sync.Once
	closed     bool
}

var _ commands.Scratch = (*scratch)(nil)

var errScratchClosed = &domain.Error{Op: opScratch, Kind: domain.ErrUnavailable, Msg: "the scratch store is closed"}

func (s *scratch) Set(key, value []byte) error {
	if s.closed {
		return errScratchClosed
	}
	if err := s.b.Set(key, value, nil); err != nil {
		return storeErr("scratch set", err)
	}
	return s.maybeCommit()
}

func (s *scratch) DeleteRange(start, end []byte) error {
	if s.closed {
		return errScratchClosed
	}
	if err := s.b.DeleteRange(start, end, nil); err != nil {
		return storeErr("scratch delete range", err)
	}
	return s.maybeCommit()
}

func (s *scratch) maybeCommit() error {
	if s.b.Len() < scratchBatchBytes && s.b.Count() < s.maxRecords {
		return nil
	}
	return s.Flush()
}

// Flush commits the buffered writes (without sync: there is no log).
func (s *scratch) Flush() error {
	if s.closed {
		return errScratchClosed
	}
	if s.b.Empty() {
		return nil
	}
	err := s.b.Commit(pebble.NoSync)
	_ = s.b.Close()
	s.b = s.db.NewBatch()
	return storeErr("scratch commit", err)
}

// file makes a new file of the scratch for a table.
func (s *scratch) file() (vfs.File, string, error) {
	s.n++
	path := s.fs.PathJoin(s.dir, fmt.Sprintf("table-%06d.sst", s.n))
	f, err := s.fs.Create(path, vfs.WriteCategoryUnspecified)
	return f, path, err
}

func (s *scratch) AddTable(r io.Reader) (int64, error) {
	if s.closed {
		return 0, errScratchClosed
	}
	f, path, err := s.file()
	if err != nil {
		return 0, storeErr("scratch add table", err)
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = storeErr("scratch add table", cerr)
	}
	if err != nil {
		_ = s.fs.Remove(path)
		return n, fmt.Errorf("scratch: add a table: %w", err)
	}
	s.tables = append(s.tables, path)
	return n, nil
}

func (s *scratch) Ingest(ctx context.Context) error {
	if s.closed {
		return errScratchClosed
	}
	if err := s.Flush(); err != nil {
		return err
	}
	if len(s.tables) == 0 {
		return nil
	}
	tables := s.tables
	s.tables = nil
	if err := s.db.Ingest(ctx, tables); err != nil {
		for _, p := range tables {
			_ = s.fs.Remove(p)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A table that does not load is damage; a failing disk is not.
		var fsErr *fs.PathError
		if errors.As(err, &fsErr) {
			return storeErr("scratch ingest", err)
		}
		return domain.Corruption("scratch: ingest %d tables: %s", len(tables), firstLine(err.Error()))
	}
	return nil
}

func (s *scratch) IngestSorted(ctx context.Context, next func() (key, value []byte, ok bool)) error {
	if s.closed {
		return errScratchClosed
	}
	if err := s.Flush(); err != nil {
		return err
	}
	f, path, err := s.file()
	if err != nil {
		return storeErr("scratch write a run", err)
	}
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), s.writeOpts)
	var last []byte
	keys := 0
	for k, v, ok := next(); ok; k, v, ok = next() {
		if keys > 0 && bytes.Compare(k, last) <= 0 {
			_ = w.Close()
			_ = s.fs.Remove(path)
			return domain.Corruption("scratch: a sorted run's keys are out of order")
		}
		if err := w.Set(k, v); err != nil {
			_ = w.Close()
			_ = s.fs.Remove(path)
			return storeErr("scratch write a run", err)
		}
		last = append(last[:0], k...)
		keys++
	}
	if err := w.Close(); err != nil || keys == 0 {
		_ = s.fs.Remove(path)
		return storeErr("scratch write a run", err)
	}
	if err := s.db.Ingest(ctx, []string{path}); err != nil {
		_ = s.fs.Remove(path)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return storeErr("scratch ingest a run", err)
	}
	return nil
}

func (s *scratch) NewIter(lower, upper []byte) (commands.ScratchIter, error) {
	if s.closed {
		return nil, errScratchClosed
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, storeErr("scratch iterator", err)
	}
	return &scratchIter{it: it}, nil
}

func (s *scratch) WriteTables(ctx context.Context, lower, upper []byte, split func(key, value []byte, size int64) (bool, error), put func(t *commands.ScratchTable) error) error {
	if s.closed {
		return errScratchClosed
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return storeErr("scratch write tables", err)
	}
	defer it.Close()
	started := false
	return s.writeTables(ctx, func() ([]byte, []byte, bool, error) {
		valid := false
		if started {
			valid = it.Next()
		} else {
			valid, started = it.First(), true
		}
		if !valid {
			return nil, nil, false, storeErr("scratch write tables", it.Error())
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, nil, false, storeErr("scratch write tables", err)
		}
		return it.Key(), v, true, nil
	}, split, put)
}

func (s *scratch) WriteSortedTables(ctx context.Context, next func() (key, value []byte, ok bool), split func(key, value []byte, size int64) (bool, error), put func(t *commands.ScratchTable) error) error {
	if s.closed {
		return errScratchClosed
	}
	var last []byte
	keys := 0
	return s.writeTables(ctx, func() ([]byte, []byte, bool, error) {
		k, v, ok := next()
		if !ok {
			return nil, nil, false, nil
		}
		if keys > 0 && bytes.Compare(k, last) <= 0 {
			return nil, nil, false, domain.Corruption("scratch: sorted records out of order")
		}
		last = append(last[:0], k...)
		keys++
		return k, v, true, nil
	}, split, put)
}

// writeTables writes the records next yields (in key order; an error
// stops it) as tables, cut where split says, each handed to put
// (WriteTables).
func (s *scratch) writeTables(ctx context.Context, next func() (key, value []byte, ok bool, err error), split func(key, value []byte, size int64) (bool, error), put func(t *commands.ScratchTable) error) error {
	var (
		w     *sstable.Writer
		path  string
		first []byte
		last  []byte
		keys  uint64
	)
	finish := func() error {
		if w == nil {
			return nil
		}
		werr := w.Close()
		w = nil
		defer func() { _ = s.fs.Remove(path) }()
		if werr != nil {
			return storeErr("scratch write a table", werr)
		}
		f, err := s.fs.Open(path)
		if err != nil {
			return storeErr("scratch read a table", err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return storeErr("scratch read a table", err)
		}
		return put(&commands.ScratchTable{Data: f, Size: st.Size(), First: first, Last: last, Keys: keys})
	}
	// abandon drops the table being written after a failure.
	abandon := func() {
		if w != nil {
			_ = w.Close()
			_ = s.fs.Remove(path)
			w = nil
		}
	}
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				abandon()
				return err
			}
		}
		k, v, ok, err := next()
		if err != nil {
			abandon()
			return err
		}
		if !ok {
			break
		}
		var size int64
		if w != nil {
			size = int64(w.Raw().EstimatedSize())
		}
		cut, err := split(k, v, size)
		if err != nil {
			abandon()
			return err
		}
		if cut && w != nil {
			if err := finish(); err != nil {
				return err
			}
		}
		if w == nil {
			var f vfs.File
			if f, path, err = s.file(); err != nil {
				return storeErr("scratch write a table", err)
			}
			w = sstable.NewWriter(objstorageprovider.NewFileWritable(f), s.writeOpts)
			first, keys = append(first[:0:0], k...), 0
		}
		if err := w.Set(k, v); err != nil {
			abandon()
			return storeErr("scratch write a table", err)
		}
		last = append(last[:0], k...) // put sees it only until it returns
		keys++
	}
	// next may have stopped because ctx ended: what was written is not
	// all there is.
	if err := ctx.Err(); err != nil {
		abandon()
		return err
	}
	return finish()
}

// Close closes the database and removes its directory. Idempotent.
func (s *scratch) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed = true
		_ = s.b.Close()
		err = errors.Join(storeErr("close a scratch store", s.db.Close()), storeErr("remove a scratch store", s.fs.RemoveAll(s.dir)))
	})
	return err
}

// scratchIter is a scratch's iterator.
type scratchIter struct{ it *pebble.Iterator }

func (i *scratchIter) First() bool            { return i.it.First() }
func (i *scratchIter) SeekGE(key []byte) bool { return i.it.SeekGE(key) }
func (i *scratchIter) Next() bool             { return i.it.Next() }
func (i *scratchIter) Valid() bool            { return i.it.Valid() }
func (i *scratchIter) Key() []byte            { return i.it.Key() }
func (i *scratchIter) Value() ([]byte, error) {
	v, err := i.it.ValueAndErr()
	return v, storeErr("scratch read", err)
}
func (i *scratchIter) Error() error { return storeErr("scratch read", i.it.Error()) }
func (i *scratchIter) Close() error { return storeErr("scratch read", i.it.Close()) }
