package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/adapters/scheduler"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// withKeys enables n backups, each of its own KMS instance holding a key
// created before one incremental and rotated before the next, so that
// every backup has slices with sealed key material.
func withKeys(t *testing.T, e *Engine, n int) []*domain.Backup {
	t.Helper()
	ctx := context.Background()
	var bs []*domain.Backup
	var keys []domain.KeyID
	for range n {
		in, b := e.EnabledBackup("UTC")
		bs = append(bs, b)
		keys = append(keys, Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "scrubbed")).ID)
	}
	e.Advance(5 * time.Minute)
	for _, k := range keys {
		Must(e.KMS.RotateKey(ctx, e.Caller, k, ""))
	}
	e.Advance(5 * time.Minute)
	for i, b := range bs {
		bs[i] = Must(e.Backups.ShowBackupInstance(e.Caller, b.ID))
	}
	return bs
}

// slices returns the slice blobs of a backup's current generation.
func sliceBlobs(t *testing.T, e *Engine, b *domain.Backup) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, c := range e.CheckpointEvents(b.ID) {
		if c.Generation != b.Generation {
			continue
		}
		for _, p := range c.SliceParts() {
			out[p.Name] = Must(e.Store.GetBlob(context.Background(), b.DataRef(), p.Name))
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no slice", b.ID)
	}
	return out
}

// flipByte changes one byte of one slice blob of b, as bit rot would: the
// blobs are stored again, one of them with a byte flipped.
func flipByte(t *testing.T, e *Engine, b *domain.Backup) {
	t.Helper()
	ctx := context.Background()
	blobs := sliceBlobs(t, e, b)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range blobs {
			if !yield(n) {
				return
			}
		}
	})
	if err := e.Store.DestroyBlobs(ctx, b.DataRef()); err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		data := blobs[n]
		if i == len(names)-1 {
			data = bytes.Clone(data)
			data[len(data)/2] ^= 0x10
		}
		if err := e.Store.PutBlob(ctx, b.DataRef(), n, data); err != nil {
			t.Fatal(err)
		}
	}
}

// scrubMetrics serves the scrub's status as the server does and gathers
// the verify metrics: name{account="...",backup="..."} -> value.
func scrubMetrics(t *testing.T, s *scheduler.Scrub) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	(&httpapi.Server{Registry: reg, Tenants: reg, ScrubStatus: s.Status}).Handler()
	names := []string{"kmsbackup_verify_last_run_timestamp_seconds", "kmsbackup_verify_last_run_duration_seconds",
		"kmsbackup_verify_last_run_backups", "kmsbackup_verify_findings", "kmsbackup_verify_errors_total"}
	if problems, err := testutil.GatherAndLint(reg, names...); err != nil || len(problems) != 0 {
		t.Fatalf("the verify metrics fail promtool's lint: %v %+v", err, problems)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if !slices.Contains(names, f.GetName()) {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := f.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			out[key] = v
		}
	}
	return out
}

func findingsKey(b *domain.Backup) string {
	return fmt.Sprintf("kmsbackup_verify_findings{account=%q,backup=%q}", b.Account, b.ID)
}

// TestScrubFindsTampering: a background scrub verifies every instance
// that holds data (enabled, expired, an upload), finds a flipped byte in a
// slice blob, a missing blob and key versions that do not open, exports
// each in the metrics under the instance's label (0 for the clean ones),
// and logs one warning per damaged instance.
func TestScrubFindsTampering(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	ctx := context.Background()
	bs := withKeys(t, e, 5)
	clean, flipped, missing, undecryptable, expired := bs[0], bs[1], bs[2], bs[3], bs[4]
	file, key := e.download(clean.ID, "2026-05-01")
	upload := Must(e.upload(e.Caller, file, key, "scrubbed upload"))
	// The expiry the scheduler would record at the end of the term.
	if err := e.Backups.ExpireBackupInstance(ctx, expired.ID, expired.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	expired = Must(e.Backups.ShowBackupInstance(e.Caller, expired.ID))
	if expired.State != domain.StateExpired {
		t.Fatalf("expired instance is %s", expired.State)
	}
	if _, err := e.Checkpoints.VerifyBackup(ctx, e.Caller, expired.ID); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("verify of an expired instance for its account: %v (only the scrub verifies it)", err)
	}

	flipByte(t, e, flipped)
	if err := e.Store.DestroyBlobs(ctx, missing.DataRef()); err != nil {
		t.Fatal(err)
	}
	if err := e.Storage.DataKeys.DestroyDataKey(ctx, undecryptable.DataRef()); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	var logMu sync.Mutex
	scrub := &scheduler.Scrub{Scrubber: e.Checkpoints, Throttle: scheduler.NewByteRate(64 << 20),
		Logger: slog.New(slog.NewTextHandler(&lockedBuffer{mu: &logMu, b: &logs}, nil))}
	before := scrubMetrics(t, scrub)
	if before["kmsbackup_verify_last_run_timestamp_seconds"] != 0 || len(before) != 4 {
		t.Fatalf("metrics before any run: %v", before)
	}
	run, err := scrub.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if run.Checked != 6 || run.WithFindings != 3 || run.Errors != 0 || run.Skipped != 0 {
		t.Fatalf("run = %+v, want 6 checked (4 enabled, 1 expired, 1 upload), 3 with findings", run)
	}
	if !run.Started.Equal(e.Clock.Now()) || !run.Ended.Equal(e.Clock.Now()) {
		t.Fatalf("run %s to %s, want the clock's %s", run.Started, run.Ended, e.Clock.Now())
	}

	want := map[domain.BackupID]string{flipped.ID: commands.FindingChecksum, missing.ID: commands.FindingMissingSlice,
		undecryptable.ID: commands.FindingUndecryptable}
	for _, b := range []*domain.Backup{clean, flipped, missing, undecryptable, expired, upload} {
		r, ok := scrub.Result(b.ID)
		if !ok || r.Err != nil || r.Account != b.Account || r.Generation != b.Generation {
			t.Fatalf("result of %s: %+v %v", b.ID, r, ok)
		}
		kind, damaged := want[b.ID]
		if damaged != (r.Findings() > 0) || (damaged && !slices.Contains(r.Kinds(), kind)) {
			t.Errorf("%s: findings %+v, want kind %q", b.ID, r.Report.Findings, kind)
		}
	}

	m := scrubMetrics(t, scrub)
	for _, b := range []*domain.Backup{clean, expired, upload} {
		if v, ok := m[findingsKey(b)]; !ok || v != 0 {
			t.Errorf("%s: %v %v, want 0 findings exported", findingsKey(b), v, ok)
		}
	}
	for _, b := range []*domain.Backup{flipped, missing, undecryptable} {
		r, _ := scrub.Result(b.ID)
		if v := m[findingsKey(b)]; v == 0 || v != float64(r.Findings()) {
			t.Errorf("%s = %v, want its %d findings", findingsKey(b), v, r.Findings())
		}
	}
	if m["kmsbackup_verify_last_run_timestamp_seconds"] != float64(e.Clock.Now().Unix()) ||
		m["kmsbackup_verify_last_run_backups"] != 6 || m["kmsbackup_verify_errors_total"] != 0 ||
		m["kmsbackup_verify_last_run_duration_seconds"] != 0 {
		t.Errorf("run metrics: %v", m)
	}

	logMu.Lock()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	logMu.Unlock()
	var warned []string
	for _, l := range lines {
		if strings.Contains(l, "level=WARN") {
			warned = append(warned, l)
		}
	}
	if len(warned) != 3 {
		t.Fatalf("want one warning per damaged instance, got:\n%s", strings.Join(lines, "\n"))
	}
	for _, b := range []*domain.Backup{flipped, missing, undecryptable} {
		n := 0
		for _, l := range warned {
			if strings.Contains(l, string(b.ID)) && strings.Contains(l, "kinds="+want[b.ID]) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d warnings name %s with kind %s:\n%s", n, b.ID, want[b.ID], strings.Join(warned, "\n"))
		}
	}
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// unavailableBlobs is the engine's blob store, unavailable for one data ref
// (a network store that cannot be reached).
type unavailableBlobs struct {
	commands.BlobStore
	ref string
}

func (u unavailableBlobs) GetBlob(ctx context.Context, ref, name string) ([]byte, error) {
	if ref == u.ref {
		return nil, fmt.Errorf("blob store: %w: connection refused", domain.ErrUnavailable)
	}
	return u.BlobStore.GetBlob(ctx, ref, name)
}

// TestScrubErrorIsNotAFinding: data that cannot be read (the blob store is
// unavailable) is an error of the scrub, counted and logged, not damage.
func TestScrubErrorIsNotAFinding(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	bs := withKeys(t, e, 2)
	e.Storage.Blobs = unavailableBlobs{BlobStore: e.Store, ref: bs[1].DataRef()}
	scrub := &scheduler.Scrub{Scrubber: e.Checkpoints}
	run, err := scrub.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if run.Checked != 1 || run.Errors != 1 || run.WithFindings != 0 {
		t.Fatalf("run = %+v, want 1 checked and 1 error", run)
	}
	r, ok := scrub.Result(bs[1].ID)
	if !ok || !errors.Is(r.Err, domain.ErrUnavailable) || r.Findings() != 0 {
		t.Fatalf("result of the unreadable instance: %+v", r)
	}
	m := scrubMetrics(t, scrub)
	if _, ok := m[findingsKey(bs[1])]; ok {
		t.Errorf("an instance that could not be verified is exported with findings: %v", m)
	}
	if m[findingsKey(bs[0])] != 0 || m["kmsbackup_verify_errors_total"] != 1 || m["kmsbackup_verify_last_run_backups"] != 1 {
		t.Errorf("metrics: %v", m)
	}
	// The API's verify says the same: unavailable, not a report.
	if _, err := e.Checkpoints.VerifyBackup(context.Background(), e.Caller, bs[1].ID); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("verify of unreadable data: %v, want unavailable", err)
	}
	if err := scrub.Healthy(); err != nil {
		t.Errorf("an instance that cannot be read makes the scrub unhealthy: %v", err)
	}
}

// gate is a Throttle that stops the scrub at every read until the test
// lets it go on.
type gate struct{ paused, resume chan struct{} }

func newGate() *gate { return &gate{paused: make(chan struct{}), resume: make(chan struct{})} }

func (g *gate) WaitN(ctx context.Context, _ int) error {
	select {
	case g.paused <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-g.resume:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// scrubThrough runs a scrub through g in a goroutine and calls atPause at
// each read it paces, while the scrub waits, until it ends.
func scrubThrough(t *testing.T, e *Engine, g *gate, atPause func()) (commands.ScrubRun, *resultLog) {
	t.Helper()
	runs, errs := make(chan commands.ScrubRun, 1), make(chan error, 1)
	results := &resultLog{}
	go func() {
		run, err := e.Checkpoints.ScrubBackups(context.Background(), commands.ScrubOptions{Throttle: g, Result: results.add})
		if err != nil {
			errs <- err
			return
		}
		runs <- run
	}()
	for {
		select {
		case <-g.paused:
			atPause()
			g.resume <- struct{}{}
		case run := <-runs:
			return run, results
		case err := <-errs:
			t.Fatal(err)
		}
	}
}

type resultLog struct {
	mu  sync.Mutex
	all []commands.ScrubResult
}

func (l *resultLog) add(r commands.ScrubResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, r)
}

// TestScrubLeavesCheckpointsOnTime runs a scrub of many backups, two of
// them with chains longer than a page of the log, and stops it at every
// read it paces; while it is stopped mid-verification, the manual clock
// advances through the next incremental of every backup. Every checkpoint
// is taken at its instant (the scrub holds nothing they need: were it
// holding a backup's lock, the advance would time out), and the scrub,
// whose chains grew while it read them, reports every backup clean.
func TestScrubLeavesCheckpointsOnTime(t *testing.T) {
	start := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	e := NewEngine(t, start)
	long := withKeys(t, e, 2)
	e.Advance(84 * time.Hour) // 1,000 and more checkpoints: the chain spans two pages of the log
	bs := append(long, withKeys(t, e, 10)...)
	for _, b := range long {
		if b := Must(e.Backups.ShowBackupInstance(e.Caller, b.ID)); b.Checkpoints <= 1000 {
			t.Fatalf("%s has %d checkpoints, want more than a page", b.ID, b.Checkpoints)
		}
	}

	steps := 0
	run, results := scrubThrough(t, e, newGate(), func() {
		if steps < 60 {
			steps++
			advanceOnTime(t, e, bs)
		}
	})
	if steps < 30 {
		t.Fatalf("the scrub paused only %d times", steps)
	}
	if run.Checked != len(bs) || run.WithFindings != 0 || run.Errors != 0 {
		for _, r := range results.all {
			if r.Findings() > 0 || r.Err != nil {
				t.Logf("%s: %v %+v", r.Backup, r.Err, r.Report.Findings)
			}
		}
		t.Fatalf("run = %+v, want %d clean backups", run, len(bs))
	}
	// Every chain is whole: a checkpoint every 5 minutes from enable to now.
	for _, b := range bs {
		cps := e.CheckpointEvents(b.ID)
		for i := 1; i < len(cps); i++ {
			if d := cps[i].At.Sub(cps[i-1].At); d != domain.IncrementalEvery && !cps[i].Full {
				t.Fatalf("%s: checkpoint %d at %s, %s after the previous", b.ID, cps[i].Seq, cps[i].At, d)
			}
		}
		if last := cps[len(cps)-1]; !last.At.Equal(e.Clock.Now()) {
			t.Fatalf("%s: last checkpoint at %s, the clock is at %s", b.ID, last.At, e.Clock.Now())
		}
		if rep := Must(e.Checkpoints.VerifyBackup(context.Background(), e.Caller, b.ID)); len(rep.Findings) != 0 {
			t.Fatalf("%s: %+v", b.ID, rep.Findings)
		}
	}
}

// advanceOnTime moves the clock to the next incremental, with a bound on
// how long that may take, and checks that every backup took it at its
// instant.
func advanceOnTime(t *testing.T, e *Engine, bs []*domain.Backup) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now, n, err := e.Driver.Advance(ctx, domain.IncrementalEvery)
	if err != nil {
		t.Fatalf("advance while the scrub is paused: %v", err)
	}
	if n != len(bs) {
		t.Fatalf("advance to %s did %d pieces of work, want %d", now, n, len(bs))
	}
	for _, b := range bs {
		b := Must(e.Backups.ShowBackupInstance(e.Caller, b.ID))
		if last := latest(b.LastFullAt, b.LastIncremental); !last.Equal(now) {
			t.Fatalf("%s: last checkpoint at %s, due at %s", b.ID, last, now)
		}
	}
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TestScrubSkipsWhatIsDestroyed: an instance reset while the scrub
// verifies it has lost its data; the scrub reports nothing for it.
func TestScrubSkipsWhatIsDestroyed(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	bs := withKeys(t, e, 3)
	slices.SortFunc(bs, func(a, b *domain.Backup) int { return strings.Compare(string(a.ID), string(b.ID)) })
	reset := false
	run, results := scrubThrough(t, e, newGate(), func() {
		if !reset { // the scrub is reading the first instance
			reset = true
			Must(e.Backups.ResetBackupInstance(context.Background(), e.Caller, bs[0].ID, true))
		}
	})
	if run.Skipped != 1 || run.Checked != 2 || run.WithFindings != 0 || run.Errors != 0 {
		t.Fatalf("run = %+v, want the reset instance skipped and 2 clean", run)
	}
	for _, r := range results.all {
		if r.Backup == bs[0].ID {
			t.Fatalf("a result for the reset instance: %+v", r)
		}
	}
}

// TestScrubRunsOnItsOwn: the runner scrubs by itself on the real clock
// every Interval, and not at all with an Interval of 0.
func TestScrubRunsOnItsOwn(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	bs := withKeys(t, e, 2)

	off := &scheduler.Scrub{Scrubber: e.Checkpoints}
	if err := off.Run(t.Context()); err != nil || off.Status().LastRun.Checked != 0 {
		t.Fatalf("Run with no interval: %v, %+v", err, off.Status().LastRun)
	}

	s := &scheduler.Scrub{Scrubber: e.Checkpoints, Interval: 20 * time.Millisecond, Throttle: scheduler.NewByteRate(64 << 20)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for s.Status().LastRun.Checked != len(bs) {
		if time.Now().After(deadline) {
			t.Fatalf("no run completed: %+v", s.Status())
		}
		time.Sleep(5 * time.Millisecond) // polling for the state asserted
	}
	if err := s.Healthy(); err != nil {
		t.Errorf("Healthy after a run: %v", err)
	}
	if r, ok := s.Result(bs[0].ID); !ok || r.Findings() != 0 || r.Err != nil {
		t.Errorf("result: %+v %v", r, ok)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}
