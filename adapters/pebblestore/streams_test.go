package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
)

// TestStreamFilterKnowsEveryStream: the writer's filter of streams never
// lets an append expecting no stream through on a stream that exists:
// streams created before the first build's scan, between its scan and the
// writer taking the filter (which the scan did not see), streams created
// after, across the rebuilds of a
// filter outgrown (its least capacity lowered to 8), and streams found by
// the scan after a reopen. The writer's cache of heads holds one stream, so
// that the others are read through the filter. Streams never written still take their first
// append.
func TestStreamFilterKnowsEveryStream(t *testing.T) {
	defer func(m uint, c int) { minStreamFilter, maxCachedHeads, testFilterHooks = m, c, nil }(minStreamFilter, maxCachedHeads)
	minStreamFilter = 8
	maxCachedHeads = 1 // heads are read through the filter, not a cache
	scan, hand := make(chan struct{}), make(chan struct{})
	built, taken := make(chan struct{}, 64), make(chan struct{}, 64)
	testFilterHooks = &filterHooks{
		scanStarts: func() { <-scan },
		built:      func() { built <- struct{}{}; <-hand },
		taken:      func() { taken <- struct{}{} },
	}
	ctx := context.Background()
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	var streams []string
	create := func(s *Store) {
		t.Helper()
		stream := fmt.Sprintf("name-%03d", len(streams))
		mustAppend(t, s, stream, domain.ExpectNoStream, eventlog.Events(stream, 1, 1))
		streams = append(streams, stream)
	}
	seed := uint64(1)
	refused := func(s *Store, when string) {
		t.Helper()
		for _, stream := range streams {
			seed++ // new event IDs: not a retry of the first append
			_, err := s.Append(ctx, stream, domain.ExpectNoStream, eventlog.Events(stream, seed, 1))
			if !errors.Is(err, domain.ErrWrongExpectedRevision) {
				t.Fatalf("%s: append to %s expecting no stream: %v, want ErrWrongExpectedRevision", when, stream, err)
			}
		}
	}
	wait := func(c chan struct{}, what string) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatalf("no filter %s", what)
		}
	}

	for range 5 { // before the first build's scan
		create(s)
	}
	refused(s, "before the filter is built")
	close(scan)
	wait(built, "built")
	for range 5 { // after its scan, before the writer takes it
		create(s)
	}
	close(hand)
	takeNow := func() { // append until a group has taken the filter handed over
		t.Helper()
		for range 10_000 {
			create(s)
			select {
			case <-taken:
				return
			default:
			}
		}
		t.Fatal("no filter taken")
	}
	takeNow()
	refused(s, "with the first filter")
	for range 100 { // past the capacity: the filter is built again, several times
		create(s)
		refused(s, fmt.Sprintf("after %d streams", len(streams)))
	}
	if len(taken) == 0 {
		t.Fatalf("no filter was built again after %d streams (least capacity 8)", len(streams))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for len(built) > 0 {
		<-built
	}
	for len(taken) > 0 {
		<-taken
	}

	s = MustOpen(t, "db", fs)
	wait(built, "built after the reopen")
	takeNow()
	refused(s, "after a reopen")
}
