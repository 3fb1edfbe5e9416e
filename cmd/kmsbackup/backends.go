package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kmsbackup/kmsbackup/adapters/esdb"
	"github.com/kmsbackup/kmsbackup/adapters/natsjs"
)

// healthCheck is one dependency /readyz checks.
type healthCheck struct {
	name  string
	check func(context.Context) error
}

// openBackends opens what the nodes of a deployment share: the event log,
// the wrapped data keys and the backup blobs. Embedded, all three are the
// local Pebble store; on a shared log they live beside it (NATS JetStream)
// and the data directory holds only projections, rebuildable from the log.
func (m *Main) openBackends(ctx context.Context) error {
	cfg := m.Config
	if err := m.checkLogIdentity(); err != nil {
		return err
	}
	switch cfg.LogKind() {
	case "pebble":
		m.log, m.keys, m.blobs = m.store, m.store, m.store
		m.health = append(m.health, healthCheck{"event log", func(ctx context.Context) error {
			_, err := m.store.Head(ctx)
			return err
		}})
	case "nats":
		l, err := natsjs.Open(ctx, cfg.EventLog, natsjs.Options{Logger: m.Logger})
		if err != nil {
			return fmt.Errorf("open the event log on %s: %w", redactURL(cfg.EventLog), err)
		}
		m.closers = append(m.closers, l.Close)
		m.log = l
		m.health = append(m.health, healthCheck{"event log (NATS JetStream)", l.Ping})
		if err := m.openNATSStores(ctx); err != nil {
			return err
		}
	case "esdb":
		l, err := esdb.Open(ctx, cfg.EventLog, esdb.Options{Logger: m.Logger})
		if err != nil {
			return fmt.Errorf("open the event log on %s: %w", redactURL(cfg.EventLog), err)
		}
		m.closers = append(m.closers, l.Close)
		m.log = l
		m.health = append(m.health, healthCheck{"event log (EventStoreDB)", l.Ping})
		if err := m.openESDBStores(ctx, l); err != nil {
			return err
		}
	}
	return nil
}

// checkLogIdentity refuses a data directory whose projections were built
// from another event log: they would not match it.
func (m *Main) checkLogIdentity() error {
	path := filepath.Join(m.Config.DataDir, "event-log")
	want := m.Config.LogKind() + " " + redactURL(m.Config.EventLog)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.WriteFile(path, []byte(want+"\n"), 0o600)
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	}
	if got := strings.TrimSpace(string(b)); got != want {
		return fmt.Errorf("the data directory %s holds projections of another event log (%s, not %s): use a fresh --data-dir for this log",
			m.Config.DataDir, got, want)
	}
	return nil
}

// redactURL drops credentials from a connection URL, for messages.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = "***@" + rest[at+1:]
	}
	return scheme + "://" + rest
}
