package projections

// Reader reads a projection's key-value store.
type Reader interface {
	// Get returns the value of key; ok is false when it is absent. The
	// returned slice is owned by the caller.
	Get(key []byte) (value []byte, ok bool, err error)
	// Scan calls fn for every key with the given prefix, in key order,
	// starting at start (inclusive; nil means the beginning of the prefix),
	// until fn returns false or an error. k and v are valid only during fn.
	Scan(prefix, start []byte, fn func(k, v []byte) (bool, error)) error
}

// MultiGetter is a Reader that reads many keys at once, on several
// goroutines where it can: a projection that knows what it will read (the
// items of a checkpoint's slice) asks for all of it before it starts, and
// the look-ups, most of a large state's cost, run side by side.
type MultiGetter interface {
	// GetMany returns the value of each key (nil and false: absent), the
	// caller's to keep, as Get would.
	GetMany(keys [][]byte) (values [][]byte, found []bool, err error)
}

// Seeker is a Reader that also opens cursors: many keys of one prefix read
// in increasing order (the locations of a restore's batch of items) cost a
// step each through one iterator, where each Get searches every level of
// the store, its memtables included, from the top.
type Seeker interface {
	// Cursor returns a cursor over the keys with prefix, reading one
	// snapshot taken now. The caller closes it.
	Cursor(prefix []byte) (Cursor, error)
}

// Cursor reads keys of one prefix. Keys asked for in increasing order are
// cheapest; any order answers correctly. Not safe for concurrent use.
type Cursor interface {
	// Get is Reader.Get for a key with the cursor's prefix.
	Get(key []byte) (value []byte, ok bool, err error)
	// Close releases the cursor's snapshot. Idempotent.
	Close() error
}

// NewCursor returns r's cursor over prefix when r is a Seeker, otherwise
// a cursor that asks r.Get for each key (and so reads the newest state).
func NewCursor(r Reader, prefix []byte) (Cursor, error) {
	if s, ok := r.(Seeker); ok {
		return s.Cursor(prefix)
	}
	return getCursor{r}, nil
}

type getCursor struct{ r Reader }

func (c getCursor) Get(key []byte) ([]byte, bool, error) { return c.r.Get(key) }
func (getCursor) Close() error                           { return nil }

// Txn is a write batch that also sees its own writes. It is committed (or
// discarded) as a whole by whoever opened it.
type Txn interface {
	Reader
	Set(key, value []byte) error
	Delete(key []byte) error
	// DeletePrefix deletes every key with the prefix.
	DeletePrefix(prefix []byte) error
}

// AddSorted adds key with value to run of a sorted load (the projection
// store's Load): within a run keys come in strictly increasing order, and
// the runs of one load cover key ranges apart from each other. A nil value
// deletes the key (an empty value that is not nil is a value).
type AddSorted func(run int, key, value []byte) error

// Unwritten is implemented by a Txn that can tell whether it has written
// nothing yet: a sorted load (the projection store's Load) is then safe,
// since no write of the transaction, committed after the load, can
// overwrite what it loaded.
type Unwritten interface {
	Unwritten() bool
}
