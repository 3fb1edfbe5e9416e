package pebblestore

import (
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Projections is the Pebble database of the read models, apart from the
// source of truth (Store), so that damage to it costs a rebuild from the
// log, never the log itself. Projection data lives under its own namespace
// ('P'); positions under 'Q'; the keys a projection passes in are stored
// behind that one-byte prefix and handed back without it. The layout key
// (0x00 "projections") is written once the database is complete: a
// database without it (a copy that a crash interrupted) is made again.
//
// Older data directories kept the read models in the log store's database
// under the same keys; OpenProjections adopts them (copies the keys once,
// then deletes them from the log store with one range deletion).
//
// All methods are safe for concurrent use unless their documentation says
// otherwise. After Close every method fails with domain.ErrUnavailable.
type Projections struct {
	db      *pebble.DB
	fs      vfs.FS
	dir     string
	checker *tableChecker
	tables  sstable.WriterOptions // of the tables Load writes
	rebuilt error
	logger  *slog.Logger

	// written is set by every write and cleared by the flush loop, which
	// flushes only after writes; stop ends the loop, flushDone says it
	// ended (nil when there is no loop).
	written   atomic.Bool
	stop      chan struct{}
	flushDone chan struct{}

	life     guard
	cursors  cursors
	closeMu  sync.Mutex // serialises Close
	closeErr error
}

var _ commands.ProjectionStore = (*Projections)(nil)

const (
	opProjection = "projection"
	projLayoutV1 = 1
	// adoptBatchBytes bounds one batch of the copy of older read models.
	adoptBatchBytes = 4 << 20
)

var projLayoutKey = []byte{nsMeta, 'p', 'r', 'o', 'j', 'e', 'c', 't', 'i', 'o', 'n', 's'}

// OpenProjections opens (creating if needed) the read models' database in
// dir. Damage found at open (tables.go) does not fail it: the database is
// removed and made again empty, so that the projectors rebuild it from the
// log, and Rebuilt says why. When the database is new and legacy is not
// nil, the read models legacy holds under an older layout are copied in;
// once the copy is complete they are deleted from legacy.
//
// Errors: domain.ErrUnavailable when the files cannot be opened, removed or
// written (e.g. another process holds the lock); domain.ErrCorrupt when
// legacy's read models cannot be read. Call Close when done.
func OpenProjections(dir string, opts Options, legacy *Store) (*Projections, error) {
	p, err := openProjections(dir, opts)
	var rebuilt error
	if domain.IsCorruption(err) {
		rebuilt = err
		if rerr := RemoveProjections(dir, opts); rerr != nil {
			return nil, rerr
		}
		p, err = openProjections(dir, opts)
	}
	if err != nil {
		return nil, err
	}
	p.rebuilt = rebuilt
	if err := p.adopt(legacy); err != nil {
		_ = p.Close()
		return nil, err
	}
	p.checker.start(p.db)
	every := opts.FlushInterval
	if every == 0 {
		every = DefaultFlushInterval
	}
	if every > 0 {
		p.stop, p.flushDone = make(chan struct{}), make(chan struct{})
		go p.flushLoop(every)
	}
	return p, nil
}

// flushLoop flushes the memtable every interval in which something was
// written, until Close. Pebble starts a new write-ahead log file at each
// flush: without it the file would grow to a memtable (64 MiB) on any
// deployment, however small, and up to three used ones are kept for
// recycling beside it.
func (p *Projections) flushLoop(every time.Duration) {
	defer close(p.flushDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		if !p.written.Swap(false) {
			continue
		}
		if err := p.flush(); err != nil {
			p.written.Store(true) // again at the next tick
			p.logger.Warn("pebblestore: cannot flush the read models", "error", err)
		}
	}
}

// flush flushes the memtable; once the database is closed it does nothing
// (Close flushes).
func (p *Projections) flush() error {
	if p.enter("flush the read models") != nil {
		return nil
	}
	defer p.leave()
	return storeErr("flush the read models", p.db.Flush())
}

// RemoveProjections removes the read models' database in dir, which must
// not be open: the next OpenProjections makes it again, empty.
//
// Errors: domain.ErrUnavailable when it cannot be removed.
func RemoveProjections(dir string, opts Options) error {
	return storeErr("remove the read models in "+dir, opts.fs().RemoveAll(dir))
}

// openProjections opens the database; one that holds keys but no layout
// (an interrupted copy) is removed and made again.
func openProjections(dir string, opts Options) (*Projections, error) {
	for attempt := 0; ; attempt++ {
		db, checker, tables, err := openDatabase(dir, opts, projectionsKind, nil)
		if err != nil {
			return nil, err
		}
		p := &Projections{db: db, fs: opts.fs(), dir: dir, checker: checker, tables: tables, logger: opts.logger()}
		if err := removeLoadLeftovers(p.fs, dir); err != nil {
			_ = db.Close()
			return nil, storeErr("remove the tables of an interrupted load", err)
		}
		_, complete, err := get(db, projLayoutKey)
		if err != nil {
			_ = db.Close()
			return nil, storeErr("read the read models' layout", err)
		}
		if complete {
			return p, nil
		}
		it, err := db.NewIter(nil)
		if err != nil {
			_ = db.Close()
			return nil, storeErr("open the read models", err)
		}
		empty := !it.First()
		_ = it.Close()
		if empty || attempt > 0 {
			return p, nil
		}
		if err := db.Close(); err != nil {
			return nil, storeErr("close the read models", err)
		}
		if err := RemoveProjections(dir, opts); err != nil {
			return nil, err
		}
	}
}

// adopt completes a new database, copying legacy's read models in first,
// and deletes the read models legacy still holds.
func (p *Projections) adopt(legacy *Store) error {
	_, complete, err := get(p.db, projLayoutKey)
	if err != nil {
		return storeErr("read the read models' layout", err)
	}
	if !complete {
		if legacy != nil {
			if err := p.copyFrom(legacy); err != nil {
				return err
			}
		}
		// A synced write syncs every write before it in the WAL.
		if err := p.db.Set(projLayoutKey, []byte{projLayoutV1}, pebble.Sync); err != nil {
			return storeErr("write the read models' layout", err)
		}
	}
	if legacy == nil {
		return nil
	}
	return legacy.DropLegacyProjections()
}

// copyFrom copies every read-model key of legacy.
func (p *Projections) copyFrom(legacy *Store) error {
	if err := legacy.enter("adopt read models"); err != nil {
		return err
	}
	defer legacy.leave()
	it, err := legacy.db.NewIter(&pebble.IterOptions{LowerBound: []byte{nsProj}, UpperBound: []byte{nsProjPos + 1}})
	if err != nil {
		return storeErr("read the older read models", err)
	}
	defer it.Close()
	b := p.db.NewBatch()
	defer func() { _ = b.Close() }()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return storeErr("read the older read models", err)
		}
		if err := b.Set(it.Key(), v, nil); err != nil {
			return storeErr("copy the older read models", err)
		}
		if b.Len() >= adoptBatchBytes {
			if err := b.Commit(pebble.NoSync); err != nil {
				return storeErr("copy the older read models", err)
			}
			_ = b.Close()
			b = p.db.NewBatch()
		}
	}
	if err := it.Error(); err != nil {
		return storeErr("read the older read models", err)
	}
	return storeErr("copy the older read models", b.Commit(pebble.NoSync))
}

// DropLegacyProjections deletes the read models an older layout kept in
// the log store (one synced range deletion; Pebble reclaims the space as
// it compacts). OpenProjections calls it once it has adopted them.
//
// Errors: domain.ErrUnavailable when the store is closed or the write
// fails. Idempotent; safe for concurrent use.
func (s *Store) DropLegacyProjections() error {
	if err := s.enter("drop older read models"); err != nil {
		return err
	}
	defer s.leave()
	lower, upper := []byte{nsProj}, []byte{nsProjPos + 1}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return storeErr("drop older read models", err)
	}
	present := it.First()
	err = errors.Join(it.Error(), it.Close())
	if err != nil || !present {
		return storeErr("drop older read models", err)
	}
	return storeErr("drop older read models", s.db.DeleteRange(lower, upper, pebble.Sync))
}

// Rebuilt returns the damage OpenProjections found and repaired by making
// the database again (the projectors then rebuild it from the log); nil
// when there was none.
func (p *Projections) Rebuilt() error { return p.rebuilt }

// Damage returns the first damage found in the database's files since it
// was opened; nil when none. The reads concerned fail with
// domain.ErrCorrupt; the next OpenProjections rebuilds the database.
func (p *Projections) Damage() error { return p.checker.damaged() }

// Close waits for the calls under way, flushes and closes the database;
// later calls fail with domain.ErrUnavailable. Idempotent; safe for
// concurrent use; the error of the first Close is returned again.
func (p *Projections) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	var cerr error
	if !p.life.shut(func() { cerr = p.cursors.closeAll() }) {
		return p.closeErr
	}
	if p.stop != nil {
		close(p.stop)
		<-p.flushDone
	}
	// No method holds life any more and none will use db again. A flush
	// keeps the next start from replaying a write-ahead log.
	ferr := p.db.Flush()
	if ferr != nil {
		ferr = storeErr("flush the read models", ferr)
	}
	p.closeErr = errors.Join(cerr, ferr, p.checker.close(), storeErr("close the read models", p.db.Close()))
	return p.closeErr
}

func (p *Projections) enter(op string) error { return p.life.enter(op) }

func (p *Projections) leave() { p.life.leave() }

// Get returns a copy of the value of projection key; ok is false when the key
// is absent.
//
// Errors: domain.ErrCorrupt or domain.ErrUnavailable from the database
// (ErrUnavailable also once the store is closed). Safe for concurrent use.
func (p *Projections) Get(key []byte) ([]byte, bool, error) {
	if err := p.enter(opProjection); err != nil {
		return nil, false, err
	}
	defer p.leave()
	v, ok, err := get(p.db, projKey(key))
	if err != nil {
		return nil, false, storeErr("projection get", err)
	}
	return v, ok, nil
}

// Scan calls fn for every projection key with prefix, in key order,
// starting at start (inclusive; nil means the beginning of the prefix),
// until fn returns false or an error, which Scan returns. k and v are valid
// only during fn. It reads one consistent snapshot.
//
// Errors: fn's error; domain.ErrCorrupt or domain.ErrUnavailable from the
// database. Safe for concurrent use.
func (p *Projections) Scan(prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	if err := p.enter(opProjection); err != nil {
		return err
	}
	defer p.leave()
	return scan(p.db, prefix, start, fn)
}

// reader is what a *pebble.DB and an indexed *pebble.Batch share.
type reader interface {
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}

func scan(r reader, prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	lower, upper := projRange(prefix)
	if start != nil {
		if k := projKey(start); string(k) > string(lower) {
			lower = k
		}
	}
	if string(lower) >= string(upper) {
		return nil
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return storeErr("projection scan", err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return storeErr("projection scan", err)
		}
		more, err := fn(it.Key()[1:], v)
		if err != nil || !more {
			_ = it.Close()
			return err
		}
	}
	return storeErr("projection scan", errors.Join(it.Error(), it.Close()))
}

// projRange returns the bounds of the projection keys with prefix.
func projRange(prefix []byte) (lower, upper []byte) {
	lower = projKey(prefix)
	upper = prefixEnd(lower)
	if upper == nil || upper[0] != nsProj {
		upper = []byte{nsProj + 1}
	}
	return lower, upper
}

// Position returns the last log position projection name has applied, 0 if
// it has applied none.
//
// Errors: domain.ErrCorrupt for a malformed stored position;
// domain.ErrUnavailable when the store is closed or the read fails. Safe for
// concurrent use.
func (p *Projections) Position(name string) (uint64, error) {
	if err := p.enter(opProjection); err != nil {
		return 0, err
	}
	defer p.leave()
	v, ok, err := get(p.db, projPosKey(name))
	if err != nil {
		return 0, storeErr("projection position", err)
	}
	if !ok {
		return 0, nil
	}
	pos, ok := getUint64(v)
	if !ok {
		return 0, domain.Corruption("pebblestore: projection %q: bad position", name)
	}
	return pos, nil
}

// Update runs fn in one transaction (a Pebble indexed batch, so the Txn's Get
// and Scan see its own writes) and commits its writes together with
// position as projection name's new position, atomically. If fn fails
// nothing is written and fn's error is returned. The commit is not synced
// (pebble.NoSync): projections are rebuildable from the log, so a crash may
// lose the last updates, never half of one.
//
// Errors: domain.ErrInvalidArgument for an empty name; fn's error;
// domain.ErrUnavailable when the store is closed or the commit fails. The
// Txn must not be used after fn returns. Not safe for concurrent use on the
// same name; different names may be updated concurrently. Idempotent when fn
// is (same writes, same position).
func (p *Projections) Update(name string, position uint64, fn func(projections.Txn) error) error {
	if name == "" {
		return domain.Invalid("projection update", "the projection name is empty")
	}
	if err := p.enter(opProjection); err != nil {
		return err
	}
	defer p.leave()
	b := p.db.NewIndexedBatch()
	defer b.Close()
	tx := &txn{b: b, db: p.db}
	err := fn(tx)
	tx.b = nil
	if err != nil {
		return err
	}
	if err := b.Set(projPosKey(name), putUint64(position), nil); err != nil {
		return storeErr("projection update", err)
	}
	p.written.Store(true)
	return storeErr("projection update", b.Commit(pebble.NoSync))
}

// txn is the projections.Txn of one Update.
type txn struct {
	b  *pebble.Batch
	db *pebble.DB
}

var (
	_ projections.Txn         = (*txn)(nil)
	_ projections.MultiGetter = (*txn)(nil)
	_ projections.Unwritten   = (*txn)(nil)
)

// Unwritten reports whether the transaction has written nothing yet.
func (t *txn) Unwritten() bool { return t.b != nil && t.b.Empty() }

var errTxnDone = &domain.Error{Op: opProjection, Kind: domain.ErrFailedPrecondition,
	Msg: "the transaction is over: a Txn is valid only inside its Update"}

func (t *txn) Get(key []byte) ([]byte, bool, error) {
	if t.b == nil {
		return nil, false, errTxnDone
	}
	v, closer, err := t.b.Get(projKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, storeErr("projection get", err)
	}
	out := append([]byte(nil), v...)
	return out, true, closer.Close()
}

// GetMany reads keys as Get would. While the transaction has written
// nothing, the database alone holds what it sees, so the keys are read
// from it on up to multiGetWorkers goroutines; after a write, one at a
// time through the batch.
func (t *txn) GetMany(keys [][]byte) ([][]byte, []bool, error) {
	if t.b == nil {
		return nil, nil, errTxnDone
	}
	values, found := make([][]byte, len(keys)), make([]bool, len(keys))
	if !t.b.Empty() || len(keys) < 2 {
		for i, k := range keys {
			var err error
			if values[i], found[i], err = t.Get(k); err != nil {
				return nil, nil, err
			}
		}
		return values, found, nil
	}
	workers := min(runtime.GOMAXPROCS(0), multiGetWorkers, len(keys))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(keys); i += workers {
				v, ok, err := get(t.db, projKey(keys[i]))
				if err != nil {
					errs[w] = storeErr("projection get", err)
					return
				}
				values[i], found[i] = v, ok
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return values, found, nil
}

// multiGetWorkers bounds the goroutines of a GetMany.
const multiGetWorkers = 4

func (t *txn) Scan(prefix, start []byte, fn func(k, v []byte) (bool, error)) error {
	if t.b == nil {
		return errTxnDone
	}
	return scan(t.b, prefix, start, fn)
}

func (t *txn) Set(key, value []byte) error {
	if t.b == nil {
		return errTxnDone
	}
	return storeErr("projection set", t.b.Set(projKey(key), value, nil))
}

func (t *txn) Delete(key []byte) error {
	if t.b == nil {
		return errTxnDone
	}
	return storeErr("projection delete", t.b.Delete(projKey(key), nil))
}

func (t *txn) DeletePrefix(prefix []byte) error {
	if t.b == nil {
		return errTxnDone
	}
	lower, upper := projRange(prefix)
	return storeErr("projection delete prefix", t.b.DeleteRange(lower, upper, nil))
}

// DropProjection deletes a read model no version uses any more: every key
// under prefix (one range deletion) and the position of projection name,
// in one batch (not synced: read models are rebuildable, and a drop lost
// in a crash is done again at the next start). Idempotent.
//
// Errors: domain.ErrInvalidArgument for an empty name or prefix;
// domain.ErrUnavailable when the store is closed or the write fails. Safe
// for concurrent use, though not with an Update of name.
func (p *Projections) DropProjection(name string, prefix []byte) error {
	if name == "" || len(prefix) == 0 {
		return domain.Invalid("drop projection", "a projection name and a key prefix are needed")
	}
	if err := p.enter(opProjection); err != nil {
		return err
	}
	defer p.leave()
	lower, upper := projRange(prefix)
	b := p.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(lower, upper, nil); err != nil {
		return storeErr("drop projection "+name, err)
	}
	if err := b.Delete(projPosKey(name), nil); err != nil {
		return storeErr("drop projection "+name, err)
	}
	return storeErr("drop projection "+name, b.Commit(pebble.NoSync))
}
