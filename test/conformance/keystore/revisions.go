package keystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
)

// revisions: a put succeeds only at the record's current revision (0 for
// none), and a refused put changes nothing; revisions grow with every
// write, and past a delete: a writer holding a revision from before the
// delete can neither bring the record back nor overwrite the one created
// after it.
func (s *suite) revisions(t *testing.T) {
	st := s.newStore(t)
	ref := s.ref("rev")
	v1, v2, v3, v4 := s.value("v1", 60), s.value("v2", 61), s.value("v3", 62), s.value("v4", 63)
	mustAbsent(t, st, ref)
	mustPutConflict(t, st, ref, v1, 1, "a revision of a ref that has no record")
	mustAbsent(t, st, ref)
	r1 := mustPut(t, st, ref, v1, 0)
	mustGetRev(t, st, ref, v1, r1)
	mustPutConflict(t, st, ref, v2, 0, "creating a record that exists")
	mustGetRev(t, st, ref, v1, r1)
	r2 := mustPut(t, st, ref, v2, r1)
	if r2 <= r1 {
		t.Fatalf("revision %d after %d: want it to grow", r2, r1)
	}
	mustPutConflict(t, st, ref, v3, r1, "the revision before the last write")
	mustPutConflict(t, st, ref, v3, r2+1000, "a revision the store never gave")
	mustGetRev(t, st, ref, v2, r2)

	mustDelete(t, st, ref)
	mustAbsent(t, st, ref)
	mustPutConflict(t, st, ref, v3, r2, "the last revision before a delete")
	mustAbsent(t, st, ref)
	r3 := mustPut(t, st, ref, v3, 0)
	if r3 <= r2 {
		t.Fatalf("revision %d of a record created after a delete, want above %d, the last before it", r3, r2)
	}
	mustPutConflict(t, st, ref, v4, r2, "a revision from before the delete, after the record was created again")
	mustPutConflict(t, st, ref, v4, r1, "an older revision from before the delete")
	mustGetRev(t, st, ref, v3, r3)

	// Another ref's revisions are its own: its writes do not move ref's.
	other := s.ref("rev-other")
	ro := mustPut(t, st, other, v1, 0)
	mustPut(t, st, other, v2, ro)
	mustGetRev(t, st, ref, v3, r3)
	mustPut(t, st, ref, v4, r3)
}

// revisionsAcrossHandles: what one handle writes the other reads at once,
// at the same revision, and writes at that revision.
func (s *suite) revisionsAcrossHandles(t *testing.T) {
	a, b := s.newStores(t)
	ref := s.ref("xrev")
	v1, v2, v3 := s.value("x1", 60), s.value("x2", 60), s.value("x3", 60)
	r1 := mustPut(t, a, ref, v1, 0)
	mustGetRev(t, b, ref, v1, r1)
	mustPutConflict(t, b, ref, v2, 0, "creating through the other handle what exists")
	r2 := mustPut(t, b, ref, v2, r1)
	mustGetRev(t, a, ref, v2, r2)
	mustPutConflict(t, a, ref, v3, r1, "the revision the other handle replaced")
	mustDelete(t, b, ref)
	mustAbsent(t, a, ref)
	mustPutConflict(t, a, ref, v3, r2, "the revision the other handle deleted")
	mustAbsent(t, b, ref)
}

// createRace: of writers on both handles creating one record at once,
// exactly one succeeds; every other is told ErrWrongExpectedRevision, and
// the record is the winner's, at the winner's revision.
func (s *suite) createRace(t *testing.T) {
	a, b := s.newStores(t)
	const racers = 8
	for round := range 3 {
		ref := s.ref("race")
		revs := make([]uint64, racers)
		errs := make([]error, racers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			st := alternate(i, a, b)
			wg.Go(func() {
				<-start
				revs[i], errs[i] = st.PutWrapped(context.Background(), ref, s.value(fmt.Sprintf("%s-%d", ref, i), 60), 0)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: racers %d and %d both created %q", round, winner, i, ref)
			case err == nil:
				winner = i
			case !errors.Is(err, domain.ErrWrongExpectedRevision):
				t.Fatalf("round %d: racer %d: %v, want ErrWrongExpectedRevision", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no racer created %q", round, ref)
		}
		mustGetRev(t, a, ref, s.value(fmt.Sprintf("%s-%d", ref, winner), 60), revs[winner])
		mustGetRev(t, b, ref, s.value(fmt.Sprintf("%s-%d", ref, winner), 60), revs[winner])
	}
}

// noLostUpdate: writers on both handles (two nodes) each add their own
// entries to one record by reading it, appending and writing it back at
// the revision read, reading again after every refused write. Every
// entry is in the record afterwards, exactly once; no two writes got the
// same revision.
func (s *suite) noLostUpdate(t *testing.T) {
	a, b := s.newStores(t)
	ref := s.ref("lost")
	const writers, each, entryLen = 6, 6, 4
	mustPut(t, a, ref, []byte("log:"), 0)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		granted []uint64
		retries int
	)
	for w := range writers {
		st := alternate(w, a, b)
		wg.Go(func() {
			for i := range each {
				entry := fmt.Appendf(nil, "%02d%02d", w, i)
				for attempt := 0; ; attempt++ {
					if attempt == 1000 {
						t.Errorf("writer %d: entry %d still not written after %d attempts", w, i, attempt)
						return
					}
					cur, rev, err := st.GetWrapped(context.Background(), ref)
					if err != nil || rev == 0 {
						t.Errorf("writer %d: GetWrapped = %d, %v", w, rev, err)
						return
					}
					next, err := st.PutWrapped(context.Background(), ref, append(cur, entry...), rev)
					if errors.Is(err, domain.ErrWrongExpectedRevision) {
						mu.Lock()
						retries++
						mu.Unlock()
						continue
					}
					if err != nil {
						t.Errorf("writer %d: PutWrapped: %v", w, err)
						return
					}
					mu.Lock()
					granted = append(granted, next)
					mu.Unlock()
					break
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d writes, %d lost races retried", len(granted), retries)
	got, _, err := b.GetWrapped(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	body, ok := bytes.CutPrefix(got, []byte("log:"))
	if !ok || len(body) != writers*each*entryLen {
		t.Fatalf("the record holds %d bytes of entries, want %d: updates were lost", len(body), writers*each*entryLen)
	}
	seen := map[string]bool{}
	for e := range slices.Chunk(body, entryLen) {
		if seen[string(e)] {
			t.Fatalf("entry %s is in the record twice", e)
		}
		seen[string(e)] = true
	}
	slices.Sort(granted)
	if n := len(slices.Compact(granted)); n != writers*each {
		t.Fatalf("%d successful writes got %d distinct revisions", writers*each, n)
	}
}
