package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // time zones work on machines without a zone database

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kmsbackup/kmsbackup/adapters/backupfile"
	"github.com/kmsbackup/kmsbackup/adapters/console"
	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/adapters/httpedge"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/adapters/scheduler"
	"github.com/kmsbackup/kmsbackup/cmd/engine"
	"github.com/kmsbackup/kmsbackup/commands"
)

// The HTTP edge serves the API's and the console's guards; the accounts use
// cases serve the console's sessions.
var (
	_ httpapi.Guard    = (*httpedge.Edge)(nil)
	_ console.Guard    = (*httpedge.Edge)(nil)
	_ console.Sessions = (*commands.Accounts)(nil)
)

// Main is the server process: it opens the adapters a Config names,
// assembles the engine on them (cmd/engine, as the engine tests and the
// benchmarks do), serves the API and the console, and runs the background
// loops (projections, the scheduler, the scrub, the event publisher). The
// command's own tests run it in-process (startMain); test/e2e runs the
// built binary.
type Main struct {
	Config Config
	Stdout io.Writer // where --dev prints its tokens
	Logger *slog.Logger

	store    *pebblestore.Store       // embedded only: the log, data keys and blobs
	proj     *pebblestore.Projections // the read models
	env      *envelope.Envelope
	log      commands.EventLog
	keys     commands.KeyStore
	blobs    commands.BlobStore
	health   []healthCheck // what /readyz checks beside the loops
	listener net.Listener
	http     *http.Server
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closers  []func() error
	// clockStart is where a manual clock starts (checkClockStart), once
	// clockDecided.
	clockStart   time.Time
	clockDecided bool

	// DevToken is the token of account "dev" in --dev mode.
	DevToken string
	// AdminToken is the admin token in force (empty when none).
	AdminToken string

	// Fatal is called when a store meets an error it cannot go on from
	// (pebblestore.Options.Fatal); it must not return. The command line
	// prints the error and exits; nil panics with it.
	Fatal func(error)
}

// Addr is the address the API listens on (useful with --listen :0).
func (m *Main) Addr() string { return m.listener.Addr().String() }

// Run opens everything and starts serving; it returns once the API
// accepts connections. Close stops it.
func (m *Main) Run(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = m.Close()
		}
	}()
	cfg := m.Config
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	if m.Stdout == nil {
		m.Stdout = io.Discard
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	master, err := m.masterKey()
	if err != nil {
		return err
	}
	// Everything is checked before anything is written (openStores).
	if err := m.openStores(ctx, master); err != nil {
		return err
	}
	clear(master)
	env := m.env

	// Uploads wait here, still encrypted, while they are checked; what a
	// crash left behind is of no use.
	spool := filepath.Join(cfg.DataDir, "spool")
	if err := os.RemoveAll(spool); err != nil {
		return fmt.Errorf("clear the upload spool: %w", err)
	}
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return fmt.Errorf("create the upload spool: %w", err)
	}

	// Restores load their points, and bases are written, in temporary
	// databases here; what a crash left behind is removed.
	scratch, err := pebblestore.NewScratches(filepath.Join(cfg.DataDir, "scratch"), pebblestore.ScratchOptions{Logger: m.Logger})
	if err != nil {
		return fmt.Errorf("set up the scratch directory: %w", err)
	}

	clk, manual, err := m.clock(ctx)
	if err != nil {
		return err
	}
	m.AdminToken = cfg.AdminToken
	if cfg.Dev {
		if m.AdminToken, err = devTokenFile(filepath.Join(cfg.DataDir, "admin-token"), cfg.DevAdminToken); err != nil {
			return fmt.Errorf("dev admin token: %w", err)
		}
	}
	// Console sessions expire on the wall clock, whatever --clock says
	// (engine.Ports.SessionClock's default).
	eng := engine.New(engine.Ports{Log: m.log, ReadModels: m.proj, Blobs: m.blobs, Keys: env, Scratch: scratch,
		Files: backupfile.New(), Clock: clk}, engine.Options{AdminToken: m.AdminToken, RestoreBatch: cfg.RestoreBatch})
	projector, backupState, backupData := eng.KMSState, eng.BackupState, eng.BackupData
	backups, checkpoints, schedule, days, files := eng.Backups, eng.Checkpoints, eng.Schedule, eng.Days, eng.Files
	kms, accounts, restores, auditUC := eng.KMS, eng.Accounts, eng.Restores, eng.Audit

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	projectors := eng.Projectors()
	for _, p := range projectors {
		m.background(runCtx, "projection "+p.Name, p.Run)
	}
	var runner *scheduler.Runner
	var dc *devClock
	if manual != nil {
		driver := &scheduler.Manual{Work: schedule, Clock: manual}
		dc = &devClock{manual: manual, driver: driver}
		if err := m.waitProjections(ctx, projector, backupState, backupData); err != nil {
			return err
		}
		if _, err := driver.Start(ctx); err != nil {
			return fmt.Errorf("catch up backups: %w", err)
		}
	} else {
		runner = &scheduler.Runner{Work: schedule, Clock: clk, Logger: m.Logger}
		m.background(runCtx, "backup scheduler", func(ctx context.Context) error {
			if err := m.waitProjections(ctx, projector, backupState, backupData); err != nil {
				return err
			}
			if lag, behind, err := checkpoints.ClockBehind(); err == nil && behind {
				m.Logger.Warn("the system clock is behind the last checkpoint: no backup is taken until it passes it (/readyz?verbose shows it)",
					"clock", lag.Now.UTC().Format(time.RFC3339), "last_checkpoint", lag.Checkpoint.UTC().Format(time.RFC3339),
					"backup", lag.Backup, "behind", lag.Behind().Round(time.Second).String())
			}
			return runner.Run(ctx)
		})
		if cfg.Dev {
			dc = &devClock{real: clk}
		}
	}

	// The background verification of every backup: on the real clock
	// every --scrub-interval; with a manual clock only when asked (POST
	// /v1/dev/scrub), so that tests decide when it runs.
	scrub := &scheduler.Scrub{Scrubber: checkpoints, Interval: cfg.ScrubInterval, Logger: m.Logger}
	if n := cfg.ScrubBytesPerSecond(); n > 0 {
		scrub.Throttle = scheduler.NewByteRate(n)
	}
	if manual == nil && cfg.ScrubInterval > 0 {
		m.background(runCtx, "backup scrub", func(ctx context.Context) error {
			if err := m.waitProjections(ctx, backupState, backupData); err != nil {
				return err
			}
			return scrub.Run(ctx)
		})
	}

	events, err := m.startEvents(runCtx, projector)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Between the network and the handlers: timeouts and body deadlines,
	// the cap on unauthenticated requests, the limit on failed
	// authentications, the client behind --trusted-proxy.
	proxies, _ := httpedge.ParseTrustedProxies(cfg.TrustedProxies) // checked by Validate
	edge := httpedge.New(httpedge.Options{Limits: cfg.HTTP, TrustedProxies: proxies, CredentialCookie: console.CookieName,
		SignInPaths: []string{console.SignInPath}, Registerer: reg})
	api := &httpapi.Server{KMS: kms, Accounts: accounts, Auth: accounts, Guard: edge, Events: events, Registry: reg, Logger: m.Logger,
		MetricsToken:   cfg.MetricsToken,
		Backups:        backups,
		Days:           days,
		Checkpoints:    checkpoints,
		Files:          files,
		SpoolDir:       spool,
		MaxUpload:      cfg.MaxUpload,
		Restores:       restores,
		Audit:          auditUC,
		BackupGauges:   backups.ScheduledBackups,
		BackupFailures: backups.FailureTotals,
		FailingBackups: backups.FailingBackups,
		ClockBehind:    checkpoints.ClockBehind,
		ScrubStatus:    scrub.Status,
		LastScrub:      scrub.Result,
		Ready:          m.readyChecks(projectors, runner, events)}
	if dc != nil {
		api.DevClock = dc
	}
	if cfg.Dev {
		api.DevScrub = scrub
	}
	web := &console.Console{Backups: backups, Days: days, Checkpoints: checkpoints, Files: files, Restores: restores, KMS: kms, Sessions: accounts, Guard: edge, Logger: m.Logger,
		MaxUpload: cfg.MaxUpload, SpoolDir: spool, Registry: reg}
	if dc != nil {
		web.DevClock = dc
	}
	// Prepared downloads wait in the shared blob store until fetched or
	// expired (on the wall clock, as the console's expiry).
	m.background(runCtx, "download expiry", (&scheduler.DownloadExpiry{Expirer: files, Logger: m.Logger}).Run)
	m.http = edge.Server(routes(api.Handler(), web.Handler()), slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn))

	if cfg.Dev {
		if err := m.devSetup(ctx, accounts); err != nil {
			return err
		}
	}

	m.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another server running? choose another --listen)", cfg.Listen, err)
	}
	// Close clears m.http: the goroutine serves with its own copy.
	srv, ln := m.http, m.listener
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("API server stopped", "error", err)
		}
	}()
	m.Logger.Info("kmsbackup server listening", "addr", m.Addr(), "data_dir", cfg.DataDir, "dev", cfg.Dev)
	if cfg.Dev {
		fmt.Fprintf(m.Stdout, "kmsbackup --dev is listening on http://%s\n\n", m.Addr())
		fmt.Fprintf(m.Stdout, "  admin token:        %s\n", m.AdminToken)
		fmt.Fprintf(m.Stdout, "  account dev token:  %s\n", m.DevToken)
		fmt.Fprintf(m.Stdout, "  web console:        http://%s/ (sign in with the account dev token)\n", m.Addr())
		if manual != nil {
			fmt.Fprintf(m.Stdout, "  clock:              %s, manual (kmsbackup dev clock advance moves it; a restart continues from it)\n",
				manual.Now().UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintf(m.Stdout, "  clock:              the system's\n")
		}
		fmt.Fprintln(m.Stdout)
		// One line to paste into a client's shell: the account's address and
		// token, and the admin token for the admin commands (--token "$ADMIN_TOKEN").
		fmt.Fprintf(m.Stdout, "  export KMSBACKUP_ADDR=http://%s KMSBACKUP_TOKEN=%s ADMIN_TOKEN=%s\n\n", m.Addr(), m.DevToken, m.AdminToken)
		fmt.Fprintf(m.Stdout, "Development mode: the master key is in %s. Do not use --dev in production.\n",
			filepath.Join(cfg.DataDir, "master.key"))
	}
	return nil
}

// readyChecks are the checks of /readyz, by name: each projection, the
// scheduler (running on the real clock), each backend, the publisher of
// the public event stream. A backup instance whose scheduled work fails is
// not among them: it is its own problem (/readyz?verbose names it).
func (m *Main) readyChecks(projectors []*commands.Projector, runner *scheduler.Runner, events *eventStream) []httpapi.ReadyCheck {
	var checks []httpapi.ReadyCheck
	for _, p := range projectors {
		checks = append(checks, httpapi.ReadyCheck{Name: "projection " + p.Name, Check: func(context.Context) error { return p.Healthy() }})
	}
	if runner != nil {
		checks = append(checks, httpapi.ReadyCheck{Name: "scheduler", Check: func(context.Context) error { return runner.Healthy() }})
	}
	for _, c := range m.health {
		checks = append(checks, httpapi.ReadyCheck{Name: c.name, Check: c.check})
	}
	return append(checks, httpapi.ReadyCheck{Name: "event publisher", Check: func(context.Context) error { return events.Healthy() }})
}

// routes serves the JSON API under /v1/ with the health and metrics
// endpoints, and the web console at every other path.
func routes(api, web http.Handler) http.Handler {
	mux := http.NewServeMux()
	for _, p := range []string{"/v1/", "/livez", "/readyz", "/metrics"} {
		mux.Handle(p, api)
	}
	mux.Handle("/", web)
	return mux
}

// background runs a loop until the server closes; a loop that fails is
// logged (and reported by /readyz through its owner's health).
func (m *Main) background(ctx context.Context, name string, run func(context.Context) error) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := run(ctx); err != nil && ctx.Err() == nil {
			m.Logger.Error("background loop stopped", "loop", name, "error", err)
		}
	}()
}

func (m *Main) masterKey() ([]byte, error) {
	cfg := m.Config
	if cfg.Dev && cfg.MasterKeyFile == "" && cfg.MasterKeyEnv == "" {
		key, path, created, err := envelope.EnsureDevMasterKey(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("dev master key: %w", err)
		}
		if created {
			m.Logger.Warn("generated a development master key", "path", path)
		}
		return key, nil
	}
	key, err := envelope.LoadMasterKey(cfg.MasterKeyFile, cfg.MasterKeyEnv)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	return key, nil
}

// devTokenFile returns a --dev token: override when set (a flag), else the
// one kept in the file at path, else a new one, which it keeps there (mode
// 0600), so that a restart does not change the tokens printed before.
func devTokenFile(path, override string) (string, error) {
	if override != "" {
		return override, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil && strings.TrimSpace(string(b)) != "":
		return strings.TrimSpace(string(b)), nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	// Missing, or left empty by a crash while it was written.
	tok := commands.NewToken()
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return tok, nil
}

// devSetup ensures the account "dev" exists, with a token kept in the data
// directory so that it survives restarts.
func (m *Main) devSetup(ctx context.Context, accounts *commands.Accounts) error {
	path := filepath.Join(m.Config.DataDir, "dev-token")
	var err error
	if m.DevToken, err = devTokenFile(path, m.Config.DevToken); err != nil {
		return fmt.Errorf("dev token: %w", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := accounts.EnsureAccount(waitCtx, "dev", m.DevToken); err != nil {
		return fmt.Errorf("create account dev: %w", err)
	}
	if _, err := accounts.Authenticate(m.DevToken); err != nil {
		return fmt.Errorf("account dev exists with another token; remove %s or the data directory: %w", path, err)
	}
	return nil
}

// Close stops serving, stops the loops and closes the store. Idempotent.
func (m *Main) Close() error {
	var errs []error
	if m.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := m.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut down API: %w", err))
		}
		cancel()
		m.http = nil
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	for i := len(m.closers) - 1; i >= 0; i-- {
		if err := m.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	m.closers = nil
	return errors.Join(errs...)
}
