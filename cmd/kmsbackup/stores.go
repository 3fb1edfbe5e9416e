package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/audit"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// The data directory (--data-dir):
//
//	db/            the embedded store (pebblestore.Store): event log, data keys and their
//	               master-key check, backup blobs; with kmsbackup-log-mark (the log's
//	               high-water mark) and kmsbackup-checked-tables
//	projections/   the read models (pebblestore.Projections), rebuildable from the log;
//	               with kmsbackup-checked-tables
//	event-log      which event log the read models were built from
//	spool/         uploads being checked
//	master.key, dev-token   --dev only
//
// On a shared event log, db/ is not used (an older layout kept the read
// models there; they are rebuilt into projections/).

// projectionNames are the read models' positions in projections/.
var projectionNames = []string{kmsstate.Name, backupstate.Name, backupdata.Name, audit.Name, commands.PublicEventsProjection}

// openStores opens what the server keeps and checks it before writing
// anything: the embedded store (its files, its log against the high-water
// mark, the master key against its check, all on the store opened
// read-only) or the shared log and stores, then the envelope's master-key
// check, then the read models (rebuilt when damaged, behind the log, or
// after an accepted loss); with --clock manual, where the clock starts
// (checkClockStart). A start refused here leaves the data directory as it
// was.
func (m *Main) openStores(ctx context.Context, master []byte) error {
	cfg := m.Config
	if err := m.verifyLogIdentity(); err != nil {
		return err
	}
	cache := pebblestore.NewCache(0)
	defer cache.Close() // each database holds its own reference
	opts := pebblestore.Options{Logger: m.Logger, Cache: cache, Fatal: m.Fatal}
	reset := false
	if cfg.LogKind() == "pebble" {
		so := opts
		so.AcceptLostLogPositions = cfg.AcceptLostLogPositions
		so.Check = func(ro *pebblestore.Store) error {
			e, err := envelope.New(master, ro)
			if err != nil {
				return err
			}
			if err := masterKeyFailure("the data in "+cfg.DataDir, e.VerifyMasterKey(ctx)); err != nil {
				return err
			}
			return m.checkClockStart(ctx, ro)
		}
		dir := filepath.Join(cfg.DataDir, "db")
		store, err := pebblestore.Open(dir, so)
		if err != nil {
			return storeFailure(cfg.DataDir, err)
		}
		m.store = store
		m.closers = append(m.closers, store.Close)
		if lost := store.Lost(); lost != nil {
			m.Logger.Error("ACCEPTED THE LOSS OF ACKNOWLEDGED EVENTS (--accept-lost-log-positions): the event log goes on without them; the read models are rebuilt from what is left",
				"missing_positions", lost.Count(), "error", lost)
			reset = true
		}
	}
	if err := m.openBackends(ctx); err != nil {
		return err
	}
	if !m.clockDecided { // a shared log, or a new embedded one (its check had nothing to read)
		if err := m.checkClockStart(ctx, m.log); err != nil {
			return err
		}
	}
	env, err := envelope.New(master, m.keys)
	if err != nil {
		return fmt.Errorf("set up envelope encryption: %w", err)
	}
	if cfg.LogKind() != "pebble" {
		// Other nodes destroy and rotate data keys too: each node holds a
		// key on a lease, which a destruction waits out (envelope.Lease).
		env.Lease = cfg.KeyLeaseOrDefault()
	}
	if err := env.CheckMasterKey(ctx); err != nil {
		where := "the data in " + cfg.DataDir
		if cfg.LogKind() != "pebble" {
			where = "the shared key store's data"
		}
		return masterKeyFailure(where, err)
	}
	m.env = env
	if err := m.recordLogIdentity(); err != nil {
		return err
	}
	return m.openProjections(ctx, opts, reset)
}

// openProjections opens the read models, adopting those an older layout
// kept in db/, and makes them again when they are damaged or ahead of the
// log (a log restored from an older copy) or reset is set.
func (m *Main) openProjections(ctx context.Context, opts pebblestore.Options, reset bool) error {
	dir := filepath.Join(m.Config.DataDir, "projections")
	if m.Config.LogKind() != "pebble" {
		if _, err := os.Stat(filepath.Join(m.Config.DataDir, "db")); err == nil {
			m.Logger.Info("db/ in the data directory holds read models of an older layout: they are not used any more and may be removed; the read models live in projections/",
				"data_dir", m.Config.DataDir)
		}
	}
	head, err := m.log.Head(ctx)
	if err != nil {
		return fmt.Errorf("read the event log's head: %w", err)
	}
	for attempt := 0; ; attempt++ {
		if reset {
			if m.store != nil {
				if err := m.store.DropLegacyProjections(); err != nil {
					return fmt.Errorf("drop the read models of an older layout: %w", err)
				}
			}
			if err := pebblestore.RemoveProjections(dir, opts); err != nil {
				return err
			}
		}
		p, err := pebblestore.OpenProjections(dir, opts, m.store)
		if err != nil {
			return fmt.Errorf("open the read models in %s: %w", dir, err)
		}
		if r := p.Rebuilt(); r != nil {
			m.Logger.Warn("the read models were damaged: removed them; they are being rebuilt from the event log", "error", r)
		}
		ahead, err := projectionsAhead(p, head)
		if err == nil && ahead != "" && attempt == 0 {
			m.Logger.Warn("the read models are ahead of the event log (restored from another copy?): rebuilding them from the event log",
				"projection", ahead, "log_head", head)
			err = p.Close()
			reset = true
			if err == nil {
				continue
			}
		}
		if err != nil {
			_ = p.Close()
			return fmt.Errorf("open the read models in %s: %w", dir, err)
		}
		// The first version of the backup data read model held every
		// version; it is rebuilt under its new name, the old one dropped.
		if err := p.DropProjection(backupdata.LegacyName, []byte(backupdata.LegacyPrefix)); err != nil {
			_ = p.Close()
			return fmt.Errorf("drop the backup data read model of an older version: %w", err)
		}
		m.proj = p
		m.closers = append(m.closers, p.Close)
		m.health = append(m.health, healthCheck{"read models", func(context.Context) error { return p.Damage() }})
		return nil
	}
}

// projectionsAhead names a read model that applied positions beyond the
// log's head; "" when none did.
func projectionsAhead(p *pebblestore.Projections, head uint64) (string, error) {
	for _, name := range projectionNames {
		pos, err := p.Position(name)
		if err != nil {
			return "", err
		}
		if pos > head {
			return name, nil
		}
	}
	return "", nil
}

// storeFailure classifies an error of opening the embedded store: damage,
// acknowledged events missing, a wrong master key (from the store's
// check hook), each with its exit code; anything else as it is.
func storeFailure(dataDir string, err error) error {
	var sf *startFailure
	if errors.As(err, &sf) {
		return err
	}
	var lost *pebblestore.LostPositionsError
	if errors.As(err, &lost) {
		way := "restore the data directory from a copy taken before the loss"
		if lost.TailOnly() {
			way += ", or, to go on without them, start once with --accept-lost-log-positions (the read models are then rebuilt; the lost events are gone for good)"
		} else {
			way += " (--accept-lost-log-positions cannot help: the events after the gap could not be read in order)"
		}
		return &startFailure{code: exitLogBehind, err: fmt.Errorf("%w; %s", err, way)}
	}
	if domain.IsCorruption(err) {
		return &startFailure{code: exitDamaged, err: fmt.Errorf("the data directory %s is damaged: %w", dataDir, err)}
	}
	return fmt.Errorf("open the store in %s: %w", dataDir, err)
}

// masterKeyFailure classifies an error of the master-key check of what
// ("the data in DIR").
func masterKeyFailure(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, envelope.ErrWrongMasterKey):
		return &startFailure{code: exitWrongMasterKey, err: fmt.Errorf("the master key is not the one %s was written with: %w", what, err)}
	case domain.IsCorruption(err):
		return &startFailure{code: exitDamaged, err: fmt.Errorf("%s is damaged: %w", what, err)}
	}
	return fmt.Errorf("check the master key: %w", err)
}
