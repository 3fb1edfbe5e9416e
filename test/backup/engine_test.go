package backup

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/backupfile"
	"github.com/kmsbackup/kmsbackup/adapters/clock"
	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/adapters/ids"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/adapters/scheduler"
	"github.com/kmsbackup/kmsbackup/cmd/engine"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// Engine is the backup engine assembled as the server assembles it
// (cmd/engine), on a manual clock, in-process: its use cases are those of
// the embedded engine.Engine, made again at each open.
type Engine struct {
	*engine.Engine
	t      testing.TB
	dir    string
	master []byte
	Store  *pebblestore.Store       // the log, data keys and blobs
	Proj   *pebblestore.Projections // the read models
	Clock  *clock.Manual
	// Storage is where the backup use cases keep their data, shared by
	// them all: tests set its blob store and the size of parts.
	Storage *commands.BackupStorage
	Driver  *scheduler.Manual
	Caller  commands.Caller
	cancel  context.CancelFunc
	done    chan struct{}
	procs   []*commands.Projector
	// TolerateCorruption keeps a projector that refuses corrupt input from
	// failing the test (tamper tests provoke exactly that).
	TolerateCorruption atomic.Bool
	// Configure, when set, adjusts the use cases each time the engine
	// opens (a restart makes them again): the size of parts, the rebase
	// policy.
	Configure func(e *Engine)
}

// configure sets fn as e's Configure and applies it now.
func (e *Engine) configure(fn func(e *Engine)) {
	e.Configure = fn
	fn(e)
}

// NewEngine starts an engine at start with a fresh data directory.
func NewEngine(t testing.TB, start time.Time) *Engine {
	t.Helper()
	master := make([]byte, 32)
	_, _ = rand.Read(master)
	return newEngineAt(t, t.TempDir(), master, domain.NewAccountID(ids.Random{Clock: clock.System{}}.NewULID()), start)
}

// newEngineAt starts an engine on the data directory dir (made if needed)
// with master key master, acting for account, at start.
func newEngineAt(t testing.TB, dir string, master []byte, account domain.AccountID, start time.Time) *Engine {
	t.Helper()
	e := &Engine{t: t, dir: dir, master: master, Clock: clock.NewManual(start), Caller: commands.Caller{Account: account}}
	e.open()
	t.Cleanup(e.Close)
	return e
}

func (e *Engine) open() {
	t := e.t
	t.Helper()
	st, err := pebblestore.Open(filepath.Join(e.dir, "db"), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	proj, err := pebblestore.OpenProjections(filepath.Join(e.dir, "projections"), pebblestore.Options{}, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := proj.DropProjection(backupdata.LegacyName, []byte(backupdata.LegacyPrefix)); err != nil {
		t.Fatal(err)
	}
	env, err := envelope.New(e.master, st)
	if err != nil {
		t.Fatal(err)
	}
	scratch, err := pebblestore.NewScratches(filepath.Join(e.dir, "scratch"), pebblestore.ScratchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.Store, e.Proj = st, proj
	eng := engine.New(engine.Ports{Log: st, ReadModels: proj, Blobs: st, Keys: env, Scratch: scratch,
		Files: backupfile.New(), Clock: e.Clock}, engine.Options{})
	e.Engine, e.procs, e.Storage = eng, eng.Projectors(), eng.Checkpoints.Storage
	if e.Configure != nil {
		e.Configure(e)
	}
	e.Driver = &scheduler.Manual{Work: e.Schedule, Clock: e.Clock}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan struct{})
	go func() {
		defer close(e.done)
		errs := make(chan error, len(e.procs))
		for _, p := range e.procs {
			go func() { errs <- p.Run(ctx) }()
		}
		for range e.procs {
			if err := <-errs; err != nil && !(e.TolerateCorruption.Load() && domain.IsCorruption(err)) {
				t.Errorf("projector: %v", err)
			}
		}
	}()
	e.CaughtUp()
}

// CaughtUp waits until every read model shows the whole log as it is now.
func (e *Engine) CaughtUp() {
	e.t.Helper()
	ctx := context.Background()
	head, err := e.Store.Head(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range e.procs {
		if err := p.WaitFor(ctx, head); err != nil {
			e.t.Fatal(err)
		}
	}
}

// Close stops the engine.
func (e *Engine) Close() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	<-e.done
	_ = e.Proj.Close()
	_ = e.Store.Close()
	e.cancel = nil
}

// Restart stops the engine and opens it again on the same data (the clock
// keeps its time unless the test moved it).
func (e *Engine) Restart() {
	e.Close()
	e.open()
}

// DownUntil stops the engine, moves the clock to at while it is down, and
// starts it again: the start catches up (today's missed full, one
// incremental for the rest).
func (e *Engine) DownUntil(at time.Time) {
	e.t.Helper()
	e.Close()
	e.Clock.Set(at)
	e.open()
	if _, err := e.Driver.Start(context.Background()); err != nil {
		e.t.Fatalf("start after downtime: %v", err)
	}
}

// Advance moves the clock forward, doing the work due on the way.
func (e *Engine) Advance(d time.Duration) int {
	e.t.Helper()
	_, n, err := e.Driver.Advance(context.Background(), d)
	if err != nil {
		e.t.Fatalf("advance %s: %v", d, err)
	}
	return n
}

// Must returns v, or panics with err (the test then fails with its stack).
func Must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return v
}

// EnabledBackup creates a KMS instance and a provisioned backup instance
// bound to it in zone tz.
func (e *Engine) EnabledBackup(tz string) (*domain.Instance, *domain.Backup) {
	t := e.t
	t.Helper()
	ctx := context.Background()
	in := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "cn-hangzhou"}))
	b := Must(e.Backups.CreateBackupInstance(ctx, e.Caller, commands.CreateBackupInput{Region: "cn-hangzhou", ViewableDays: 30, Term: "1y"}))
	b = Must(e.Backups.EnableBackupInstance(ctx, e.Caller, b.ID, commands.EnableInput{KMSInstance: in.ID, Alias: "prod", TimeZone: tz}))
	return in, b
}

// CheckpointEvents reads a backup's checkpoint events from the log.
func (e *Engine) CheckpointEvents(id domain.BackupID) []*domain.BackupCheckpointed {
	t := e.t
	t.Helper()
	var out []*domain.BackupCheckpointed
	for from := uint64(0); ; {
		page := Must(e.Store.ReadStream(context.Background(), domain.BackupStream(id), from, false, 1000))
		for _, ev := range page {
			from = ev.Revision + 1
			if ev.Type == domain.TypeBackupCheckpointed {
				d := Must(ev.Decode())
				out = append(out, d.(*domain.BackupCheckpointed))
			}
		}
		if len(page) < 1000 {
			return out
		}
	}
}

// RestoreReq is a restore request as a client writes it: strings, parsed
// as the API parses them (typed) before the use case sees them.
type RestoreReq struct {
	From          domain.BackupID
	Day, At       string
	Keys, Secrets []string
	All           bool
	ToInstance    domain.InstanceID
	ToRegion      string
}

// typed parses r as the API does; a request the API would refuse fails the test.
func (r RestoreReq) typed(tb testing.TB) commands.RestoreRequest {
	tb.Helper()
	var p commands.RestorePoint
	if r.Day != "" {
		p.Day = Must(domain.ParseDay(r.Day))
	}
	if r.At != "" {
		p.At = Must(time.Parse(time.RFC3339, r.At))
	}
	sel, err := domain.ParseRestoreSelection(r.All, r.Keys, r.Secrets)
	if err != nil {
		tb.Fatal(err)
	}
	return commands.RestoreRequest{From: r.From, Point: p, Selection: sel, Target: r.ToInstance, Region: r.ToRegion}
}

// restore plans and applies a restore as the engine's caller.
func restore(tb testing.TB, e *Engine, r RestoreReq) (*commands.RestoreResult, error) {
	tb.Helper()
	return e.Restores.Restore(context.Background(), e.Caller, r.typed(tb), nil)
}

// planRestore plans a restore as the engine's caller.
func planRestore(tb testing.TB, e *Engine, r RestoreReq) (*commands.RestorePlan, error) {
	tb.Helper()
	return e.Restores.PlanRestore(context.Background(), e.Caller, r.typed(tb), nil)
}
