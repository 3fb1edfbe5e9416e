package pebblestore

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/cockroachdb/pebble/v2"
)

// The writer's filter of the streams the log holds. Checking an append's
// expected revision reads its stream's head: a seek into every memtable
// and level, whose cost is the same whether the stream exists or not. Most
// new streams are reservation streams of names never used (a create, each
// item of a restore), so the writer keeps a Bloom filter of every stream
// that exists: a stream the filter does not hold has no event, and its
// head is known without reading Pebble. A Bloom filter has no false
// negative, so the filter decides only "no stream"; a stream it may hold is
// read as before.
//
// The filter is built at start on a goroutine of its own, by a scan of the
// stream index (keys only, in chunks so that Close never waits for a long
// scan); until it is ready the writer reads every head from Pebble and
// notes the streams it creates (pending), which it adds to the filter when
// it takes it: a stream created during the scan is in the scan or in
// pending. A failed scan (the store closing, a read error) leaves the
// writer without a filter. A filter that has taken more streams than it was
// sized for (its false positives grow) is dropped at the start of the next
// group and built again.

const (
	// streamFilterFP is the filter's false-positive rate at its capacity.
	streamFilterFP = 0.01
	// streamScanChunk is how many stream-index keys the scan reads while
	// it holds the store open.
	streamScanChunk = 1 << 16
)

var (
	// minStreamFilter is the least capacity of a filter, in streams (about
	// 1.2 MiB of bits at streamFilterFP); tests lower it.
	minStreamFilter uint = 1 << 20
	// testFilterHooks, set by tests, are the hooks of the stores opened
	// while it is set.
	testFilterHooks *filterHooks
)

// filterHooks are called, when set (by tests), as a build's scan begins
// and once its scan has ended, before the writer can take the filter, on
// the build's goroutine (scanStarts, built), and when the writer takes a
// built filter, on the writer's (taken).
type filterHooks struct {
	scanStarts, built, taken func()
}

// streamFilter is a built filter and the number of streams it was sized for.
type streamFilter struct {
	f        *bloom.BloomFilter
	capacity uint
}

// streamFilterState is the writer's side of the filter. Only the writer
// goroutine touches it.
type streamFilterState struct {
	filter  *streamFilter // nil while none is ready
	added   uint          // streams the filter holds
	pending []string      // streams created since the build began
	ready   chan *streamFilter
}

// startStreamFilter begins a build of the filter.
func (w *writer) startStreamFilter() {
	w.streams.filter, w.streams.added, w.streams.pending = nil, 0, nil
	ready := make(chan *streamFilter, 1)
	w.streams.ready = ready
	w.s.builds.Go(func() {
		f, _ := w.s.buildStreamFilter()
		if h := w.s.filterHooks; h != nil {
			h.built()
		}
		ready <- f // nil: the build failed
	})
}

// takeStreamFilter, at the start of a group, takes a filter that is ready,
// adding the streams created while it was built, or begins a new build of
// a filter that holds more streams than it was sized for. (At the start of
// a group every stream created is in the database, where the build's scan
// finds it.)
func (w *writer) takeStreamFilter() {
	if f := w.streams.filter; f != nil && w.streams.added > f.capacity {
		w.startStreamFilter()
		return
	}
	if w.streams.filter != nil || w.streams.ready == nil {
		return
	}
	select {
	case f := <-w.streams.ready:
		w.streams.filter, w.streams.ready = f, nil
		if f == nil { // the build failed: every head is read from Pebble
			w.streams.pending = nil
			return
		}
		w.streams.added = uint(f.f.ApproximatedSize())
		for _, s := range w.streams.pending {
			w.addStream(s)
		}
		w.streams.pending = nil
		if h := w.s.filterHooks; h != nil {
			h.taken()
		}
	default:
	}
}

// noStream tells whether stream surely has no event.
func (w *writer) noStream(stream string) bool {
	f := w.streams.filter
	return f != nil && !f.f.TestString(stream)
}

// addStream notes a stream the writer creates.
func (w *writer) addStream(stream string) {
	f := w.streams.filter
	if f == nil {
		if w.streams.ready != nil {
			w.streams.pending = append(w.streams.pending, stream)
		}
		return
	}
	f.f.AddString(stream)
	w.streams.added++
}

// buildStreamFilter scans the stream index and returns a filter of its
// streams, sized for twice as many; false when the store closed or failed
// meanwhile (the writer then reads every head from Pebble).
func (s *Store) buildStreamFilter() (*streamFilter, bool) {
	if h := s.filterHooks; h != nil {
		h.scanStarts()
	}
	n := uint(0)
	if !s.eachStream(func([]byte) { n++ }) {
		return nil, false
	}
	capacity := max(2*n, minStreamFilter)
	f := &streamFilter{f: bloom.NewWithEstimates(capacity, streamFilterFP), capacity: capacity}
	if !s.eachStream(func(stream []byte) { f.f.Add(stream) }) {
		return nil, false
	}
	return f, true
}

// eachStream calls fn with every stream of the stream index, once (the
// bytes are fn's only during the call), in chunks of streamScanChunk keys
// each read holding the store open. False when the store closed or a read
// failed.
func (s *Store) eachStream(fn func([]byte)) bool {
	lower := []byte{nsStream}
	upper := []byte{nsStream + 1}
	var last []byte
	for {
		if err := s.enter("scan streams"); err != nil {
			return false
		}
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			s.leave()
			return false
		}
		read := 0
		valid := it.First()
		for ; valid && read < streamScanChunk; valid = it.Next() {
			read++
			stream, ok := streamOfKey(it.Key())
			if !ok || bytes.Equal(stream, last) {
				continue
			}
			fn(stream)
			last = append(last[:0], stream...)
		}
		if valid {
			lower = append(lower[:0:0], it.Key()...)
		}
		ierr := errors.Join(it.Error(), it.Close())
		s.leave()
		if ierr != nil {
			return false
		}
		if !valid {
			return true
		}
	}
}

// streamOfKey is the stream of a stream-index key (a part of k).
func streamOfKey(k []byte) ([]byte, bool) {
	if len(k) < 1+1+8 || k[0] != nsStream {
		return nil, false
	}
	n, w := binary.Uvarint(k[1:])
	if w <= 0 || uint64(len(k)) != uint64(1+w)+n+8 {
		return nil, false
	}
	return k[1+w : 1+w+int(n)], true
}
