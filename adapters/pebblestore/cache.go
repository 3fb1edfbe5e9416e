package pebblestore

import "github.com/cockroachdb/pebble/v2"

// DefaultCacheSize is the block cache of a store when Options says none.
const DefaultCacheSize = 256 << 20

// Cache is a block cache that several databases of the package share (the
// event log store and the read models), so that together they stay within
// one memory budget.
type Cache struct{ c *pebble.Cache }

// NewCache returns a block cache of size bytes (DefaultCacheSize when size
// is not positive). Release it with Close once every database using it is
// open; each database holds its own reference until it is closed.
func NewCache(size int64) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &Cache{c: pebble.NewCache(size)}
}

// Close drops the caller's reference. Call it once.
func (c *Cache) Close() { c.c.Unref() }
