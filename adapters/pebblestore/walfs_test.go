package pebblestore

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
)

// allocatedLogBytes returns what the write-ahead log files of the database
// in dir hold (apparent size) and take on disk (allocated blocks, as du
// counts them).
func allocatedLogBytes(t testing.TB, dir string) (apparent, allocated int64) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			t.Skip("no block counts on this system")
		}
		apparent += info.Size()
		allocated += st.Blocks * 512
	}
	return apparent, allocated
}

// TestWriteAheadLogsTakeWhatTheyHold: Pebble reserved every write-ahead
// log file in steps of 110% of the memtable size (about 74 MiB with the
// store's 64 MiB memtables), so a store holding a few events took 74 MiB of
// disk per database. A log file now takes what it holds and what walFS
// reserves ahead of it (reserveAhead), and a few blocks of rounding.
func TestWriteAheadLogsTakeWhatTheyHold(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	s := MustOpen(t, dir, nil)
	mustAppend(t, s, "kms-a", domain.ExpectNoStream, eventlog.Events("kms-a", 1, 3))
	proj := filepath.Join(t.TempDir(), "projections")
	p := MustOpenProjections(t, proj, nil, nil)
	if err := p.Update("state", 1, func(tx projections.Txn) error { return tx.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, proj} {
		apparent, allocated := allocatedLogBytes(t, d)
		if allocated > apparent+reserveAhead(apparent)+64<<10 {
			t.Errorf("%s: the write-ahead log files hold %d bytes and take %d on disk", filepath.Base(d), apparent, allocated)
		}
	}
}

// TestProjectionsFlushWhileWritten: the read models' database flushes its
// memtable every FlushInterval in which it was written, as the log store
// does, so that its write-ahead log holds only the latest writes. Without
// it the log grew to a memtable (64 MiB) before Pebble started another,
// and kept up to three used ones beside it, on any deployment, however
// small.
func TestProjectionsFlushWhileWritten(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "projections")
	p, err := OpenProjections(dir, Options{FlushInterval: 10 * time.Millisecond, Logger: discardLogger()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	value := bytes.Repeat([]byte("v"), 1<<10)
	for i := range 1024 { // 1 MiB
		err := p.Update("state", uint64(i+1), func(tx projections.Txn) error {
			return tx.Set([]byte{byte(i >> 8), byte(i)}, value)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.db.Metrics().WAL.Size > 64<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("the write-ahead log still holds %d bytes of writes after 30 s", p.db.Metrics().WAL.Size)
		}
		time.Sleep(5 * time.Millisecond) // poll for the state asserted
	}
	// What was flushed reads back.
	if v, ok, err := p.Get([]byte{3, 255}); err != nil || !ok || !bytes.Equal(v, value) {
		t.Fatalf("Get after the flush = %d bytes, %v, %v", len(v), ok, err)
	}
}

// BenchmarkWALReserve compares raw Pebble synced batch appends (as
// BenchmarkIngest's raw side, on the store's options) with write-ahead log
// files reserved on disk three ways: by Pebble (110% of the 64 MiB
// memtable at a time), not at all, and by walFS ahead of the writes
// (reserveAhead, what the store does). The disk's fsync latency drifts
// by 2x and more over minutes on a shared machine, so the variants take
// turns in walRounds short rounds, each round in a rotated order, and
// each reports the median over the rounds of its rate over Pebble's in
// the same round, its overall rate, and what its log files take on disk
// afterwards. b.N is the number of events each variant appends.
func BenchmarkWALReserve(b *testing.B) {
	const walRounds = 12
	variants := []struct {
		name string
		fs   vfs.FS
	}{
		{"pebble", vfs.Default},
		{"none", walFS{FS: vfs.Default}},
		{"ahead", walFS{FS: vfs.Default, ahead: reserveAhead}},
	}
	for _, c := range []ingestCase{{1, 1}, {16, 1}, {4, 100}} {
		b.Run(fmt.Sprintf("appenders=%d/batch=%d", c.appenders, c.batch), func(b *testing.B) {
			perRound := max(1, b.N/(walRounds*c.appenders*c.batch))
			events := walRounds * perRound * c.appenders * c.batch
			ins := make([]*rawIngest, len(variants))
			for i, v := range variants {
				ins[i] = newRawIngest(b, c, v.fs)
			}
			took := make([]time.Duration, len(variants))
			ratios := make([][]float64, len(variants))
			b.ResetTimer()
			for round := range walRounds {
				this := make([]time.Duration, len(variants))
				for k := range variants {
					i := (round + k) % len(variants)
					this[i] = ins[i].run(b, perRound)
					took[i] += this[i]
				}
				for i := range variants {
					ratios[i] = append(ratios[i], this[0].Seconds()/this[i].Seconds())
				}
			}
			b.StopTimer()
			for i, v := range variants {
				ins[i].check(b, events)
				b.ReportMetric(float64(events)/took[i].Seconds(), v.name+"-events/s")
				if i > 0 {
					slices.Sort(ratios[i])
					b.ReportMetric(ratios[i][len(ratios[i])/2], v.name+"/pebble")
				}
				_, allocated := allocatedLogBytes(b, ins[i].dir)
				b.ReportMetric(float64(allocated)/(1<<20), v.name+"-wal-MiB")
			}
		})
	}
}
