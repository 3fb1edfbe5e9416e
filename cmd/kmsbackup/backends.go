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
// local Pebble store (opened already); on a shared log they live beside it
// (NATS JetStream) and the data directory holds only projections,
// rebuildable from the log.
func (m *Main) openBackends(ctx context.Context) error {
	cfg := m.Config
	switch cfg.LogKind() {
	case "pebble":
		m.log, m.keys, m.blobs = m.store, m.store, m.store
		m.health = append(m.health, healthCheck{"event log", func(ctx context.Context) error {
			if _, err := m.store.Head(ctx); err != nil {
				return err
			}
			return m.store.Damage()
		}})
	case "nats":
		l, err := natsjs.Open(ctx, cfg.EventLog, natsjs.Options{Replicas: cfg.NATSReplicas, Logger: m.Logger})
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

// logIdentity is the event-log file of the data directory and what it
// must say.
func (m *Main) logIdentity() (path, want string) {
	return filepath.Join(m.Config.DataDir, "event-log"), m.Config.LogKind() + " " + redactURL(m.Config.EventLog)
}

// verifyLogIdentity refuses a data directory whose projections were built
// from another event log: they would not match it. It writes nothing.
func (m *Main) verifyLogIdentity() error {
	path, want := m.logIdentity()
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	}
	if got := strings.TrimSpace(string(b)); got != want {
		return fmt.Errorf("the data directory %s holds projections of another event log (%s, not %s): use a fresh --data-dir for this log",
			m.Config.DataDir, got, want)
	}
	return nil
}

// recordLogIdentity writes the event-log file when there is none.
func (m *Main) recordLogIdentity() error {
	path, want := m.logIdentity()
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return os.WriteFile(path, []byte(want+"\n"), 0o600)
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
