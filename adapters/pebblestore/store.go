package pebblestore

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var _ commands.EventLog = (*Store)(nil)

// Store is the Pebble database of the source of truth: the event log, the
// wrapped data keys and their check, and the backup blobs (the read models
// live in a database of their own, Projections). All its methods are safe
// for concurrent use unless their documentation says otherwise. After Close
// every method fails with domain.ErrUnavailable.
type Store struct {
	db      *pebble.DB
	fs      vfs.FS
	dir     string
	logger  *slog.Logger
	checker *tableChecker
	// blobTables are the options of the tables large blobs are ingested
	// as (blobs.go).
	blobTables sstable.WriterOptions
	// readOnly is set on the store Options.Check sees: it has no writer.
	readOnly bool
	// filterHooks are tests' hooks into the writer's filter of streams;
	// builds counts the builds of that filter running (Close waits for
	// them).
	filterHooks *filterHooks
	builds      sync.WaitGroup

	// life keeps db from being used after Close.
	life     guard
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

	// The high-water mark (mark.go): mark is what the file holds.
	markMu      sync.Mutex
	mark        logMark
	markWritten bool
	markDone    chan struct{} // closed when markLoop returns; nil without one
	lost        *LostPositionsError

	keyCheckMu sync.Mutex // serialises CreateKeyCheck
	wrappedMu  sync.Mutex // serialises the writes of wrapped keys (wrapped.go)

	w writer // owned by the writer goroutine
}

// Open opens (creating if needed) the store in dir and starts its writer.
//
// A store that exists is first opened read-only and checked before
// anything is written: every live sstable not validated since it was
// written has its block checksums validated (tables.go); the log is
// checked against its high-water mark (mark.go); then Options.Check runs.
// Only then is the store opened read-write, its high-water mark brought up
// to date (after a flush), and its writer started.
//
// Errors: domain.ErrCorrupt, naming the file and what it holds, when a
// file of the store is damaged or its layout version is unknown;
// *LostPositionsError (domain.ErrCorrupt) when acknowledged events are
// missing from the log (unless Options.AcceptLostLogPositions accepts a
// loss at its end); Options.Check's error; domain.ErrUnavailable when the
// files cannot be opened (e.g. another process holds the lock). Call Close
// when done.
func Open(dir string, opts Options) (*Store, error) {
	var lost *LostPositionsError
	roCheck := func(db *pebble.DB) error {
		ro := newStore(db, dir, opts, nil)
		ro.readOnly = true
		head, _, err := readHead(db)
		if err != nil {
			return err
		}
		ro.durable.Store(head)
		if err := checkMark(opts.fs(), dir, db, head); err != nil {
			if !errors.As(err, &lost) || !opts.AcceptLostLogPositions || !lost.TailOnly() {
				return err
			}
		}
		if opts.Check != nil {
			return opts.Check(ro)
		}
		return nil
	}
	db, checker, tables, err := openDatabase(dir, opts, logStoreKind, roCheck)
	if err != nil {
		return nil, err
	}
	if err := removeLoadLeftovers(opts.fs(), dir); err != nil {
		_ = db.Close()
		return nil, storeErr("remove the tables of an interrupted blob put", err)
	}
	s := newStore(db, dir, opts, checker)
	// Blobs are sealed: compressing them would cost and save nothing.
	tables.Compression = sstable.NoCompression
	s.blobTables = tables
	s.lost = lost
	head, err := s.init()
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.durable.Store(head)
	// A mark starts from a flushed log: after this, only what is appended
	// from now on is counted at the next start.
	if m, ok, err := readMark(s.fs, dir); err == nil && ok && lost == nil {
		s.mark = m
	}
	if err := s.syncMark(true, false); err != nil {
		_ = db.Close()
		return nil, err
	}
	checker.start(db)
	s.w = newWriter(s, head)
	s.filterHooks = testFilterHooks
	go s.run()
	markEvery, flushEvery := opts.MarkInterval, opts.FlushInterval
	if markEvery == 0 {
		markEvery = DefaultMarkInterval
	}
	if flushEvery == 0 {
		flushEvery = DefaultFlushInterval
	}
	if markEvery > 0 {
		s.markDone = make(chan struct{})
		go s.markLoop(markEvery, flushEvery)
	}
	return s, nil
}

func newStore(db *pebble.DB, dir string, opts Options, checker *tableChecker) *Store {
	return &Store{
		db:         db,
		fs:         opts.fs(),
		dir:        dir,
		logger:     opts.logger(),
		checker:    checker,
		doneCh:     make(chan struct{}),
		reqs:       make(chan *appendReq, maxQueuedRequests),
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
		notify:     make(chan struct{}),
	}
}

// Lost reports the acknowledged events Open found missing at the end of
// the log and accepted (Options.AcceptLostLogPositions); nil when none.
func (s *Store) Lost() *LostPositionsError { return s.lost }

// Damage returns the first damage found in the store's files since it was
// opened (a read that met a bad checksum, a table written damaged), nil
// when none. The reads concerned fail with domain.ErrCorrupt; the next
// Open validates the file again and refuses. Safe for concurrent use.
func (s *Store) Damage() error {
	if s.checker == nil {
		return nil
	}
	return s.checker.damaged()
}

// init checks or writes the layout version and returns the last position.
func (s *Store) init() (uint64, error) {
	head, ok, err := readHead(s.db)
	if err != nil {
		return 0, err
	}
	if !ok {
		if err := s.db.Set(layoutKey, []byte{layoutV1}, pebble.Sync); err != nil {
			return 0, storeErr("write layout", err)
		}
	}
	return head, nil
}

// readHead checks the layout version (ok is false when the store has
// none yet: it is new) and returns the last position of the log.
func readHead(db *pebble.DB) (head uint64, ok bool, err error) {
	v, closer, err := db.Get(layoutKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return 0, false, storeErr("read layout", err)
	default:
		good := len(v) == 1 && v[0] == layoutV1
		got := append([]byte(nil), v...)
		_ = closer.Close()
		if !good {
			return 0, false, domain.Corruption("pebblestore: unknown store layout %x", got)
		}
		ok = true
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{nsLog}, UpperBound: []byte{nsLog + 1}})
	if err != nil {
		return 0, false, storeErr("find head", err)
	}
	defer it.Close()
	if !it.Last() {
		return 0, ok, storeErr("find head", it.Error())
	}
	k := it.Key()
	if len(k) != logKeyLen {
		return 0, false, domain.Corruption("pebblestore: log key of %d bytes", len(k))
	}
	pos, _ := getUint64(k[1:])
	return pos, ok, nil
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
	s.life.shut(func() { close(s.stop) })
	<-s.writerDone
	s.builds.Wait()
	if s.markDone != nil {
		<-s.markDone
	}
	close(s.doneCh)
	// No method holds life any more and none will use db again. A clean
	// shutdown flushes, so that the next start has no log to count (and no
	// write-ahead log to replay).
	var errs []error
	if s.failed.Load() == nil {
		errs = append(errs, s.syncMark(true, true))
	}
	errs = append(errs, s.checker.close(), storeErr("close", s.db.Close()))
	s.closeErr = errors.Join(errs...)
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
func (s *Store) enter(op string) error { return s.life.enter(op) }

func (s *Store) leave() { s.life.leave() }

// guard keeps a database from being used after it is closed: every method
// that touches it holds the guard for reading (enter, leave), Close takes
// it for writing (shut).
type guard struct {
	mu     sync.RWMutex
	closed bool
}

// enter takes the read side; it fails once the guard is shut.
func (g *guard) enter(op string) error {
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return errClosed(op)
	}
	return nil
}

func (g *guard) leave() { g.mu.RUnlock() }

// shut marks the guard closed, running then under its write side, once no
// method holds it; false when it was shut already.
func (g *guard) shut(then func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.closed = true
	then()
	return true
}

func errClosed(op string) error {
	return &domain.Error{Op: op, Kind: domain.ErrUnavailable, Msg: "the store is closed"}
}

// get returns a copy of key's value.
func (s *Store) get(key []byte) ([]byte, bool, error) { return get(s.db, key) }

// get returns a copy of key's value in db (a database, a snapshot, a
// batch).
func get(db pebble.Reader, key []byte) ([]byte, bool, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	return out, true, closer.Close()
}
