package commands

import (
	"context"
	"io"
)

// ScratchStores opens scratch stores: temporary sorted key-value stores
// that one read fills, reads and removes (a restore's source, a base being
// written, a verification of a base). A scratch holds what it is given in
// the state layout (projections/dayview); it is a cache of what the blob
// store holds, never a source of truth, and nothing in it survives a
// restart.
type ScratchStores interface {
	// OpenScratch makes an empty scratch store; the caller closes it.
	// Errors: domain.ErrUnavailable when it cannot be made (a full disk);
	// ctx's. Safe for concurrent use: each scratch is independent.
	OpenScratch(ctx context.Context) (Scratch, error)
}

// Scratch is one scratch store. Memory stays bounded whatever it holds
// (its cache and write buffers are small; the rest is on disk). Not safe
// for concurrent use. Every method fails with domain.ErrUnavailable once
// the scratch is closed, or when its files cannot be written or read.
type Scratch interface {
	// Set and DeleteRange buffer blind writes (dayview.Writer), committed
	// (never synced) as the buffer fills and by Flush: a reader sees them
	// only after Flush.
	Set(key, value []byte) error
	DeleteRange(start, end []byte) error
	Flush() error
	// AddTable copies an sstable (a base part, as WriteTables wrote it)
	// from r into a file of the scratch, reading r to its end. Ingest then
	// loads every table added since the last Ingest in one atomic step
	// (tables that overlap one another are refused), on top of what the
	// scratch held: an ingested key overrides an older write of it.
	// Errors: r's (wrapped); domain.ErrCorrupt for a table that does not
	// load.
	AddTable(r io.Reader) (size int64, err error)
	Ingest(ctx context.Context) error
	// IngestSorted writes the records next yields, which must come in
	// strictly increasing key order, as one table and loads it on top of
	// what the scratch holds (writes buffered before are flushed first): a
	// sorted run costs no memtable insert per record. Runs may overlap
	// one another; a reader sees them merged. next's key and value need
	// stay valid only until it is called again. Errors: domain.ErrCorrupt
	// for keys out of order; ctx's.
	IngestSorted(ctx context.Context, next func() (key, value []byte, ok bool)) error
	// NewIter returns an iterator over the keys in [lower, upper) (nil:
	// unbounded) of what was flushed and ingested, at the time of the
	// call. Close it before the scratch.
	NewIter(lower, upper []byte) (ScratchIter, error)
	// WriteTables writes what the scratch holds in [lower, upper), in key
	// order, as sstables that AddTable and Ingest load: split sees every
	// record before it is written (key and value valid only during the
	// call), with the bytes of the table so far (0 for the first key), and
	// may start a new table there, or stop the writing with an error (so
	// that one pass both writes and reads the records). put receives each
	// finished table, readable until put returns. Errors: split's, put's;
	// ctx's.
	WriteTables(ctx context.Context, lower, upper []byte, split func(key, value []byte, size int64) (bool, error), put func(t *ScratchTable) error) error
	// WriteSortedTables writes the records next yields, which must come
	// in strictly increasing key order, as WriteTables writes what the
	// scratch holds (split and put alike), without holding them: a base
	// written as it is made. The scratch lends it its files only; what it
	// holds is unchanged. next's key and value need stay valid only until
	// it is called again. Errors: domain.ErrCorrupt for keys out of
	// order; split's, put's; ctx's (also when next stopped because ctx
	// ended).
	WriteSortedTables(ctx context.Context, next func() (key, value []byte, ok bool), split func(key, value []byte, size int64) (bool, error), put func(t *ScratchTable) error) error
	// Close removes the scratch and its files. Idempotent.
	Close() error
}

// ScratchTable is one table written by Scratch.WriteTables.
type ScratchTable struct {
	Data        io.Reader // the table's bytes
	Size        int64
	First, Last []byte // its first and last keys
	Keys        uint64
}

// ScratchIter iterates over a scratch's keys in order. It satisfies
// dayview.Cursor. Not safe for concurrent use.
type ScratchIter interface {
	// First and SeekGE position the iterator at the first key (at or after
	// key) and report whether there is one.
	First() bool
	SeekGE(key []byte) bool
	Next() bool
	Valid() bool
	// Key and Value are valid until the iterator moves.
	Key() []byte
	Value() ([]byte, error)
	// Error is the error that stopped the iteration, if any.
	Error() error
	Close() error
}
