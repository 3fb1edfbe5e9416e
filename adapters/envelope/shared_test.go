package envelope

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/adapters/clock"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Envelopes sharing one store, as the engine nodes of a deployment do.

// fakeClock is the clock leases are counted on in these tests: a manual
// clock, which a sleep moves by the time slept.
type fakeClock struct {
	*clock.Manual
	mu    sync.Mutex
	slept []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{Manual: clock.NewManual(time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))}
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.slept = append(c.slept, d)
	c.mu.Unlock()
	c.Advance(d)
	return ctx.Err()
}

func (c *fakeClock) Slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

// cluster is a store that envelopes share, as nodes do, and the clock
// their leases are counted on.
type cluster struct {
	master []byte
	store  *memStore
	clock  *fakeClock
}

func newCluster(tb testing.TB) *cluster {
	return &cluster{master: MustMasterKey(tb), store: newMemStore(), clock: newFakeClock()}
}

// MustNode returns an envelope on the cluster's store, with a lease.
func (c *cluster) MustNode(tb testing.TB, lease time.Duration, rotateAfter, chunk uint64) *Envelope {
	tb.Helper()
	e := MustEnvelope(tb, c.master, c.store, rotateAfter, chunk)
	e.Lease = lease
	e.now, e.sleep = c.clock.Now, c.clock.Sleep
	return e
}

// TestLostRaceReloads: two envelopes take turns sealing under one data
// key that rotates every two seals, one seal reserved at a time. Each
// write of the one that did not write last is refused (the other changed
// the record since it read it): it reads the record again and builds on
// it, so the versions go on from each other's, no version is lost and no
// version seals more than two values.
func TestLostRaceReloads(t *testing.T) {
	c := newCluster(t)
	a := c.MustNode(t, time.Minute, 2, 1)
	b := c.MustNode(t, time.Minute, 2, 1)
	MustCreate(t, a, refA)
	type sealedBy struct {
		e  *Envelope
		pt string
		s  domain.Sealed
	}
	var all []sealedBy
	var versions []uint32
	for i, e := range []*Envelope{a, b, a, b, a, b} {
		pt := fmt.Sprintf("value %d", i)
		s := MustSeal(t, e, refA, []byte(pt), nil)
		all = append(all, sealedBy{e, pt, s})
		versions = append(versions, versionOf(s))
	}
	// a: version 1 seal 0 (created with it); b: loads, reserves seal 1;
	// a: its reservation is refused, reads, version 1 is used up: rotates;
	// b: refused, reads, reserves seal 1 of version 2; and so on.
	if diff := cmp.Diff([]uint32{1, 1, 2, 2, 3, 3}, versions); diff != "" {
		t.Errorf("versions sealed under (-want +got):\n%s", diff)
	}
	if got := c.store.MustRecord(t, refA).newest(); got != 3 {
		t.Errorf("the record's newest version is %d, want 3", got)
	}
	fresh := MustEnvelope(t, c.master, c.store, 2, 1)
	for _, e := range []*Envelope{a, b, fresh} {
		for _, v := range all {
			MustOpenEqual(t, e, refA, v.s, nil, []byte(v.pt))
		}
	}
}

// TestCreateRaceAcrossEnvelopes: two envelopes creating one data key at
// once end with one key, which both use.
func TestCreateRaceAcrossEnvelopes(t *testing.T) {
	c := newCluster(t)
	for round := range 20 {
		ref := fmt.Sprintf("kms_race%d", round)
		nodes := []*Envelope{c.MustNode(t, time.Minute, 0, 0), c.MustNode(t, time.Minute, 0, 0)}
		var wg sync.WaitGroup
		for _, e := range nodes {
			wg.Go(func() {
				if err := e.CreateDataKey(ctx, ref); err != nil {
					t.Errorf("CreateDataKey: %v", err)
				}
			})
		}
		wg.Wait()
		s0 := MustSeal(t, nodes[0], ref, []byte("zero"), nil)
		s1 := MustSeal(t, nodes[1], ref, []byte("one"), nil)
		MustOpenEqual(t, nodes[1], ref, s0, nil, []byte("zero"))
		MustOpenEqual(t, nodes[0], ref, s1, nil, []byte("one"))
		if n := len(c.store.MustRecord(t, ref).versions); n != 1 {
			t.Fatalf("round %d: %d versions after two creations", round, n)
		}
	}
}

// TestOpenReadsVersionsOfOtherNodes: a value sealed under a version
// another envelope added since this one read the record opens, after one
// read of the record; a version nobody made is still corrupt.
func TestOpenReadsVersionsOfOtherNodes(t *testing.T) {
	c := newCluster(t)
	a := c.MustNode(t, time.Minute, 1, 1)
	b := c.MustNode(t, time.Minute, 1, 1)
	MustCreate(t, a, refA)
	s1 := MustSeal(t, a, refA, []byte("one"), nil)
	MustOpenEqual(t, b, refA, s1, nil, []byte("one"))
	s2 := MustSeal(t, b, refA, []byte("two"), nil) // b rotates: version 2
	if versionOf(s2) != 2 {
		t.Fatalf("b sealed under version %d, want 2", versionOf(s2))
	}
	gets := c.store.getCount()
	MustOpenEqual(t, a, refA, s2, nil, []byte("two"))
	if n := c.store.getCount() - gets; n != 1 {
		t.Errorf("opening a version made by another envelope read the store %d times, want 1", n)
	}
	forged := append(domain.Sealed(nil), s2...)
	forged[4] = 9 // version 9
	_, err := a.Open(ctx, refA, forged, nil)
	wantKind(t, "Open under a version nobody made", err, domain.ErrCorrupt)
}

// TestLeaseReadsOncePerLease: the cost of the lease. Within a lease an
// envelope seals and opens without reading the store; the first use after
// it reads the record once, whatever the number of concurrent users.
func TestLeaseReadsOncePerLease(t *testing.T) {
	c := newCluster(t)
	e := c.MustNode(t, time.Second, 0, 0)
	MustCreate(t, e, refA)
	s := MustSeal(t, e, refA, []byte("v"), nil)
	gets := c.store.getCount()
	for range 1000 {
		MustSeal(t, e, refA, []byte("v"), nil)
		MustOpenEqual(t, e, refA, s, nil, []byte("v"))
		c.clock.Advance(time.Millisecond / 2) // 0.5 s in all: within the lease
	}
	if n := c.store.getCount() - gets; n != 0 {
		t.Fatalf("2,000 seals and opens within a lease read the store %d times, want 0", n)
	}
	c.clock.Advance(time.Second / 2)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if _, err := e.Seal(ctx, refA, []byte("v"), nil); err != nil {
					t.Errorf("Seal: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := c.store.getCount() - gets; n != 1 {
		t.Fatalf("800 seals from 8 goroutines right after the lease ran out read the store %d times, want 1", n)
	}
}

// TestLeaseRunsOnTheWallClockToo: a lease also runs out when the wall
// clock has moved on by a lease, or was set back, whatever the monotonic
// clock says: a suspended machine stops its monotonic clock.
func TestLeaseRunsOnTheWallClockToo(t *testing.T) {
	e := MustEnvelope(t, MustMasterKey(t), newMemStore(), 0, 0)
	e.Lease = time.Second
	confirmed := time.Now() // with a monotonic reading
	k := &keyState{ref: refA}
	k.confirmed.Store(&confirmed)
	for _, tt := range []struct {
		now   time.Time
		fresh bool
	}{
		{confirmed.Add(time.Second / 2), true},
		{confirmed.Add(time.Second), false},
		{confirmed.Round(0).Add(time.Second / 2), true},        // wall clock only
		{confirmed.Round(0).Add(2 * time.Second), false},       // the wall clock ran on
		{confirmed.Round(0).Add(-time.Millisecond), false},     // set back
		{confirmed.Add(time.Second / 2).Add(time.Hour), false}, // both ran on
	} {
		e.now = func() time.Time { return tt.now }
		if got := e.fresh(k); got != tt.fresh {
			t.Errorf("confirmed at %v, now %v: fresh = %v, want %v", confirmed, tt.now, got, tt.fresh)
		}
	}
	e.Lease = 0 // the store's only user: no lease
	if !e.fresh(&keyState{ref: refA}) {
		t.Error("without a lease a loaded key is not fresh")
	}
}

// TestDestroyWaitsOutLeases: a node destroying a data key returns only
// once a lease and an eighth have passed since the delete, so that the
// other node, which used the key within its lease, fails at its next use;
// without a lease (a store with one user) it does not wait.
func TestDestroyWaitsOutLeases(t *testing.T) {
	c := newCluster(t)
	const lease = 4 * time.Second
	a := c.MustNode(t, lease, 0, 0)
	b := c.MustNode(t, lease, 0, 0)
	MustCreate(t, a, refA)
	s := MustSeal(t, a, refA, []byte("v"), nil)
	c.clock.Advance(lease / 2)
	MustOpenEqual(t, b, refA, s, nil, []byte("v"))
	MustSeal(t, a, refA, []byte("v"), nil) // a still holds its lease
	if err := b.DestroyDataKey(ctx, refA); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]time.Duration{lease + lease/8}, c.clock.Slept()); diff != "" {
		t.Errorf("DestroyDataKey's wait (-want +got):\n%s", diff)
	}
	_, err := a.Seal(ctx, refA, []byte("v"), nil)
	wantKind(t, "Seal on the other node after DestroyDataKey returned", err, domain.ErrNotFound)
	_, err = a.Open(ctx, refA, s, nil)
	wantKind(t, "Open on the other node after DestroyDataKey returned", err, domain.ErrNotFound)

	solo := MustEnvelope(t, c.master, c.store, 0, 0)
	solo.now, solo.sleep = c.clock.Now, c.clock.Sleep
	MustCreate(t, solo, refB)
	if err := solo.DestroyDataKey(ctx, refB); err != nil {
		t.Fatal(err)
	}
	if n := len(c.clock.Slept()); n != 1 {
		t.Errorf("an envelope without a lease waited after its destroy (%d waits in all)", n)
	}
}

// TestDestroyWaitCut: a destroy whose context ends while it waits out the
// leases reports it; the record is gone all the same.
func TestDestroyWaitCut(t *testing.T) {
	store := newMemStore()
	e := MustEnvelope(t, MustMasterKey(t), store, 0, 0)
	e.Lease = time.Hour
	MustCreate(t, e, refA)
	cctx, cancel := context.WithCancel(ctx)
	e.sleep = func(c context.Context, d time.Duration) error {
		cancel()
		<-c.Done()
		return c.Err()
	}
	err := e.DestroyDataKey(cctx, refA)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("DestroyDataKey cut in its wait = %v, want context.Canceled", err)
	}
	if _, ok := store.raw(refA); ok {
		t.Fatal("the record survived")
	}
}

// TestRaceLimit: an envelope that loses every write of a record to
// others gives up after maxRaces with ErrUnavailable, having written
// nothing.
func TestRaceLimit(t *testing.T) {
	store := newMemStore()
	e := MustEnvelope(t, MustMasterKey(t), store, 0, 1)
	MustCreate(t, e, refA)
	MustSeal(t, e, refA, nil, nil) // uses the reservation made with the key
	rival := 0
	store.beforePut = func(ref string) {
		rival++
		raw := store.records[ref].b
		store.seq++
		store.records[ref] = memRecord{raw, store.seq} // another node wrote it
	}
	_, err := e.Seal(ctx, refA, nil, nil)
	wantKind(t, "Seal losing every race", err, domain.ErrUnavailable)
	if rival != maxRaces {
		t.Errorf("%d writes tried, want %d", rival, maxRaces)
	}
}
