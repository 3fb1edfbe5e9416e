package pebblestore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Damage is found before anything is written: a database that exists is
// first opened read-only, and every live sstable that is not known to be
// intact has every block checksum validated (sstable.Reader's
// ValidateBlockChecksums reads the whole file). Pebble never changes an
// sstable once written, so a table validated once stays intact while its
// size and modification time stay as recorded in kmsbackup-checked-tables;
// only new or changed files are read again at the next start, and tables
// written while the store runs (flushes, compactions) are validated in the
// background as they appear, so that a start costs a stat per table, not a
// read of the whole database (docs/BENCHMARKS.md). Damage made underneath
// the file system (a medium that flips a bit without touching the file's
// times) is found when the block is read: Pebble reports it
// (EventListener.DataCorruption), the read fails with domain.ErrCorrupt,
// the store reports itself damaged (Damage) and drops the table from the
// record, so the next start validates it and refuses.

const checkedTablesFile = "kmsbackup-checked-tables"

// checkedHeader starts the record; a record that does not start with it is
// ignored (which costs one full validation, never a wrong answer).
const checkedHeader = "kmsbackup checked tables v1"

// tableStamp identifies the bytes of a validated table file.
type tableStamp struct {
	size  int64
	mtime int64 // UnixNano
}

// checkedTables are the validated tables, by disk file number.
type checkedTables map[uint64]tableStamp

func parseChecked(b []byte) checkedTables {
	out := make(checkedTables)
	sc := bufio.NewScanner(bytes.NewReader(b))
	if !sc.Scan() || sc.Text() != checkedHeader {
		return out
	}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			return make(checkedTables)
		}
		num, err1 := strconv.ParseUint(f[0], 10, 64)
		size, err2 := strconv.ParseInt(f[1], 10, 64)
		mtime, err3 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return make(checkedTables)
		}
		out[num] = tableStamp{size: size, mtime: mtime}
	}
	return out
}

func (c checkedTables) encode() []byte {
	var b bytes.Buffer
	b.WriteString(checkedHeader + "\n")
	for _, num := range slices.Sorted(maps.Keys(c)) {
		fmt.Fprintf(&b, "%06d %d %d\n", num, c[num].size, c[num].mtime)
	}
	return b.Bytes()
}

// storeKind says what a database of the package holds, for messages.
type storeKind struct {
	name string // "event log store", "read models"
	// hint is what the operator does about damage.
	hint string
}

var (
	logStoreKind = &storeKind{name: "event log store",
		hint: "restore the data directory from a copy taken before the damage; the server writes nothing to it until then"}
	projectionsKind = &storeKind{name: "read models",
		hint: "start the server again: damaged read models are removed and rebuilt from the event log"}
)

// holds names what a file of the database whose keys run from lo to hi
// (user keys) may hold: every namespace whose byte lies between their
// first bytes. The read models' database holds read models only; in the
// log store, read models ('P', 'Q') are left over from an older layout and
// are not named.
func (k *storeKind) holds(lo, hi []byte) string {
	if k == projectionsKind {
		return "read models (rebuildable)"
	}
	if len(lo) == 0 || len(hi) == 0 {
		return "unknown keys"
	}
	var parts []string
	for _, ns := range []struct {
		b    byte
		what string
	}{
		{nsMeta, "store metadata"},
		{nsBlob, "backup data"},
		{nsID, "event log"},
		{nsKeyCheck, "data keys"},
		{nsLog, "event log"},
		{nsStream, "event log"},
		{nsKeyRev, "data keys"},
		{nsWrapped, "data keys"},
	} {
		if lo[0] <= ns.b && ns.b <= hi[0] && !slices.Contains(parts, ns.what) {
			parts = append(parts, ns.what)
		}
	}
	if len(parts) == 0 {
		return "unknown keys"
	}
	return strings.Join(parts, ", ")
}

// damaged builds the error of a damaged file: one line naming the file,
// what it holds and the way out.
func damaged(kind *storeKind, op, path, what string, cause error) error {
	msg := "the file is damaged"
	if cause != nil {
		// The reader of validateTable does not know the file's number.
		msg += " (" + strings.Replace(firstLine(cause.Error()), "pebble: file 000000: ", "", 1) + ")"
	}
	if what != "" {
		msg += "; its keys span " + what
	}
	return &domain.Error{Op: op + " the " + kind.name, Kind: domain.ErrCorrupt, Item: path, Msg: msg, Hint: kind.hint}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// tableChecker validates a database's sstables and keeps the record of
// those validated. Safe for concurrent use.
type tableChecker struct {
	fs     vfs.FS
	dir    string
	kind   *storeKind
	ro     sstable.ReaderOptions
	logger *slog.Logger

	mu       sync.Mutex
	db       *pebble.DB // set once the database is open read-write
	checked  checkedTables
	damage   error // the first damage found while open
	recorded bool  // checked is what the record file says

	queue chan uint64   // tables written since open, to validate (set under mu by start)
	stop  chan struct{} // closed by close
	done  chan struct{} // closed when run returns
}

func newTableChecker(fs vfs.FS, dir string, kind *storeKind, logger *slog.Logger) *tableChecker {
	return &tableChecker{fs: fs, dir: dir, kind: kind, logger: logger, checked: make(checkedTables)}
}

// load reads the record; an unreadable record counts as empty.
func (c *tableChecker) load() {
	b, ok, err := readSmallFile(c.fs, c.fs.PathJoin(c.dir, checkedTablesFile))
	if err == nil && ok {
		c.checked = parseChecked(b)
	}
}

// validateLive validates every live table of db (read-only or not) that
// the record does not vouch for, and keeps only live tables in the record.
// The first damaged table ends it with its error.
func (c *tableChecker) validateLive(db *pebble.DB) error {
	levels, err := db.SSTables()
	if err != nil {
		return storeErr("list sstables", err)
	}
	c.mu.Lock()
	old := c.checked
	c.mu.Unlock()
	live := make(checkedTables)
	for _, level := range levels {
		for i := range level {
			t := &level[i]
			num := uint64(t.BackingSSTNum)
			if _, ok := live[num]; ok {
				continue // a second virtual table of one file
			}
			size := int64(-1)
			if !t.Virtual {
				size = int64(t.Size)
			}
			stamp, err := c.validate(num, size, old, c.kind.holds(t.Smallest.UserKey, t.Largest.UserKey))
			if err != nil {
				return err
			}
			live[num] = stamp
		}
	}
	c.mu.Lock()
	c.recorded = c.recorded && maps.Equal(c.checked, live)
	c.checked = live
	c.mu.Unlock()
	return nil
}

// validate checks one table file (size, when not negative, is what the
// store recorded for it) unless old vouches for it, and returns its stamp.
func (c *tableChecker) validate(num uint64, size int64, old checkedTables, what string) (tableStamp, error) {
	path := c.fs.PathJoin(c.dir, fmt.Sprintf("%06d.sst", num))
	info, err := c.fs.Stat(path)
	if err != nil {
		return tableStamp{}, damaged(c.kind, "open", path, what, fmt.Errorf("cannot stat the file: %w", err))
	}
	stamp := tableStamp{size: info.Size(), mtime: info.ModTime().UnixNano()}
	if prev, ok := old[num]; ok && prev == stamp {
		return stamp, nil
	}
	if size >= 0 && info.Size() != size {
		return tableStamp{}, damaged(c.kind, "open", path, what,
			fmt.Errorf("the file has %d bytes, the store recorded %d", info.Size(), size))
	}
	if err := validateTable(c.fs, path, c.ro); err != nil {
		return tableStamp{}, damaged(c.kind, "open", path, what, err)
	}
	return stamp, nil
}

// validateTable reads every block of an sstable and checks its checksum.
func validateTable(fs vfs.FS, path string, ro sstable.ReaderOptions) error {
	f, err := fs.Open(path)
	if err != nil {
		return err
	}
	readable, err := sstable.NewSimpleReadable(f)
	if err != nil {
		_ = f.Close()
		return err
	}
	r, err := sstable.NewReader(context.Background(), readable, ro)
	if err != nil {
		_ = readable.Close()
		return err
	}
	err = r.ValidateBlockChecksums()
	if cerr := r.Close(); err == nil { // closes readable
		err = cerr
	}
	return err
}

// save writes the record when it changed. Errors are returned, not fatal:
// a record not written only costs validation again at the next start.
func (c *tableChecker) save() error {
	c.mu.Lock()
	if c.recorded {
		c.mu.Unlock()
		return nil
	}
	data := c.checked.encode()
	c.recorded = true
	c.mu.Unlock()
	if err := writeFileAtomic(c.fs, c.dir, checkedTablesFile, data); err != nil {
		c.mu.Lock()
		c.recorded = false
		c.mu.Unlock()
		return err
	}
	return nil
}

// start begins validating, in the background, the tables db writes from
// now on (see written).
func (c *tableChecker) start(db *pebble.DB) {
	c.stop = make(chan struct{})
	c.done = make(chan struct{})
	c.mu.Lock()
	c.db = db
	c.queue = make(chan uint64, 1024) // written, on Pebble's goroutines, may read it from now on
	c.mu.Unlock()
	go c.run()
}

// written queues tables that a flush or compaction just wrote. It never
// blocks: a table that does not fit in the queue, or written before start,
// is validated at the next start instead.
func (c *tableChecker) written(tables []pebble.TableInfo) {
	c.mu.Lock()
	queue := c.queue
	c.mu.Unlock()
	if queue == nil {
		return
	}
	for _, t := range tables {
		select {
		case queue <- uint64(t.FileNum):
		default:
		}
	}
}

func (c *tableChecker) run() {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			return
		case num := <-c.queue:
			c.backgroundValidate(num)
		}
		if len(c.queue) == 0 {
			c.prune()
			if err := c.save(); err != nil {
				c.logger.Warn("pebblestore: cannot record the validated sstables (they are validated again at the next start)",
					"dir", c.dir, "error", err)
			}
		}
	}
}

// backgroundValidate validates a table written while open. A table
// already gone (compacted away) is skipped; a damaged one is reported like
// a corruption found by a read.
func (c *tableChecker) backgroundValidate(num uint64) {
	c.mu.Lock()
	old := c.checked
	c.mu.Unlock()
	stamp, err := c.validate(num, -1, old, "")
	if err != nil {
		if _, serr := c.fs.Stat(c.fs.PathJoin(c.dir, fmt.Sprintf("%06d.sst", num))); serr != nil {
			return // compacted and deleted meanwhile
		}
		c.corrupt(num, err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.checked[num]; !ok || prev != stamp {
		c.checked[num] = stamp
		c.recorded = false
	}
}

// prune drops the tables that are no longer live from the record.
func (c *tableChecker) prune() {
	c.mu.Lock()
	db := c.db
	c.mu.Unlock()
	levels, err := db.SSTables()
	if err != nil {
		return
	}
	live := make(map[uint64]bool)
	for _, level := range levels {
		for _, t := range level {
			live[uint64(t.BackingSSTNum)] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for num := range c.checked {
		if !live[num] {
			delete(c.checked, num)
			c.recorded = false
		}
	}
}

// corrupt records damage found while open: the table leaves the record
// (so that the next start validates it, and refuses), the record is
// written at once, and the first damage is kept for Damage.
func (c *tableChecker) corrupt(num uint64, err error) {
	c.mu.Lock()
	delete(c.checked, num)
	c.recorded = false
	first := c.damage == nil
	if first {
		c.damage = err
	}
	c.mu.Unlock()
	if first {
		c.logger.Error("pebblestore: damaged file found while running", "dir", c.dir, "error", err)
	}
	if serr := c.save(); serr != nil {
		c.logger.Warn("pebblestore: cannot record the damaged sstable", "dir", c.dir, "error", serr)
	}
}

// dataCorruption is Pebble's EventListener.DataCorruption: a read found a
// damaged file. The read itself returns the error.
func (c *tableChecker) dataCorruption(info pebble.DataCorruptionInfo) {
	base := c.fs.PathBase(info.Path)
	var num uint64
	if n, ok := strings.CutSuffix(base, ".sst"); ok {
		num, _ = strconv.ParseUint(n, 10, 64)
	}
	c.corrupt(num, damaged(c.kind, "read", info.Path, c.kind.holds(info.Bounds.Start, info.Bounds.End.Key), info.Details))
}

// damaged returns the first damage found while open, nil when none.
func (c *tableChecker) damaged() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.damage
}

// close stops the background validation and writes the record.
func (c *tableChecker) close() error {
	if c.stop != nil {
		close(c.stop)
		<-c.done
	}
	return c.save()
}
