package projections

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/clock"
	idsource "github.com/kmsbackup/kmsbackup/adapters/ids"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// countingStore is a projection store that records the position of each
// Update it commits.
type countingStore struct {
	commands.ProjectionStore
	updates []uint64
}

func (c *countingStore) Update(name string, position uint64, fn func(projections.Txn) error) error {
	err := c.ProjectionStore.Update(name, position, fn)
	if err == nil {
		c.updates = append(c.updates, position)
	}
	return err
}

// TestProjectorAppliesBurstsInOneTransaction: the events a subscription
// has read ahead are applied in one transaction (a burst of 600 events in
// a few commits, not 600), an event of a backup stream ends a batch, and
// an event that fails stops the projection just before it, as when each
// event had a transaction of its own.
func TestProjectorAppliesBurstsInOneTransaction(t *testing.T) {
	ctx := context.Background()
	log, err := pebblestore.Open(filepath.Join(t.TempDir(), "db"), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	clk := clock.NewManual(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC))
	ids := idsource.Random{Clock: clk}
	const n, backupAt = 600, 100
	var evs []domain.Event
	for i := range n {
		d := &domain.KeyDeleted{Key: domain.KeyID(fmt.Sprintf("key_%04d", i))}
		stream := domain.KMSStream("kms_1")
		if i == backupAt {
			stream = domain.BackupStream("bkp_1")
		}
		evs = append(evs, domain.Event{ID: ids.NewULID(), Stream: stream, Type: d.EventType(), Schema: domain.SchemaVersion,
			OccurredAt: clk.Now(), Account: "acct_1", Data: domain.EncodeData(d)})
	}
	pos := make([]uint64, n) // of each event in the log
	for i, e := range evs {
		r, err := log.Append(ctx, e.Stream, domain.ExpectAny, []domain.Event{e})
		if err != nil {
			t.Fatal(err)
		}
		pos[i] = r.LastPosition
	}
	head, err := log.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// run applies the log from the start into a fresh store, failing at
	// position failAt (0: never), and returns the store, Run's error and
	// the positions of the commits.
	run := func(failAt uint64) (*countingStore, error) {
		state, err := pebblestore.OpenProjections(filepath.Join(t.TempDir(), "projections"), pebblestore.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { state.Close() })
		store := &countingStore{ProjectionStore: state}
		failing := errors.New("this event does not apply")
		p := &commands.Projector{Name: "counting", Log: log, Store: store, Apply: commands.Pure(func(txn projections.Txn, e domain.Event) error {
			if e.Position == failAt {
				return failing
			}
			return txn.Set(binary.BigEndian.AppendUint64([]byte("counting/"), e.Position), []byte(e.Stream))
		})}
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- p.Run(runCtx) }()
		if failAt == 0 {
			if err := p.WaitFor(ctx, head); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
		err = <-done
		if failAt != 0 && !errors.Is(err, failing) {
			t.Fatalf("Run over an event that fails: %v", err)
		}
		return store, err
	}

	store, _ := run(0)
	if len(store.updates) > 10 {
		t.Errorf("%d events applied in %d transactions, want a few", n, len(store.updates))
	}
	if bkp := pos[backupAt]; !slices.Contains(store.updates, bkp) {
		t.Errorf("the backup stream's event (position %d) did not end a transaction: %v", bkp, store.updates)
	}
	applied := 0
	if err := store.Scan([]byte("counting/"), nil, func(_, _ []byte) (bool, error) {
		applied++
		return true, nil
	}); err != nil || applied != n {
		t.Fatalf("%d events applied (%v), want %d", applied, err, n)
	}

	failAt := pos[300]
	store, err = run(failAt)
	if pos, perr := store.Position("counting"); perr != nil || pos != failAt-1 {
		t.Errorf("after the event at %d failed, the projection is at %d (%v), want %d", failAt, pos, perr, failAt-1)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("position %d", failAt)) {
		t.Errorf("the error does not name the event's position %d: %v", failAt, err)
	}
}
