package pebblestore

import (
	"context"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Load writes the keys fn adds as one sorted table per run and ingests
// them in one step (ingest.go): commands.ProjectionStore.Load. A base's
// rows written this way skip the write-ahead log, the memtable, its flush
// and the compactions of the flushed tables: the runs go to the lowest
// level whose tables they do not overlap, which for the rows of a new
// generation is the bottom one. Tables are written with the options of
// that level (its bloom filter and compression) and validated in the
// background as flushed ones are. A nil value deletes its key. Every
// transaction committed before the load is synced before its tables are
// ingested.
//
// Errors: domain.ErrInvalidArgument for an empty name, a run outside
// [0, 8), keys out of order in a run, or runs that overlap; fn's error;
// domain.ErrUnavailable when the store is closed or a table cannot be
// written or ingested. Nothing is written on any error.
func (p *Projections) Load(name string, fn func(add projections.AddSorted) error) error {
	const op = "projection load"
	if name == "" {
		return domain.Invalid(op, "the projection name is empty")
	}
	if err := p.enter(opProjection); err != nil {
		return err
	}
	defer p.leave()
	l := newTableLoad(op+" "+name, p.fs, p.dir, p.tables)
	defer l.discard()
	if err := fn(func(run int, key, value []byte) error { return l.add(run, projKey(key), value) }); err != nil {
		return err
	}
	// What was committed before the load is made durable before it: a
	// crash must not keep the loaded tables and lose earlier transactions
	// (committed without a sync), which the loaded keys may follow.
	if err := p.db.LogData(nil, pebble.Sync); err != nil {
		return storeErr(op, err)
	}
	return l.ingest(context.Background(), p.db)
}
