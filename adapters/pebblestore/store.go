package pebblestore

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var (
	_ commands.EventLog        = (*Store)(nil)
	_ commands.ProjectionStore = (*Store)(nil)
)

// Options configures Open.
type Options struct {
	// FS is the file system the database lives on; nil means the real disk.
	// Tests pass vfs.NewMem() or vfs.NewCrashableMem().
	FS vfs.FS
	// Logger receives Pebble's background errors (a failed compaction or
	// flush), which no call can return; nil means slog.Default().
	// Informational messages are dropped.
	Logger *slog.Logger
	// CacheSize is the block cache in bytes; 0 means DefaultCacheSize.
	// Projections look items up at random, so a cache far below the working
	// set makes every checkpoint of a large backup read blocks from disk.
	CacheSize int64
}

// DefaultCacheSize is the block cache of a store when Options says none.
const DefaultCacheSize = 256 << 20

// Store is one Pebble database holding the event log, the projections and
// the wrapped data keys. All its methods are safe for concurrent use unless
// their documentation says otherwise. After Close every method fails with
// domain.ErrUnavailable.
type Store struct {
	db *pebble.DB

	// life guards closed against Close: every method that touches db holds
	// it for reading, Close takes it for writing, so the database is never
	// used after it is closed.
	life     sync.RWMutex
	closed   bool
	closeMu  sync.Mutex // serialises Close
	closeErr error      // what the first Close returned
	doneCh   chan struct{}

	reqs       chan *appendReq
	stop       chan struct{} // closed by Close: the writer stops
	writerDone chan struct{}

	// durable is the position of the last acknowledged event. Readers never
	// look past it: Pebble makes a synced batch visible slightly before its
	// WAL sync returns, and an event that could still vanish in a crash must
	// not be read.
	durable atomic.Uint64

	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced after every commit

	// applied counts the groups the writer has applied (see precheck).
	applied atomic.Uint64

	// failed holds the first commit failure; appends are refused after it.
	failed atomic.Pointer[error]

	w writer // owned by the writer goroutine
}

// Open opens (creating if needed) the store in dir and starts its writer.
//
// Errors: domain.ErrCorrupt when the database or its layout version cannot be
// read; domain.ErrUnavailable when the files cannot be opened (e.g. another
// process holds the lock). Call Close when done.
func Open(dir string, opts Options) (*Store, error) {
	po := pebbleOptions(opts)
	db, err := pebble.Open(dir, po)
	po.Cache.Unref() // the database holds its own reference
	if err != nil {
		return nil, storeErr("open "+dir, err)
	}
	s := &Store{
		db:         db,
		doneCh:     make(chan struct{}),
		reqs:       make(chan *appendReq, maxQueuedRequests),
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
		notify:     make(chan struct{}),
	}
	head, err := s.init()
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.durable.Store(head)
	s.w = newWriter(s, head)
	go s.run()
	return s, nil
}

// pebbleOptions are the Pebble settings of a store.
func pebbleOptions(opts Options) *pebble.Options {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	size := opts.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	po := &pebble.Options{
		Cache:              pebble.NewCache(size),
		FS:                 fs,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{l: logger},
		// A larger memtable than the 4 MiB default keeps a burst of ingest in
		// memory instead of flushing many small L0 files.
		MemTableSize: 64 << 20,
	}
	// Every append looks its event IDs up, and almost all of them are
	// absent: bloom filters answer those without reading blocks.
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return po
}

// init checks or writes the layout version and returns the last position.
func (s *Store) init() (uint64, error) {
	v, closer, err := s.db.Get(layoutKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if err := s.db.Set(layoutKey, []byte{layoutV1}, pebble.Sync); err != nil {
			return 0, storeErr("write layout", err)
		}
	case err != nil:
		return 0, storeErr("read layout", err)
	default:
		ok := len(v) == 1 && v[0] == layoutV1
		got := append([]byte(nil), v...)
		_ = closer.Close()
		if !ok {
			return 0, domain.Corruption("pebblestore: unknown store layout %x", got)
		}
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{nsLog}, UpperBound: []byte{nsLog + 1}})
	if err != nil {
		return 0, storeErr("find head", err)
	}
	defer it.Close()
	if !it.Last() {
		return 0, storeErr("find head", it.Error())
	}
	k := it.Key()
	if len(k) != logKeyLen {
		return 0, domain.Corruption("pebblestore: log key of %d bytes", len(k))
	}
	pos, _ := getUint64(k[1:])
	return pos, nil
}

// Close stops the writer, fails the appends still queued (and every later
// call) with domain.ErrUnavailable, ends every subscription and closes the
// database. A group already being committed completes first. Idempotent;
// safe for concurrent use; the error of the first Close is returned again.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.isClosed() {
		return s.closeErr
	}
	s.life.Lock()
	s.closed = true
	close(s.stop)
	s.life.Unlock()
	<-s.writerDone
	close(s.doneCh)
	// No method holds life any more and none will use db again.
	s.closeErr = storeErr("close", s.db.Close())
	return s.closeErr
}

func (s *Store) isClosed() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// enter takes the read side of life; it fails once the store is closed.
func (s *Store) enter(op string) error {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return errClosed(op)
	}
	return nil
}

func (s *Store) leave() { s.life.RUnlock() }

func errClosed(op string) error {
	return &domain.Error{Op: op, Kind: domain.ErrUnavailable, Msg: "the store is closed"}
}

// storeErr translates a Pebble error: corruption stays corruption, anything
// else is domain.ErrUnavailable. Pebble's messages carry keys at most, never
// values.
func storeErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pebble.ErrCorruption) {
		return fmt.Errorf("pebblestore: %s: %w (%w)", op, domain.ErrCorrupt, err)
	}
	return fmt.Errorf("pebblestore: %s: %w (%w)", op, domain.ErrUnavailable, err)
}

// get returns a copy of key's value.
func (s *Store) get(key []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	return out, true, closer.Close()
}

// pebbleLogger drops Pebble's informational messages, passes its
// background errors to slog and keeps its fatal path.
type pebbleLogger struct{ l *slog.Logger }

func (pebbleLogger) Infof(string, ...any) {}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble: " + fmt.Sprintf(format, args...))
}
func (pebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
