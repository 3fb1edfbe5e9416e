package keystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
)

func (s *suite) getMissing(t *testing.T) {
	st := s.newStore(t)
	mustAbsent(t, st, s.ref("missing"))
}

// putGet: a record comes back as it went in, at the revision the put
// returned, and the slices on either side are the caller's.
func (s *suite) putGet(t *testing.T) {
	st := s.newStore(t)
	for _, n := range []int{1, 60, 4096} {
		ref := s.ref("pg")
		v := s.value(ref, n)
		in := bytes.Clone(v)
		rev := mustPut(t, st, ref, in, 0)
		clear(in)
		mustGetRev(t, st, ref, v, rev)
		got, _, _ := st.GetWrapped(context.Background(), ref)
		clear(got)
		mustGetRev(t, st, ref, v, rev)
	}
}

// replace: a put at the current revision replaces the record, the same
// bytes again included, and each gets a new revision.
func (s *suite) replace(t *testing.T) {
	st := s.newStore(t)
	ref := s.ref("rep")
	var rev uint64
	for i := range 4 {
		v := s.value(fmt.Sprintf("%s-%d", ref, i), 50+i)
		next := mustPut(t, st, ref, v, rev)
		if next <= rev {
			t.Fatalf("put #%d: revision %d after %d, want it to grow", i, next, rev)
		}
		mustGetRev(t, st, ref, v, next)
		again := mustPut(t, st, ref, v, next)
		if again <= next {
			t.Fatalf("putting the same bytes again: revision %d after %d, want it to grow", again, next)
		}
		mustGetRev(t, st, ref, v, again)
		rev = again
	}
	// Shorter than before: nothing of the old record shows through.
	rev = mustPut(t, st, ref, []byte{7}, rev)
	mustGetRev(t, st, ref, []byte{7}, rev)
}

// delete: a deleted record is absent, deleting again or deleting a ref
// that never had one succeeds, and the ref can be created again.
func (s *suite) delete(t *testing.T) {
	st := s.newStore(t)
	ref := s.ref("del")
	rev := mustPut(t, st, ref, s.value("first", 60), 0)
	mustPut(t, st, ref, s.value("second", 60), rev) // a replaced record is deleted too
	mustDelete(t, st, ref)
	mustAbsent(t, st, ref)
	mustDelete(t, st, ref)
	mustAbsent(t, st, ref)
	mustDelete(t, st, s.ref("del-never"))
	v := s.value("again", 60)
	rev = mustPut(t, st, ref, v, 0)
	mustGetRev(t, st, ref, v, rev)
}

// refs: refs with any bytes, including those an encoding could merge, and
// the longest the envelope allows, are distinct; deleting one leaves the
// others.
func (s *suite) refs(t *testing.T) {
	st := s.newStore(t)
	base := strings.TrimSuffix(s.ref("refs"), "/1")
	refs := []string{
		base + "/3", base + "/30", base + "/3/0", base + "%2F3", base + "=2F3", base + "~2F3",
		base + ".3", base + "*", base + ">", base + " 3", base + "/", base, base + "\x00", base + "\xff",
		base + "ü", base + "=", base + "==", base + "-_",
		(base + strings.Repeat("L", MaxRefLen))[:MaxRefLen],
	}
	for i, ref := range refs {
		mustPut(t, st, ref, s.value(fmt.Sprint(i), 40+i), 0)
	}
	for i, ref := range refs {
		mustGet(t, st, ref, s.value(fmt.Sprint(i), 40+i))
	}
	mustDelete(t, st, refs[0])
	mustAbsent(t, st, refs[0])
	for i, ref := range refs[1:] {
		mustGet(t, st, ref, s.value(fmt.Sprint(i+1), 41+i))
	}
}

// concurrent: many goroutines, on both handles, each the only writer of
// its refs, create, replace, read and delete at once.
func (s *suite) concurrent(t *testing.T) {
	a, b := s.newStores(t)
	const workers, each = 16, 4
	refs := make([][]string, workers)
	for w := range refs {
		for range each {
			refs[w] = append(refs[w], s.ref("conc"))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*4)
	for w := range workers {
		st := alternate(w, a, b)
		wg.Go(func() {
			for i, ref := range refs[w] {
				var rev uint64
				for round := range 2 {
					v := s.value(fmt.Sprintf("%s-%d", ref, round), 60)
					next, err := st.PutWrapped(context.Background(), ref, v, rev)
					if err != nil {
						errs <- fmt.Errorf("PutWrapped(%q, expecting %d): %w", ref, rev, err)
						return
					}
					got, gotRev, err := st.GetWrapped(context.Background(), ref)
					if err != nil || gotRev != next || !bytes.Equal(got, v) {
						errs <- fmt.Errorf("GetWrapped(%q) after a put = %x, %d, %v; want %x at %d", ref, got, gotRev, err, v, next)
					}
					rev = next
				}
				if i%2 == 1 {
					if err := st.DeleteWrapped(context.Background(), ref); err != nil {
						errs <- fmt.Errorf("DeleteWrapped(%q): %w", ref, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for w := range workers {
		for i, ref := range refs[w] {
			if i%2 == 1 {
				mustAbsent(t, b, ref)
			} else {
				mustGet(t, b, ref, s.value(ref+"-1", 60))
			}
		}
	}
}

// invalidArgument: an empty ref, for every method, and an empty record.
func (s *suite) invalidArgument(t *testing.T) {
	st := s.newStore(t)
	if _, _, err := st.GetWrapped(context.Background(), ""); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("GetWrapped(\"\") = %v, want ErrInvalidArgument", err)
	}
	if _, err := st.PutWrapped(context.Background(), "", []byte{1}, 0); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("PutWrapped(\"\") = %v, want ErrInvalidArgument", err)
	}
	if err := st.DeleteWrapped(context.Background(), ""); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("DeleteWrapped(\"\") = %v, want ErrInvalidArgument", err)
	}
	ref := s.ref("inv")
	for _, v := range [][]byte{nil, {}} {
		if _, err := st.PutWrapped(context.Background(), ref, v, 0); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("PutWrapped of an empty record = %v, want ErrInvalidArgument", err)
		}
	}
	mustAbsent(t, st, ref)
}
