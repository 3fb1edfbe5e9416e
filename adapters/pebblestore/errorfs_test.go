package pebblestore

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
)

// walSyncFault fails every sync of a write-ahead log file while on.
type walSyncFault struct{ on atomic.Bool }

func (f *walSyncFault) String() string { return "wal sync fault" }

func (f *walSyncFault) MaybeError(op errorfs.Op) error {
	if !f.on.Load() || !strings.HasSuffix(op.Path, ".log") {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		return errorfs.ErrInjected
	}
	return nil
}

// TestFailedSyncIsNeverAcknowledged: when the write-ahead log cannot be
// synced, the append is not acknowledged, and the store refuses every
// later write, even once the disk would work again, until it is reopened;
// what it acknowledged before is intact after reopening.
func TestFailedSyncIsNeverAcknowledged(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMem()
	fault := &walSyncFault{}
	fs := errorfs.Wrap(mem, fault)
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	before := mustAppend(t, s, "kms-a", domain.ExpectNoStream, eventlog.Events("kms-a", 1, 3))

	fault.on.Store(true)
	if res, err := s.Append(ctx, "kms-a", domain.ExpectAny, eventlog.Events("kms-a", 4, 1)); err == nil {
		t.Fatalf("Append with a failing WAL sync = %+v, nil; want an error", res)
	} else if !errors.Is(err, errorfs.ErrInjected) && !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("Append with a failing WAL sync: %v; want the injected error or domain.ErrUnavailable", err)
	}
	fault.on.Store(false)
	if res, err := s.Append(ctx, "kms-b", domain.ExpectAny, eventlog.Events("kms-b", 1, 1)); err == nil {
		t.Fatalf("Append after a failed sync = %+v, nil; want the store to refuse writes until reopened", res)
	} else if !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("Append after a failed sync: %v; want domain.ErrUnavailable", err)
	}
	_ = s.Close()

	s = MustOpen(t, "db", mem)
	evs, err := s.ReadStream(ctx, "kms-a", 0, false, 10)
	if err != nil {
		t.Fatalf("ReadStream after reopening: %v", err)
	}
	if len(evs) < 3 || evs[2].Position != before.LastPosition {
		t.Fatalf("after reopening kms-a holds %d events; want the 3 acknowledged ones first", len(evs))
	}
	if _, err := s.Append(ctx, "kms-b", domain.ExpectAny, eventlog.Events("kms-b", 1, 1)); err != nil {
		t.Fatalf("Append after reopening: %v", err)
	}
}
