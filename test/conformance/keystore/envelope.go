package keystore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// lease is the envelopes' lease in the subtests where two of them share
// the store: short, since each DestroyDataKey waits it out.
const lease = 100 * time.Millisecond

// newEnvelope returns an envelope on st under the run's master key that
// rotates and reserves often, so that records are replaced many times.
// shared gives it a lease: other envelopes use the store too.
func (s *suite) newEnvelope(t *testing.T, st commands.KeyStore, shared bool) *envelope.Envelope {
	t.Helper()
	e, err := envelope.New(s.value("master", envelope.MasterKeySize), st)
	if err != nil {
		t.Fatalf("envelope.New: %v", err)
	}
	e.RotateAfter, e.ReserveChunk = 3, 2
	if shared {
		e.Lease = lease
	}
	return e
}

// envelope: an envelope built on the store seals and opens across data-key
// rotations, a second envelope on the other handle (another node) opens
// what the first sealed, and once the data key is destroyed nothing opens
// it: not the envelope that destroyed it, not a fresh one, and the store
// holds no record.
func (s *suite) envelope(t *testing.T) {
	a, b := s.newStores(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	e := s.newEnvelope(t, a, false)
	ref, other := s.ref("env"), s.ref("env-other")
	for _, r := range []string{ref, other} {
		if err := e.CreateDataKey(ctx, r); err != nil {
			t.Fatalf("CreateDataKey(%q): %v", r, err)
		}
	}
	aad := []byte("conformance aad")
	var sealed []domain.Sealed
	for i := range 10 {
		v, err := e.Seal(ctx, ref, domain.Plaintext(fmt.Sprintf("secret %d", i)), aad)
		if err != nil {
			t.Fatalf("Seal #%d: %v", i, err)
		}
		sealed = append(sealed, v)
	}
	otherSealed, err := e.Seal(ctx, other, domain.Plaintext("other secret"), aad)
	if err != nil {
		t.Fatalf("Seal under %q: %v", other, err)
	}
	for _, opener := range []*envelope.Envelope{e, s.newEnvelope(t, b, false)} {
		for i, v := range sealed {
			pt, err := opener.Open(ctx, ref, v, aad)
			if err != nil || string(pt) != fmt.Sprintf("secret %d", i) {
				t.Fatalf("Open #%d = %q, %v", i, pt, err)
			}
		}
	}

	if err := e.DestroyDataKey(ctx, ref); err != nil {
		t.Fatalf("DestroyDataKey: %v", err)
	}
	mustAbsent(t, a, ref)
	for name, opener := range map[string]*envelope.Envelope{"the destroying envelope": e, "a fresh envelope": s.newEnvelope(t, b, false)} {
		if pt, err := opener.Open(ctx, ref, sealed[0], aad); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("Open by %s after DestroyDataKey = %q, %v; want ErrNotFound", name, pt, err)
		}
		// The other ref's key is untouched.
		if pt, err := opener.Open(ctx, other, otherSealed, aad); err != nil || string(pt) != "other secret" {
			t.Errorf("Open under the other ref by %s = %q, %v", name, pt, err)
		}
	}
	if err := e.DestroyDataKey(ctx, ref); err != nil {
		t.Fatalf("DestroyDataKey again: %v", err)
	}
}

// envelopesRotateTogether: two envelopes, one per handle (two nodes),
// seal under one data key from several goroutines each, rotating it every
// three seals, so that they race to reserve seals and to add versions.
// No version is lost: every value either sealed opens on both, and on a
// fresh envelope.
func (s *suite) envelopesRotateTogether(t *testing.T) {
	a, b := s.newStores(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	nodes := []*envelope.Envelope{s.newEnvelope(t, a, true), s.newEnvelope(t, b, true)}
	ref := s.ref("rot")
	if err := nodes[0].CreateDataKey(ctx, ref); err != nil {
		t.Fatalf("CreateDataKey: %v", err)
	}
	const perNode, each = 3, 12
	var (
		mu     sync.Mutex
		sealed = map[string]domain.Sealed{}
		wg     sync.WaitGroup
	)
	for n, e := range nodes {
		for g := range perNode {
			wg.Go(func() {
				for i := range each {
					pt := fmt.Sprintf("node %d, goroutine %d, value %d", n, g, i)
					v, err := e.Seal(ctx, ref, domain.Plaintext(pt), []byte(pt))
					if err != nil {
						t.Errorf("node %d: Seal: %v", n, err)
						return
					}
					mu.Lock()
					sealed[pt] = v
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	openers := map[string]*envelope.Envelope{"node 0": nodes[0], "node 1": nodes[1], "a fresh envelope": s.newEnvelope(t, a, true)}
	for name, e := range openers {
		failed := 0
		for pt, v := range sealed {
			got, err := e.Open(ctx, ref, v, []byte(pt))
			if err != nil || string(got) != pt {
				failed++
				if failed <= 3 {
					t.Errorf("%s cannot open %q: %v", name, pt, err)
				}
			}
		}
		if failed > 0 {
			t.Errorf("%s opens %d of the %d values sealed by both nodes: a data-key version was lost", name, len(sealed)-failed, len(sealed))
		}
	}
}

// destroySeenByEveryNode: two envelopes (nodes), one per handle, both
// hold the data key in memory; once one destroys it, the other's very
// next Seal and Open fail with domain.ErrNotFound, whichever node
// destroyed it, while another data key still works on both.
func (s *suite) destroySeenByEveryNode(t *testing.T) {
	a, b := s.newStores(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for round, order := range [][2]int{{0, 1}, {1, 0}} {
		nodes := []*envelope.Envelope{s.newEnvelope(t, a, true), s.newEnvelope(t, b, true)}
		destroyer, other := nodes[order[0]], nodes[order[1]]
		ref, kept := s.ref("gone"), s.ref("kept")
		for _, r := range []string{ref, kept} {
			if err := other.CreateDataKey(ctx, r); err != nil {
				t.Fatalf("CreateDataKey(%q): %v", r, err)
			}
		}
		aad := []byte("aad")
		var sealed []domain.Sealed
		for _, e := range nodes { // both load the key and use it
			v, err := e.Seal(ctx, ref, domain.Plaintext("value"), aad)
			if err != nil {
				t.Fatalf("round %d: Seal: %v", round, err)
			}
			sealed = append(sealed, v)
		}
		for _, e := range nodes {
			for _, v := range sealed {
				if _, err := e.Open(ctx, ref, v, aad); err != nil {
					t.Fatalf("round %d: Open before the destruction: %v", round, err)
				}
			}
		}
		keptSealed, err := other.Seal(ctx, kept, domain.Plaintext("kept"), aad)
		if err != nil {
			t.Fatal(err)
		}

		if err := destroyer.DestroyDataKey(ctx, ref); err != nil {
			t.Fatalf("round %d: DestroyDataKey: %v", round, err)
		}
		if pt, err := other.Seal(ctx, ref, domain.Plaintext("after"), aad); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("round %d: the other node's Seal right after DestroyDataKey returned = %d bytes, %v; want ErrNotFound", round, len(pt), err)
		}
		for i, v := range sealed {
			if pt, err := other.Open(ctx, ref, v, aad); !errors.Is(err, domain.ErrNotFound) {
				t.Errorf("round %d: the other node's Open #%d right after DestroyDataKey returned = %q, %v; want ErrNotFound", round, i, pt, err)
			}
		}
		mustAbsent(t, a, ref)
		for _, e := range nodes {
			if pt, err := e.Open(ctx, kept, keptSealed, aad); err != nil || string(pt) != "kept" {
				t.Errorf("round %d: the other data key: Open = %q, %v", round, pt, err)
			}
		}
	}
}
