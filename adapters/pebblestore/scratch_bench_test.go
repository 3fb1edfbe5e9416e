package pebblestore

import (
	"context"
	"encoding/binary"
	"testing"
)

// BenchmarkScratchSmallRecords writes 400,000 records of 30-byte keys (in
// a scattered order) and 20-byte values into a scratch store, as an
// upload's index and state write them, then reads them all back in order:
// the cost of a scratch's commits for small records (each batch must stay
// below Pebble's large-batch threshold, or it becomes a level-0 table of
// its own).
func BenchmarkScratchSmallRecords(b *testing.B) {
	const n = 400_000
	s, err := NewScratches(b.TempDir(), ScratchOptions{})
	if err != nil {
		b.Fatal(err)
	}
	k, v := make([]byte, 30), make([]byte, 20)
	for b.Loop() {
		sc, err := s.OpenScratch(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			binary.BigEndian.PutUint64(k[1:], uint64(i*7919%n))
			if err := sc.Set(k, v); err != nil {
				b.Fatal(err)
			}
		}
		if err := sc.Flush(); err != nil {
			b.Fatal(err)
		}
		it, err := sc.NewIter(nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for ok := it.First(); ok; ok = it.Next() {
			got++
		}
		if err := it.Close(); err != nil {
			b.Fatal(err)
		}
		if err := sc.Close(); err != nil {
			b.Fatal(err)
		}
		if got != n {
			b.Fatalf("read %d records, want %d", got, n)
		}
	}
}
