package esdb

import (
	"context"
	"errors"
	"testing"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

// TestKeyRevisions: a record's revision names its generation and event
// number, comes back as the expected revision of the append that replaces
// it, and grows with both, so that a ref's revisions grow across its
// generations; revisions the store never gives are recognised.
func TestKeyRevisions(t *testing.T) {
	type at struct{ gen, n uint64 }
	points := []at{{0, 0}, {0, 1}, {0, 41}, {0, 1<<revGenShift - 2}, {1, 0}, {1, 7}, {12, 0}, {maxGenerations - 1, 1<<revGenShift - 2}}
	var last uint64
	for i, p := range points {
		rev, err := keyRevision("test", "kms_1", p.gen, p.n)
		if err != nil {
			t.Fatalf("keyRevision(%d, %d): %v", p.gen, p.n, err)
		}
		if rev == 0 || (i > 0 && rev <= last) {
			t.Fatalf("keyRevision(%d, %d) = %d after %d: want it above 0 and growing", p.gen, p.n, rev, last)
		}
		last = rev
		gen, want, ok := expectedAppend(rev)
		if !ok || gen != p.gen {
			t.Fatalf("expectedAppend(%d) = generation %d, %v; want %d", rev, gen, ok, p.gen)
		}
		if diff := cmp.Diff(esdbclient.ExpectedRevision(esdbclient.Revision(p.n)), want); diff != "" {
			t.Fatalf("expectedAppend(%d): expected revision (-want +got):\n%s", rev, diff)
		}
	}
	if gen, want, ok := expectedAppend(0); !ok || gen != 0 || want != (esdbclient.NoStream{}) {
		t.Errorf("expectedAppend(0) = %d, %v, %v; want generation 0, no stream", gen, want, ok)
	}
	for _, rev := range []uint64{1 << revGenShift, 5 << revGenShift, maxGenerations << revGenShift, maxGenerations<<revGenShift | 1, ^uint64(0)} {
		if gen, want, ok := expectedAppend(rev); ok {
			t.Errorf("expectedAppend(%#x) = %d, %v: a revision the store never gives", rev, gen, want)
		}
	}
	for _, p := range []at{{0, 1<<revGenShift - 1}, {0, ^uint64(0)}, {maxGenerations, 0}} {
		if _, err := keyRevision("test", "kms_1", p.gen, p.n); !errors.Is(err, domain.ErrFailedPrecondition) {
			t.Errorf("keyRevision(%d, %d) = %v, want ErrFailedPrecondition", p.gen, p.n, err)
		}
	}
}

// TestPutWrappedRefusesUnknownRevisions: a put expecting a revision the
// store never gives is refused as a lost race without asking the server
// (there is none here: asking is ErrUnavailable).
func TestPutWrappedRefusesUnknownRevisions(t *testing.T) {
	k := NewKeyStore(idleLog(t, Options{Logger: testLogger(t)}))
	for _, rev := range []uint64{1 << revGenShift, maxGenerations << revGenShift} {
		if _, err := k.PutWrapped(context.Background(), "kms_1", []byte("wrapped"), rev); !errors.Is(err, domain.ErrWrongExpectedRevision) {
			t.Errorf("PutWrapped expecting %#x = %v, want ErrWrongExpectedRevision", rev, err)
		}
	}
	if _, err := k.PutWrapped(context.Background(), "kms_1", []byte("wrapped"), 1); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("PutWrapped expecting a revision it gives, with the server down = %v, want ErrUnavailable", err)
	}
}
