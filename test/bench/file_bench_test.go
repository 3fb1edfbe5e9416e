package bench

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// ---------------------------------------------------------------------------
// Download and upload of backup data files (commands/download_backup_file.go,
// commands/upload_backup_file.go, the format in docs/backup-file.md),
// against AES-256-GCM alone on 64 KiB chunks, the format's chunk cipher:
//
//	go test -run '^$' -bench 'DownloadDay|UploadDay|RawAESGCM|DayStateReads' -benchtime 3x ./test/bench/
//
// The day downloaded is built once per size and per test binary (see
// fileStateOf) and shared by both benchmarks and every -count run (and by
// BenchmarkDayStateReads, which shows where the download's time goes).

// fileDay is the day every file state downloads: its full at 00:00 and the
// incrementals of its first 20 minutes.
var fileDay = time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC)

const (
	// fileIncrementals is how many incrementals with changes follow the
	// day's full, five minutes apart.
	fileIncrementals = 4
	// fileGOGC is the GC percent of the untimed operation that measures
	// the heap an operation keeps (retained-MiB): the heap is collected
	// whenever it grows 10% above what is live, so the peak above the
	// baseline is what the operation holds, plus 10% of the heap.
	fileGOGC = 10
)

// fileState is an engine whose backup holds a day to download: n keys
// (a fifth of them with a second version) and n/10 secrets (at most
// 50,000) at the day's full, then fileIncrementals incrementals, each rotating n/100 random
// keys, deleting n/1000 and creating as many, creating n/1000 secrets and
// rotating n/1000 random ones.
type fileState struct {
	n      int
	e      *engine
	backup domain.BackupID
	day    string
	// What a download of the day gives (the same every time).
	header domain.FileHeader
	size   int64 // bytes of the file
	// onAppend, when set, is called as DayFiles appends to the log (the
	// upload's one append, once both passes over the file are done).
	onAppend func()
}

// markedLog is the engine's log, calling its state's onAppend before each
// append.
type markedLog struct {
	backupsLog
	s *fileState
}

type backupsLog = interface {
	commands.EventAppender
	commands.MultiAppender
	commands.StreamReader
	commands.LogReader
}

func (l markedLog) Append(ctx context.Context, stream string, expected domain.ExpectedRevision, events []domain.Event) (commands.AppendResult, error) {
	l.mark()
	return l.backupsLog.Append(ctx, stream, expected, events)
}

func (l markedLog) AppendMulti(ctx context.Context, parts []commands.StreamAppend) ([]commands.AppendResult, error) {
	l.mark()
	return l.backupsLog.AppendMulti(ctx, parts)
}

func (l markedLog) mark() {
	if l.s.onAppend != nil {
		l.s.onAppend()
	}
}

// items is the keys and secrets of the file.
func (s *fileState) items() uint64 { return s.header.Keys + s.header.Secrets }

var (
	fileMu     sync.Mutex
	fileStates = map[int]*fileState{}
)

// fileStateOf returns the shared file state of n keys, building it the
// first time (untimed: b.Loop resets the timer, and the engine lives in
// the test binary's root directory so that both benchmarks use it).
func fileStateOf(tb testing.TB, n int) *fileState {
	tb.Helper()
	fileMu.Lock()
	defer fileMu.Unlock()
	if s, ok := fileStates[n]; ok {
		return s
	}
	start := time.Now()
	s, err := buildFileState(context.Background(), filepath.Join(root, fmt.Sprintf("file-%d", n)), n)
	if err != nil {
		tb.Fatalf("build a day of %d keys: %v", n, err)
	}
	tb.Logf("day of %d keys built in %s: %d keys, %d secrets, %d checkpoints, %d records, %d bytes (%.0f B per item)",
		n, time.Since(start).Round(time.Millisecond), s.header.Keys, s.header.Secrets, s.header.Checkpoints,
		s.header.Records, s.size, float64(s.size)/float64(s.items()))
	fileStates[n] = s
	return s
}

func closeFileStates() {
	fileMu.Lock()
	defer fileMu.Unlock()
	for n, s := range fileStates {
		_ = s.e.close()
		delete(fileStates, n)
	}
}

// buildFileState builds the history in dir. Keys and their rotations are
// appended straight to the log (as keys does); secrets go through the
// KMS use cases, whose values are encrypted under keys that are never
// deleted. The day before fileDay: the keys, the rotations, the secrets,
// and the backup enabled at 23:50 (its first full copies them). fileDay:
// the daily full at 00:00, then fileIncrementals five-minute windows of
// changes, each closed by its incremental. Then the database is compacted
// (see engine.compact), and one download gives the file's size.
func buildFileState(ctx context.Context, dir string, n int) (*fileState, error) {
	e, err := openEngine(dir, fileDay.Add(-4*time.Hour))
	if err != nil {
		return nil, err
	}
	s, err := fillFileState(ctx, e, n)
	if err != nil {
		_ = e.close()
		return nil, err
	}
	return s, nil
}

func fillFileState(ctx context.Context, e *engine, n int) (*fileState, error) {
	in, err := e.KMS.CreateInstance(ctx, e.caller, commands.CreateInstanceInput{Region: region, KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota})
	if err != nil {
		return nil, err
	}
	k := newKeys(e, in, uint64(n))
	for len(k.ids) < n {
		for range min(n-len(k.ids), 5000) {
			if err := k.create(ctx); err != nil {
				return nil, err
			}
		}
		if err := k.flush(ctx); err != nil {
			return nil, err
		}
		e.clock.Advance(time.Second)
	}
	// A fifth of the keys get a second version (the first keys excepted:
	// they encrypt the secrets and stay as they are).
	reserved := max(n/100, 1)
	for i := range n / 5 {
		if err := k.rotate(ctx, reserved+4*i); err != nil {
			return nil, err
		}
	}
	if err := k.flush(ctx); err != nil {
		return nil, err
	}
	// The keys' IDs (80 MiB at 1M) are not kept past the build: at the
	// default GOGC the collector lets garbage grow with the live heap, so a
	// harness holding them would show its own slack in the upload's peak.
	s := &fileState{n: n, e: e, day: string(domain.DayOf(fileDay, time.UTC))}
	secrets := 0
	secretOps := func(create, rotate int) error {
		if err := e.settle(ctx); err != nil {
			return err
		}
		for range create {
			if _, err := e.KMS.CreateSecret(ctx, e.caller, commands.CreateSecretInput{Name: fmt.Sprintf("secret-%06d", secrets),
				Instance: in.ID, Key: k.ids[secrets%reserved], Value: domain.Plaintext(fmt.Sprintf("value %06d of a benchmark secret", secrets))}); err != nil {
				return err
			}
			secrets++
		}
		for i := range rotate {
			name := fmt.Sprintf("secret-%06d", k.rng.IntN(secrets))
			if _, err := e.KMS.RotateSecret(ctx, e.caller, name, region, domain.Plaintext(fmt.Sprintf("value %06d rotated", i))); err != nil {
				return err
			}
		}
		// The KMS appended to the stream: continue from its head.
		cur, err := e.KMS.ShowInstance(e.caller, in.ID)
		if err != nil {
			return err
		}
		k.rev = cur.Revision
		return nil
	}
	// n/10 secrets, within an instance's quota (with those the
	// incrementals create): 50,000 at 1M keys.
	if err := secretOps(min(n/10, domain.MaxQuota/2), 0); err != nil {
		return nil, err
	}
	e.clock.Set(fileDay.Add(-10 * time.Minute))
	b, err := e.enableBackup(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	s.backup = b.ID
	if _, _, err := e.driver.Advance(ctx, 10*time.Minute); err != nil { // the day's full
		return nil, err
	}
	for w := range fileIncrementals {
		e.clock.Set(fileDay.Add(time.Duration(5*w+1) * time.Minute))
		for range n / 100 {
			if err := k.rotate(ctx, k.randomLive()); err != nil {
				return nil, err
			}
		}
		for range n / 1000 {
			i := k.randomLive()
			for i < reserved {
				i = k.randomLive()
			}
			k.remove(i)
			if err := k.create(ctx); err != nil {
				return nil, err
			}
		}
		if err := k.flush(ctx); err != nil {
			return nil, err
		}
		if err := secretOps(n/1000, n/1000); err != nil {
			return nil, err
		}
		if _, _, err := e.driver.Advance(ctx, fileDay.Add(time.Duration(5*(w+1))*time.Minute).Sub(e.clock.Now())); err != nil {
			return nil, err
		}
	}
	if err := e.compact(); err != nil {
		return nil, err
	}
	e.Files.Log = markedLog{backupsLog: e.Files.Log, s: s}
	var w countingWriter
	h, _, err := s.download(ctx, &w)
	if err != nil {
		return nil, err
	}
	if h.Checkpoints != 1+fileIncrementals {
		return nil, fmt.Errorf("the file holds %d checkpoints, want %d", h.Checkpoints, 1+fileIncrementals)
	}
	s.header, s.size = h, w.n
	return s, nil
}

// download writes the day's file to w and returns its header and data key.
func (s *fileState) download(ctx context.Context, w io.Writer) (domain.FileHeader, string, error) {
	var key string
	h, err := s.e.Files.DownloadDay(ctx, s.e.caller, s.backup, s.day, w, func(st commands.DownloadStart) error {
		key = st.DataKey
		return nil
	})
	return h, key, err
}

// uploadPhases adds up the time uploads spend in each phase: the pass
// over the file (each record checked, key material resealed, the starting
// state replayed into a scratch store, the later segments stored as slice
// parts, then the index of items and IDs read back and the base written)
// and the commit (the upload's events appended, and the wait until
// backupstate and backupdata have applied them).
type uploadPhases struct {
	pass, commit time.Duration
}

// upload uploads the file at path under key, adds the time of each phase
// to ph (if not nil), and tells hs (if not nil) when each phase begins.
func (s *fileState) upload(ctx context.Context, path, key string, ph *uploadPhases, hs *heapSampler) (*domain.Backup, error) {
	var opened []*os.File
	start := time.Now()
	var appended time.Time
	s.onAppend = func() {
		appended = time.Now()
		hs.setPhase(phaseCommit)
	}
	defer func() {
		s.onAppend = nil
		for _, f := range opened {
			_ = f.Close()
		}
	}()
	u, err := s.e.Files.UploadBackupFile(ctx, s.e.caller, "bench-upload", key, func() (io.Reader, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		opened = append(opened, f)
		return f, nil
	})
	if ph != nil && err == nil {
		ph.pass += appended.Sub(start)
		ph.commit += time.Since(appended)
	}
	return u, err
}

// deleteUpload deletes an upload and waits until the engine is idle.
func (s *fileState) deleteUpload(ctx context.Context, id domain.BackupID) error {
	if err := s.e.Files.DeleteUpload(ctx, s.e.caller, id); err != nil {
		return err
	}
	return s.e.settle(ctx)
}

// downloadTo downloads the day into a new file in dir and returns its path
// and data key.
func (s *fileState) downloadTo(ctx context.Context, dir string) (string, string, error) {
	f, err := os.CreateTemp(dir, "day-*.kmsbk")
	if err != nil {
		return "", "", err
	}
	_, key, err := s.download(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return f.Name(), key, err
}

// damagedCopy copies the file at path into dir with one bit of its last
// chunk flipped, and returns the copy's path.
func damagedCopy(path, dir string) (string, error) {
	src, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	dst, err := os.CreateTemp(dir, "damaged-*.kmsbk")
	if err != nil {
		return "", err
	}
	n, err := io.Copy(dst, src)
	if err == nil {
		var b [1]byte
		if _, err = dst.ReadAt(b[:], n-20); err == nil {
			b[0] ^= 0x08
			_, err = dst.WriteAt(b[:], n-20)
		}
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return dst.Name(), err
}

// countingWriter counts what is written to it and drops it.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// ---------------------------------------------------------------------------
// The heap during one operation.

// heapObjects is the heap memory of objects, live or not yet swept: what
// the heap holds at an instant, read without stopping the world. heapLive
// is the heap the last collection found live: what the program held then,
// without its garbage.
const (
	heapObjects = "/memory/classes/heap/objects:bytes"
	heapLive    = "/gc/heap/live:bytes"
)

func heapNow(sample []metrics.Sample) uint64 {
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// heapSampler records the peak of heapObjects, every 5 ms, from its start
// (after a collection) to its stop, and the peak of each phase of the
// operation (an upload's pass and commit), as the operation announces them
// with setPhase; and the peak of heapLive.
type heapSampler struct {
	base, baseLive uint64
	phase          atomic.Int32
	profile        atomic.Bool // write heapProfile at each new high of heapLive
	stop           chan struct{}
	done           chan [2 * phases]uint64 // the peak of each phase, then of heapLive in each
}

// The phases of an upload; other operations have only the first.
const (
	phasePass = iota
	phaseCommit
	phases
)

func startHeapSampler() *heapSampler {
	runtime.GC()
	sample := []metrics.Sample{{Name: heapObjects}, {Name: heapLive}}
	metrics.Read(sample)
	s := &heapSampler{base: sample[0].Value.Uint64(), baseLive: sample[1].Value.Uint64(), stop: make(chan struct{}),
		done: make(chan [2 * phases]uint64)}
	go func() {
		sample := []metrics.Sample{{Name: heapObjects}, {Name: heapLive}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var peaks [2 * phases]uint64
		peaks[0], peaks[phases] = s.base, s.baseLive // the peaks start at the base
		profiled := s.baseLive
		read := func() {
			metrics.Read(sample)
			p := s.phase.Load()
			peaks[p] = max(peaks[p], sample[0].Value.Uint64())
			peaks[phases+p] = max(peaks[phases+p], sample[1].Value.Uint64())
			if live := sample[1].Value.Uint64(); s.profile.Load() && live > profiled+1<<20 {
				profiled = live
				writeHeapProfile(heapProfile)
			}
		}
		for {
			select {
			case <-s.stop:
				read()
				s.done <- peaks
				return
			case <-t.C:
				read()
			}
		}
	}()
	return s
}

// heapProfile, from KMSBACKUP_BENCH_HEAPPROFILE, is a file that a heap
// profile is written to each time the sampler of the upload at GOGC=10
// (retainedPhases) sees a new high of the live heap (1 MiB above the
// last): the profile at the peak, to see what the live heap holds there.
var heapProfile = os.Getenv("KMSBACKUP_BENCH_HEAPPROFILE")

// cpuProfile, from KMSBACKUP_BENCH_CPUPROFILE, is a file that a CPU
// profile of BenchmarkUploadDay's timed uploads alone is written to (the
// build of the day and the untimed uploads left out, which -cpuprofile
// counts in), and of BenchmarkRestoreHistory's measured rounds.
var cpuProfile = os.Getenv("KMSBACKUP_BENCH_CPUPROFILE")

// startCPUProfile starts the CPU profile of cpuProfile, if set, and
// returns what stops it.
func startCPUProfile(tb testing.TB) func() {
	if cpuProfile == "" {
		return func() {}
	}
	f, err := os.Create(cpuProfile)
	if err != nil {
		tb.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		tb.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = pprof.Lookup("heap").WriteTo(f, 0)
}

// setPhase tells s (if not nil) that phase p of the operation begins.
func (s *heapSampler) setPhase(p int) {
	if s != nil {
		s.phase.Store(int32(p))
	}
}

// peakMiB stops the sampler and returns the peak above the heap before
// the operation, in MiB.
func (s *heapSampler) peakMiB() float64 {
	all, _, _ := s.peaksMiB()
	return all
}

// peaksMiB stops the sampler and returns the peak above the heap before
// the operation, that of each phase (0 for a phase never sampled), and
// the peak of the live heap above the live heap before it in each phase,
// in MiB.
func (s *heapSampler) peaksMiB() (all float64, each, live [phases]float64) {
	close(s.stop)
	peaks := <-s.done
	for p := range phases {
		if v := peaks[p]; v > s.base {
			each[p] = mib(float64(v - s.base))
		}
		if v := peaks[phases+p]; v > s.baseLive {
			live[p] = mib(float64(v - s.baseLive))
		}
		all = max(all, each[p])
	}
	return all, each, live
}

// retained runs op once with the collector at fileGOGC and returns the
// peak heap above the heap before it, in MiB: close to what op holds at
// its peak, whatever the rest of the heap and the allocation rate. It also
// returns the heap before op (after a collection) and how long op took.
func retained(op func() error) (kept, before float64, took time.Duration, err error) {
	kept, _, _, before, took, err = retainedPhases(func(*heapSampler) error { return op() })
	return kept, before, took, err
}

// retainedPhases is retained with the peak of each phase op announces to
// the sampler it is given, and the peak of the live heap above the live
// heap before op (what op held at a collection, without garbage).
func retainedPhases(op func(*heapSampler) error) (kept float64, each, live [phases]float64, before float64, took time.Duration, err error) {
	old := debug.SetGCPercent(fileGOGC)
	defer debug.SetGCPercent(old)
	s := startHeapSampler()
	s.profile.Store(heapProfile != "")
	start := time.Now()
	err = op(s)
	took = time.Since(start)
	kept, each, live = s.peaksMiB()
	return kept, each, live, mib(float64(s.base)), took, err
}

// ---------------------------------------------------------------------------
// The benchmarks.

// fileSizes are the states measured, named by their keys: items=10k holds
// 10,000 keys and 1,000 secrets at the day's full, and its file 11,080
// distinct items (the day's deleted and new ones included); items=100k ten
// times as many.
var fileSizes = []struct {
	name string
	n    int
}{{"items=10k", 10_000}, {"items=100k", 100_000}}

// uploadSizes are the states BenchmarkUploadDay measures: fileSizes, and
// items=1M (1,000,000 keys and 50,000 secrets at the day's full, the
// secret quota's half; about 300 MB of file, some minutes to build), which only `-bench` runs that
// name it or `make bench` reach (go test without -bench runs no
// benchmark).
var uploadSizes = append(fileSizes[:len(fileSizes):len(fileSizes)], struct {
	name string
	n    int
}{"items=1M", 1_000_000})

// BenchmarkDownloadDay downloads the day (its full's state, every version
// of every item, then its incrementals' slices, key material opened under
// the backup's data key and sealed into the file's 64 KiB AES-256-GCM
// chunks) into a writer that counts and drops the bytes. MB/s is of the
// file. peak-heap-MiB is the largest heap above the heap before an
// operation, sampled every 5 ms during every timed operation;
// retained-MiB the same in one more operation, untimed, with the
// collector at GOGC=10.
func BenchmarkDownloadDay(b *testing.B) {
	ctx := context.Background()
	for _, size := range fileSizes {
		b.Run(size.name, func(b *testing.B) {
			s := fileStateOf(b, size.n)
			b.SetBytes(s.size)
			peak := 0.0
			for b.Loop() {
				b.StopTimer()
				hs := startHeapSampler()
				var w countingWriter
				b.StartTimer()
				_, _, err := s.download(ctx, &w)
				b.StopTimer()
				peak = max(peak, hs.peakMiB())
				if err != nil {
					b.Fatal(err)
				}
				if w.n != s.size {
					b.Fatalf("downloaded %d bytes, want %d", w.n, s.size)
				}
				b.StartTimer()
			}
			b.StopTimer()
			perOp := b.Elapsed().Seconds() / float64(b.N)
			kept, before, took, err := retained(func() error {
				_, _, err := s.download(ctx, io.Discard)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(s.items())/perOp, "items/s")
			b.ReportMetric(peak, "peak-heap-MiB")
			b.ReportMetric(kept, "retained-MiB")
			b.ReportMetric(float64(s.size)/float64(s.items()), "B/item")
			b.Logf("%d items, %d records, %d bytes; heap before an operation %.1f MiB; at GOGC=%d the download took %s",
				s.items(), s.header.Records, s.size, before, fileGOGC, took.Round(time.Millisecond))
		})
	}
}

// BenchmarkUploadDay uploads the day's file (downloaded once, into a
// temporary file) again and again: one pass over the file (each record
// checked; key material resealed under the upload's new data key; the
// day's starting state replayed into a scratch store and written as base
// 0, the later segments stored as slice parts; the items and event IDs
// checked from a second scratch store), the upload's events appended, and
// the wait until both backup read models have applied them (backupdata
// loads base 0 into a scratch store and writes its rows in chunks, and
// reads the slices). Each upload is deleted after it, untimed. The heap
// metrics are DownloadDay's; retained-pass-MiB and retained-commit-MiB
// split retained-MiB by phase (the peak above the heap before the upload
// during each); live-MiB is the peak of the live heap (as the last
// collection found it, sampled with the others) above its value before
// the upload, in the same run at GOGC=10: what the upload held, without
// garbage (live-pass-MiB and live-commit-MiB in each phase);
// damaged-peak-heap-MiB is the peak of one more upload,
// untimed, of the file with a bit of its last chunk flipped (refused after
// the rest was read and stored, then removed). raw-MB/s is rawOpenSeal over the file's bytes, timed in
// the same run after the uploads of each size, and op/raw the upload's
// time over it.
func BenchmarkUploadDay(b *testing.B) {
	ctx := context.Background()
	for _, size := range uploadSizes {
		b.Run(size.name, func(b *testing.B) {
			s := fileStateOf(b, size.n)
			path, key, err := s.downloadTo(ctx, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(s.size)
			peak := 0.0
			var ph uploadPhases
			check := func(u *domain.Backup) {
				if u.Kind != domain.BackupUpload || u.UploadDay != domain.Day(s.day) {
					b.Fatalf("upload: %+v", u)
				}
				if err := s.deleteUpload(ctx, u.ID); err != nil {
					b.Fatal(err)
				}
			}
			wrote := diskWritten(b)
			stopProfile := startCPUProfile(b)
			cpu := processCPU()
			for b.Loop() {
				b.StopTimer()
				hs := startHeapSampler()
				b.StartTimer()
				u, err := s.upload(ctx, path, key, &ph, nil)
				b.StopTimer()
				peak = max(peak, hs.peakMiB())
				if err != nil {
					b.Fatal(err)
				}
				check(u)
				b.StartTimer()
			}
			b.StopTimer()
			cpu = processCPU() - cpu
			stopProfile()
			perOp := b.Elapsed().Seconds() / float64(b.N)
			wrote = diskWritten(b) - wrote
			var u *domain.Backup
			kept, each, live, before, took, err := retainedPhases(func(hs *heapSampler) (err error) {
				u, err = s.upload(ctx, path, key, nil, hs)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			check(u)
			// A file damaged in its last chunk fails after everything
			// before was stored: its heap, untimed.
			bad, err := damagedCopy(path, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			hs := startHeapSampler()
			_, err = s.upload(ctx, bad, key, nil, nil)
			damagedPeak := hs.peakMiB()
			if !domain.IsBadBackupFile(err) {
				b.Fatalf("upload of a damaged file: %v", err)
			}
			raw := rawOpenSeal(b, s.size)
			b.ReportMetric(float64(wrote)/float64(b.N)/float64(s.size), "disk-written/file")
			b.ReportMetric(float64(s.items())/perOp, "items/s")
			b.ReportMetric(float64(s.size)/raw.Seconds()/1e6, "raw-MB/s")
			b.ReportMetric(perOp/raw.Seconds(), "op/raw")
			b.ReportMetric(peak, "peak-heap-MiB")
			b.ReportMetric(damagedPeak, "damaged-peak-heap-MiB")
			b.ReportMetric(kept, "retained-MiB")
			b.ReportMetric(max(live[phasePass], live[phaseCommit]), "live-MiB")
			b.ReportMetric(live[phasePass], "live-pass-MiB")
			b.ReportMetric(live[phaseCommit], "live-commit-MiB")
			b.ReportMetric(each[phasePass], "retained-pass-MiB")
			b.ReportMetric(each[phaseCommit], "retained-commit-MiB")
			ops := float64(b.N)
			b.ReportMetric(ph.pass.Seconds()/ops, "pass-s/op")
			b.ReportMetric(ph.commit.Seconds()/ops, "commit-s/op")
			b.ReportMetric(cpu.Seconds()/ops, "cpu-s/op")
			b.Logf("%d items, %d records, %d bytes; heap before an operation %.1f MiB; at GOGC=%d the upload took %s",
				s.items(), s.header.Records, s.size, before, fileGOGC, took.Round(time.Millisecond))
		})
	}
}

// BenchmarkDayStateReads times the read of the state a day's file starts
// from (every live item at the day's full, with its versions: what
// DownloadDay reads before writing its incrementals) in three ways, in
// alternating rounds, and reports the median of each:
//
//   - loaded: the restore point at the full's instant loaded into a
//     scratch store (commands.DayData.Open: its base, then its slices) and
//     read item by item with every version, as DownloadDay reads it;
//   - rows: backupdata.StateAt, the item rows of the read model alone
//     (which hold no version);
//   - count: backupdata.CountState, the one scan of the rows with which
//     DownloadDay counts what the file's header promises.
func BenchmarkDayStateReads(b *testing.B) {
	for _, size := range fileSizes {
		b.Run(size.name, func(b *testing.B) {
			ctx := context.Background()
			s := fileStateOf(b, size.n)
			bk, err := backupstate.Get(s.e.proj, s.backup)
			if err != nil {
				b.Fatal(err)
			}
			ref := bk.DataRef()
			lo, hi, ok, err := backupdata.DayRange(s.e.proj, ref, domain.Day(s.day))
			if err != nil || !ok {
				b.Fatalf("day range: %v %v", ok, err)
			}
			full, err := backupdata.Checkpoint(s.e.proj, ref, lo)
			if err != nil || !full.Full {
				b.Fatalf("the day's first checkpoint: %+v %v", full, err)
			}
			var versions uint64
			var count backupdata.StateCount
			readers := []struct {
				name string
				run  func() error
			}{
				{"loaded", func() error {
					versions = 0
					src, err := s.e.Days.Open(ctx, bk, commands.RestorePoint{Day: full.Day, At: full.At}, nil)
					if err != nil {
						return err
					}
					defer src.Close()
					return src.Each(ctx, commands.ItemRef{}, func(it *commands.BackedUpItem) error {
						versions += uint64(len(it.Versions))
						return nil
					})
				}},
				{"rows", func() error {
					return backupdata.StateAt(s.e.proj, ref, full.Seq, func(backupdata.Item) error { return nil })
				}},
				{"count", func() (err error) {
					count, err = backupdata.CountState(s.e.proj, ref, full.Seq, lo, hi)
					return err
				}},
			}
			took := make([][]time.Duration, len(readers))
			b.ResetTimer()
			for i := range max(b.N, 3) {
				for j := range readers {
					r := (i + j) % len(readers) // rotate which goes first
					start := time.Now()
					if err := readers[r].run(); err != nil {
						b.Fatal(err)
					}
					took[r] = append(took[r], time.Since(start))
				}
			}
			b.StopTimer()
			if versions != s.header.Records-s.header.Checkpoints-fileSliceEvents(s) ||
				count.Versions != versions || count.Keys != s.header.Keys || count.Secrets != s.header.Secrets {
				b.Fatalf("read %d versions; counted %+v", versions, count)
			}
			b.ReportMetric(0, "ns/op")
			med := make([]time.Duration, len(readers))
			for j, r := range readers {
				med[j] = medianDur(took[j])
				b.ReportMetric(med[j].Seconds(), r.name+"-s")
			}
			b.Logf("%d versions; medians: loaded %s, rows %s, count %s", versions,
				med[0].Round(time.Millisecond), med[1].Round(time.Millisecond), med[2].Round(time.Millisecond))
		})
	}
}

// fileSliceEvents is the events of the day's incrementals, which the file
// holds after its base state.
func fileSliceEvents(s *fileState) uint64 {
	n := uint64(s.n)
	return fileIncrementals * (n/100 + 2*(n/1000) + 2*(n/1000))
}

// rawGCM is AES-256-GCM with the file format's nonce layout (an 11-byte
// big-endian chunk counter and a last-chunk flag) and 32 bytes of
// associated data (the header MAC).
type rawGCM struct {
	aead  cipher.AEAD
	ad    []byte
	nonce [12]byte
}

func newRawGCM(b *testing.B) *rawGCM {
	block, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	return &rawGCM{aead: aead, ad: make([]byte, 32)}
}

func (g *rawGCM) setNonce(counter uint64) {
	binary.BigEndian.PutUint64(g.nonce[3:11], counter)
}

const (
	rawChunk = 64 << 10
	// rawPayload is what one operation of the raw benchmarks seals or
	// opens, in rawChunk chunks: enough for -benchtime 3x to time them.
	rawPayload = 64 << 20
)

// rawOpenSeal is the upload's baseline, timed in the same run as the
// upload: opening size bytes of sealed 64 KiB chunks and sealing them
// again (an upload opens its file once and seals what it stores under a
// key of its own), with AES-256-GCM alone. It returns the median of 5
// rounds.
func rawOpenSeal(b *testing.B, size int64) time.Duration {
	g := newRawGCM(b)
	n := int((size + rawChunk - 1) / rawChunk)
	chunks := make([][]byte, n)
	for i := range chunks {
		g.setNonce(uint64(i))
		chunks[i] = g.aead.Seal(nil, g.nonce[:], make([]byte, rawChunk), g.ad)
	}
	buf := make([]byte, 0, rawChunk+g.aead.Overhead())
	var took []time.Duration
	for range 5 {
		start := time.Now()
		for i, c := range chunks {
			g.setNonce(uint64(i))
			pt, err := g.aead.Open(buf[:0], g.nonce[:], c, g.ad)
			if err != nil {
				b.Fatal(err)
			}
			g.aead.Seal(pt[:0], g.nonce[:], pt, g.ad)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	return took[len(took)/2]
}

// BenchmarkRawAESGCM64KiB is the baseline of the download: sealing 64 MiB
// in 64 KiB chunks in place, each with its counter nonce, nothing else.
func BenchmarkRawAESGCM64KiB(b *testing.B) {
	g := newRawGCM(b)
	buf := make([]byte, rawChunk, rawChunk+g.aead.Overhead())
	b.SetBytes(rawPayload)
	for b.Loop() {
		for i := range uint64(rawPayload / rawChunk) {
			g.setNonce(i)
			g.aead.Seal(buf[:0], g.nonce[:], buf[:rawChunk], g.ad)
		}
	}
}

// BenchmarkRawAESGCMOpen64KiB opens 64 MiB of sealed 64 KiB chunks (the
// upload opens every chunk once; BenchmarkUploadDay times its own
// baseline, rawOpenSeal, over the file's size in the same run).
func BenchmarkRawAESGCMOpen64KiB(b *testing.B) {
	g := newRawGCM(b)
	chunks := make([][]byte, rawPayload/rawChunk)
	for i := range chunks {
		g.setNonce(uint64(i))
		chunks[i] = g.aead.Seal(nil, g.nonce[:], make([]byte, rawChunk), g.ad)
	}
	dst := make([]byte, 0, rawChunk)
	b.SetBytes(rawPayload)
	for b.Loop() {
		for i, c := range chunks {
			g.setNonce(uint64(i))
			if _, err := g.aead.Open(dst, g.nonce[:], c, g.ad); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// A small round trip, so that plain go test keeps this code working.

func TestFileRoundTripSmall(t *testing.T) {
	ctx := context.Background()
	e, err := openEngine(t.TempDir(), fileDay.Add(-4*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.close() }()
	s, err := fillFileState(ctx, e, 1000)
	if err != nil {
		t.Fatal(err)
	}
	h := s.header
	// 1000 keys, 4 x 1 deleted and created; 100 secrets, 4 x 1 created.
	if h.Keys != 1000+4 || h.Secrets != 100+4 || s.size == 0 {
		t.Fatalf("header %+v, %d bytes", h, s.size)
	}
	path, key, err := s.downloadTo(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var ph uploadPhases
	u, err := s.upload(ctx, path, key, &ph, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ph.pass <= 0 || ph.commit <= 0 {
		t.Fatalf("upload phases: %+v", ph)
	}
	// The upload downloads as the same day, with the same content.
	var w countingWriter
	h2, err := e.Files.DownloadDay(ctx, e.caller, u.ID, "", &w, func(commands.DownloadStart) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if h2.Keys != h.Keys || h2.Secrets != h.Secrets || h2.Records != h.Records || h2.Day != h.Day || w.n != s.size {
		t.Fatalf("download of the upload: %+v, %d bytes; want %+v, %d bytes", h2, w.n, h, s.size)
	}
	if err := s.deleteUpload(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := backupstate.Get(e.proj, u.ID); err != nil || !got.Deleted() {
		t.Fatalf("after delete: %+v, %v", got, err)
	}
}

// diskWritten is what this process has written to disk so far
// (/proc/self/io's write_bytes: files of every store, their logs, flushes
// and compactions, once they reach the disk), for write amplification.
// 0 where the kernel does not count it.
func diskWritten(b *testing.B) int64 {
	b.Helper()
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.Fatalf("/proc/self/io: %q", line)
			}
			return n
		}
	}
	return 0
}
