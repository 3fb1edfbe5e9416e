package pebblestore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// BenchmarkOpen measures what the checks of Open cost against opening the
// database alone, on a log store of 100k ~300-byte events (about 40 MB of
// sstables, in the page cache):
//
//	pebble        pebble.Open and Close of the same directory, read-write
//	checked       Open and Close, every table already validated (a restart)
//	validate-all  Open and Close with no record: every table read whole
//
// The cost of the log's count against its mark is not in it (a clean
// shutdown leaves nothing to count); BenchmarkMarkCount measures it.
func BenchmarkOpen(b *testing.B) {
	dir, size := benchStore(b, 100_000)
	b.Logf("%d MiB of sstables", size>>20)
	logger := discardLogger()
	b.Run("pebble", func(b *testing.B) {
		po := pebbleOptions(dir, Options{Logger: logger}, newTableChecker(vfs.Default, dir, logStoreKind, logger))
		defer po.Cache.Unref()
		for b.Loop() {
			db, err := pebble.Open(dir, po)
			if err != nil {
				b.Fatal(err)
			}
			if err := db.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	open := func(b *testing.B) {
		s, err := Open(dir, Options{Logger: logger, MarkInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("checked", func(b *testing.B) {
		open(b)
		for b.Loop() {
			open(b)
		}
	})
	b.Run("validate-all", func(b *testing.B) {
		for b.Loop() {
			if err := os.Remove(filepath.Join(dir, checkedTablesFile)); err != nil {
				b.Fatal(err)
			}
			open(b)
		}
	})
}

// BenchmarkMarkCount measures the count of the log keys written since the
// last flush that Open makes after a crash, per event.
func BenchmarkMarkCount(b *testing.B) {
	dir, _ := benchStore(b, 100_000)
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Logger: pebbleLogger{l: discardLogger()}})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	head, _, err := readHead(db)
	if err != nil {
		b.Fatal(err)
	}
	// A mark that says nothing was flushed: every position is counted.
	if err := writeFileAtomic(vfs.Default, dir, logMarkFile, logMark{head: head}.encode()); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := checkMark(vfs.Default, dir, db, head); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(head), "ns/event")
}

// benchStore makes a closed log store of n events and returns its
// directory and the bytes of its sstables.
func benchStore(b *testing.B, n int) (string, int64) {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "db")
	s, err := Open(dir, Options{Logger: discardLogger(), MarkInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	ids := newBenchIDs(0)
	const batch = 1000
	for i := 0; i < n; i += batch {
		evs := make([]domain.Event, batch)
		for j := range evs {
			evs[j] = benchEvent("kms-bench", ids.next(), i+j)
		}
		if _, err := s.Append(context.Background(), "kms-bench", domain.ExpectAny, evs); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		size += info.Size()
	}
	if size == 0 {
		b.Fatal(fmt.Errorf("no sstable in %s", dir))
	}
	return dir, size
}

// BenchmarkMarkIngest measures what keeping the high-water mark costs
// durable ingest: two stores take turns as in BenchmarkIngest (8
// appenders, batches of 10), one writing its mark every second and
// flushing every 2 seconds (60 times more often than by default), the
// other never; b.N is the number of events each ingests.
func BenchmarkMarkIngest(b *testing.B) {
	c := ingestCase{8, 10}
	perRound, events := c.rounds(b.N)
	marked := newStoreIngest(b, c, Options{FlushInterval: 2 * time.Second})
	plain := newStoreIngest(b, c, Options{MarkInterval: -1, FlushInterval: -1})
	b.ResetTimer()
	plainTime, markedTime := takeTurns(b, plain, marked, perRound)
	b.StopTimer()
	marked.check(b, events)
	plain.check(b, events)
	b.ReportMetric(float64(events)/markedTime.Seconds(), "marked-events/s")
	b.ReportMetric(float64(events)/plainTime.Seconds(), "plain-events/s")
	b.ReportMetric(plainTime.Seconds()/markedTime.Seconds(), "marked/plain")
}

// BenchmarkStreamFilterBuild measures the scan with which the writer builds
// its filter of streams at start (streams.go, on a goroutine of its own
// beside the first appends), on a log of 200k streams of one event each
// (each appended alone: one stream-index entry per stream), against a raw
// Pebble scan of the same stream-index keys.
func BenchmarkStreamFilterBuild(b *testing.B) {
	const streams = 200_000
	dir := filepath.Join(b.TempDir(), "db")
	s, err := Open(dir, Options{Logger: discardLogger(), MarkInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	ids := newBenchIDs(0)
	const batch = 500
	for i := 0; i < streams; i += batch {
		parts := make([]commands.StreamAppend, batch)
		for j := range parts {
			stream := fmt.Sprintf("name-%064x", i+j)
			parts[j] = commands.StreamAppend{Stream: stream, Expected: domain.ExpectNoStream,
				Events: []domain.Event{benchEvent(stream, ids.next(), i+j)}}
		}
		if _, err := s.AppendMulti(context.Background(), parts); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("filter", func(b *testing.B) {
		for b.Loop() {
			f, ok := s.buildStreamFilter()
			if !ok || f.f.ApproximatedSize() < streams*9/10 {
				b.Fatalf("filter built: %v", ok)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/streams, "ns/stream")
	})
	b.Run("raw-scan", func(b *testing.B) {
		for b.Loop() {
			it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{nsStream}, UpperBound: []byte{nsStream + 1}})
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for valid := it.First(); valid; valid = it.Next() {
				n++
			}
			if err := it.Close(); err != nil || n < streams {
				b.Fatalf("scan: %d keys, %v", n, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/streams, "ns/stream")
	})
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}
