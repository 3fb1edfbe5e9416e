package pebblestore

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Options configures Open and OpenProjections.
type Options struct {
	// FS is the file system the database lives on; nil means the real disk.
	// Tests pass vfs.NewMem() or vfs.NewCrashableMem().
	FS vfs.FS
	// Logger receives Pebble's background errors (a failed compaction or
	// flush), which no call can return, and the damage found while the
	// database is open; nil means slog.Default(). Informational messages
	// are dropped.
	Logger *slog.Logger
	// Cache is a block cache shared with other databases (see NewCache);
	// nil gives the database a cache of its own of CacheSize bytes.
	Cache *Cache
	// CacheSize is the block cache in bytes when Cache is nil; 0 means
	// DefaultCacheSize. Projections look items up at random, so a cache far
	// below the working set makes every checkpoint of a large backup read
	// blocks from disk.
	CacheSize int64
	// MemTableSize is the size of a memtable in bytes; 0 means 64 MiB.
	// Tests set it small to make Pebble switch write-ahead log files. A
	// write-ahead log file holds at most about a memtable (see
	// FlushInterval), and Pebble keeps up to three used ones to recycle.
	MemTableSize uint64
	// Fatal is called when Pebble meets an error it cannot go on from (its
	// Logger.Fatalf: a failed MANIFEST write, a failed commit, a broken
	// invariant), with one error saying so: domain.ErrCorrupt naming the
	// file when the cause is damage, domain.ErrUnavailable otherwise. Pebble
	// cannot continue after it: Fatal must not return (the command line
	// prints the error and exits). When nil, the store panics with that
	// error.
	Fatal func(error)
	// FlushInterval is how often, while writes happen, the memtable is
	// flushed: the log store's appends, so that the mark's flushed
	// position advances; the read models' updates. Either way Pebble
	// starts a new write-ahead log file at a flush, so that a log file
	// holds about one interval of writes, not a memtable's worth. 0 means
	// DefaultFlushInterval; negative means only at Open and Close.
	FlushInterval time.Duration

	// The rest concerns Open (the event log store) only.

	// Check, when set, is called on the store opened read-only, after its
	// files and its log were checked and before anything is written: an
	// error ends Open with that error and the directory unchanged. The
	// command line checks the master key there.
	Check func(*Store) error
	// AcceptLostLogPositions lets Open go on when acknowledged events are
	// missing from the end of the log (the log is behind its high-water
	// mark, see mark.go): Lost then reports them, and the mark is moved back
	// to the log's head. A log with a gap inside is refused regardless.
	AcceptLostLogPositions bool
	// MarkInterval is how often the high-water mark is written while
	// appends happen; 0 means DefaultMarkInterval; negative means only at
	// Open and Close (tests call SyncMark).
	MarkInterval time.Duration
}

func (o Options) fs() vfs.FS {
	if o.FS == nil {
		return vfs.Default
	}
	return o.FS
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

// pebbleOptions are the Pebble settings of a database of the package. The
// caller unrefs Cache once the database is open.
func pebbleOptions(dir string, opts Options, checker *tableChecker) *pebble.Options {
	cache := (*pebble.Cache)(nil)
	if opts.Cache != nil {
		cache = opts.Cache.c
		cache.Ref()
	} else {
		size := opts.CacheSize
		if size <= 0 {
			size = DefaultCacheSize
		}
		cache = pebble.NewCache(size)
	}
	memtable := opts.MemTableSize
	if memtable == 0 {
		// A larger memtable than the 4 MiB default keeps a burst of ingest
		// in memory instead of flushing many small L0 files.
		memtable = 64 << 20
	}
	logger := opts.logger()
	po := &pebble.Options{
		Cache:              cache,
		FS:                 &walFS{FS: opts.fs(), ahead: reserveAhead}, // a pointer: Pebble compares file systems (ingest links only within one)
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{l: logger, dir: dir, kind: checker.kind, fatal: opts.Fatal},
		MemTableSize:       memtable,
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) { logger.Error("pebble: background error: " + firstLine(err.Error())) },
			DataCorruption:  checker.dataCorruption,
			FlushEnd: func(info pebble.FlushInfo) {
				if info.Err == nil {
					checker.written(info.Output)
				}
			},
			CompactionEnd: func(info pebble.CompactionInfo) {
				if info.Err == nil && info.Done {
					checker.written(info.Output.Tables)
				}
			},
			TableIngested: func(info pebble.TableIngestInfo) {
				if info.Err != nil {
					return
				}
				tables := make([]pebble.TableInfo, len(info.Tables))
				for i := range info.Tables {
					tables[i] = info.Tables[i].TableInfo
				}
				checker.written(tables)
			},
		},
	}
	// Every append looks its event IDs up, and almost all of them are
	// absent: bloom filters answer those without reading blocks.
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	// A table ingested (a large blob, a projection's Load) holds keys no
	// other table holds, but its range usually falls inside the bounds of
	// a bottom-level table (which spans other namespaces' keys around it):
	// without a split, Pebble can only place it in level 0, and a
	// compaction then rewrites it into the bottom level. Splitting that
	// table into two virtual tables lets the ingested one go straight to
	// the bottom, written once (CockroachDB ingests this way by default).
	po.Experimental.IngestSplit = func() bool { return true }
	po.EnsureDefaults()
	return po
}

// openDatabase opens (creating if needed) the Pebble database in dir. A
// database that exists is first opened read-only: its live sstables are
// validated (tables.go) and roCheck, when set, runs on it; any damage or
// roCheck error ends Open before anything is written. Then it is opened
// read-write. The caller starts the checker once it is ready. tables are
// the options of a table written for the bottom level (Projections.Load).
func openDatabase(dir string, opts Options, kind *storeKind, roCheck func(*pebble.DB) error) (db *pebble.DB, checker *tableChecker, tables sstable.WriterOptions, err error) {
	fs := opts.fs()
	checker = newTableChecker(fs, dir, kind, opts.logger())
	po := pebbleOptions(dir, opts, checker)
	defer po.Cache.Unref() // each database holds its own reference
	checker.ro = po.MakeReaderOptions()

	if err := checkReadOnly(dir, po, checker, roCheck); err != nil {
		return nil, nil, tables, err
	}
	db, err = pebble.Open(dir, po)
	if err != nil {
		return nil, nil, tables, openErr(kind, dir, err)
	}
	return db, checker, po.MakeWriterOptions(len(po.Levels)-1, db.TableFormat()), nil
}

// checkReadOnly runs the read-only checks of openDatabase. A database
// that does not exist yet has nothing to check.
func checkReadOnly(dir string, po *pebble.Options, checker *tableChecker, roCheck func(*pebble.DB) error) error {
	if exists, err := dirExists(po.FS, dir); err != nil || !exists {
		return storeErr("open "+dir, err)
	}
	ro := po.Clone()
	ro.ReadOnly = true
	ro.DisableTableStats = true
	ro.EventListener = &pebble.EventListener{
		// A read that meets damage fails with it; nothing is recorded while
		// read-only.
		DataCorruption: func(pebble.DataCorruptionInfo) {},
	}
	db, err := pebble.Open(dir, ro)
	if errors.Is(err, pebble.ErrDBDoesNotExist) {
		return nil
	}
	if err != nil {
		return openErr(checker.kind, dir, err)
	}
	checker.load()
	err = checker.validateLive(db)
	if err == nil && roCheck != nil {
		err = roCheck(db)
	}
	if cerr := db.Close(); err == nil && cerr != nil {
		err = openErr(checker.kind, dir, cerr)
	}
	return err
}

// openErr translates an error of pebble.Open: damage (a MANIFEST or
// write-ahead log that does not decode) names the database and says what
// to do; anything else (a lock held by another process, a permission) is
// domain.ErrUnavailable.
func openErr(kind *storeKind, dir string, err error) error {
	if pebble.IsCorruptionError(err) {
		path := dir
		if info := pebble.ExtractDataCorruptionInfo(err); info != nil {
			path = info.Path
		}
		return damaged(kind, "open", path, "", err)
	}
	return storeErr("open "+dir, err)
}

// storeErr translates a Pebble error: corruption stays corruption (naming
// the damaged file when Pebble says which), anything else is
// domain.ErrUnavailable. Pebble's messages carry keys at most, never
// values.
func storeErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if pebble.IsCorruptionError(err) {
		if info := pebble.ExtractDataCorruptionInfo(err); info != nil {
			return fmt.Errorf("pebblestore: %s: %w (%s: %s)", op, domain.ErrCorrupt, info.Path, firstLine(info.Details.Error()))
		}
		return fmt.Errorf("pebblestore: %s: %w (%s)", op, domain.ErrCorrupt, firstLine(err.Error()))
	}
	return fmt.Errorf("pebblestore: %s: %w (%w)", op, domain.ErrUnavailable, err)
}

// pebbleLogger drops Pebble's informational messages, passes its errors to
// slog, and turns a fatal error into one error for Options.Fatal.
type pebbleLogger struct {
	l     *slog.Logger
	dir   string
	kind  *storeKind
	fatal func(error)
}

func (pebbleLogger) Infof(string, ...any) {}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble: " + firstLine(fmt.Sprintf(format, args...)))
}

// Fatalf cannot return (Pebble's contract): it hands the error to the
// Fatal hook, and panics if the hook returns or there is none.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	err := fatalError(p.kind, p.dir, format, args)
	if p.fatal != nil {
		p.fatal(err)
	}
	panic(err)
}

// fatalError is the one error a Pebble fatal becomes.
func fatalError(kind *storeKind, dir, format string, args []any) error {
	e := &domain.Error{Op: "pebble", Kind: domain.ErrUnavailable, Item: dir,
		Msg:  "the store stopped on an error it cannot go on from: " + firstLine(fmt.Sprintf(format, args...)),
		Hint: "acknowledged writes are in the write-ahead log; fix the cause (often a failing or full disk) and start the server again"}
	for _, a := range args {
		var info *pebble.DataCorruptionInfo
		switch v := a.(type) {
		case pebble.DataCorruptionInfo:
			info = &v
		case error:
			if !pebble.IsCorruptionError(v) {
				continue
			}
			info = pebble.ExtractDataCorruptionInfo(v)
			e.Kind = domain.ErrCorrupt
		default:
			continue
		}
		e.Kind = domain.ErrCorrupt
		if info != nil {
			e.Item = info.Path
		}
	}
	if e.Kind == domain.ErrCorrupt {
		e.Msg = "the store stopped on damaged data: " + firstLine(fmt.Sprintf(format, args...))
		e.Hint = kind.hint
	}
	return e
}
