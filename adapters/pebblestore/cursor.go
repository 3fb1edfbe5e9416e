package pebblestore

import (
	"bytes"
	"errors"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

var _ projections.Seeker = (*Projections)(nil)

// cursors are the open cursors of a Projections, closed with it: a cursor
// does not hold the store's guard between its calls (a caller that holds
// one and calls Get would deadlock against a Close waiting for the guard).
type cursors struct {
	mu   sync.Mutex
	open map[*cursor]struct{}
	shut bool
}

var errCursorClosed = &domain.Error{Op: opProjection, Kind: domain.ErrFailedPrecondition,
	Msg: "the cursor is closed"}

// cursor is a projections.Cursor: one iterator over the prefix's range of
// one snapshot. A seek to a key at or after the last one is a step from
// where the iterator stands (Pebble's seek-using-next), not a search of
// every memtable and level.
type cursor struct {
	p   *Projections
	it  *pebble.Iterator // nil once closed
	key []byte           // the store key of the last seek, reused
}

// Cursor returns a cursor over the projection keys with prefix, reading a
// snapshot of the read models taken now. Close it when done; Close of the
// store closes the cursors still open (their next Get fails).
//
// Errors: domain.ErrUnavailable once the store is closed.
func (p *Projections) Cursor(prefix []byte) (projections.Cursor, error) {
	if err := p.enter(opProjection); err != nil {
		return nil, err
	}
	defer p.leave()
	lower, upper := projRange(prefix)
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, storeErr("projection cursor", err)
	}
	c := &cursor{p: p, it: it, key: []byte{nsProj}}
	p.cursors.mu.Lock()
	defer p.cursors.mu.Unlock()
	if p.cursors.shut { // cannot happen while we hold the guard
		_ = it.Close()
		return nil, errClosed(opProjection)
	}
	if p.cursors.open == nil {
		p.cursors.open = map[*cursor]struct{}{}
	}
	p.cursors.open[c] = struct{}{}
	return c, nil
}

// Get returns a copy of key's value in the cursor's snapshot. key must
// have the cursor's prefix (another key reads as absent).
func (c *cursor) Get(key []byte) ([]byte, bool, error) {
	if err := c.p.enter(opProjection); err != nil {
		return nil, false, err
	}
	defer c.p.leave()
	// The guard is held: the store's Close cannot close the iterator now,
	// and this goroutine alone uses it.
	c.p.cursors.mu.Lock()
	it := c.it
	c.p.cursors.mu.Unlock()
	if it == nil {
		return nil, false, errCursorClosed
	}
	c.key = append(c.key[:1], key...)
	if !it.SeekGE(c.key) || !bytes.Equal(it.Key(), c.key) {
		return nil, false, storeErr("projection cursor get", it.Error())
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, false, storeErr("projection cursor get", err)
	}
	return bytes.Clone(v), true, nil
}

// Close closes the cursor's iterator. Idempotent.
func (c *cursor) Close() error {
	c.p.cursors.mu.Lock()
	defer c.p.cursors.mu.Unlock()
	if c.it == nil {
		return nil
	}
	err := c.it.Close()
	c.it = nil
	delete(c.p.cursors.open, c)
	return storeErr("close a projection cursor", err)
}

// closeAll closes the cursors still open; the store's Close calls it
// under the guard's write side, so no cursor is in a Get.
func (cs *cursors) closeAll() error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.shut = true
	var errs []error
	for c := range cs.open {
		errs = append(errs, c.it.Close())
		c.it = nil
	}
	cs.open = nil
	return storeErr("close the projection cursors", errors.Join(errs...))
}
