package natsjs

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// BenchmarkAppend measures appends to an in-process server that fsyncs
// every commit: one at a time to one stream, and from 8 goroutines per CPU
// to a stream each (which group commit publishes together).
func BenchmarkAppend(b *testing.B) {
	url, _ := natsserver.Start(b)
	for _, size := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			l := MustOpen(b, url, uniqueOptions())
			stream := fmt.Sprintf("kms-bench-%d", size)
			batches := make([][]domain.Event, b.N)
			for i := range batches {
				batches[i] = eventlog.Events(stream, uint64(i), size)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := l.Append(b.Context(), stream, domain.ExpectAny, batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
		b.Run(fmt.Sprintf("batch=%d/parallel", size), func(b *testing.B) {
			l := MustOpen(b, url, uniqueOptions())
			var n atomic.Int64
			b.SetParallelism(8) // 8 goroutines per CPU
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				g := n.Add(1)
				stream := fmt.Sprintf("kms-bench-%d-%d", size, g)
				seed := uint64(g) << 32
				for pb.Next() {
					seed++
					if _, err := l.Append(b.Context(), stream, domain.ExpectAny, eventlog.Events(stream, seed, size)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
