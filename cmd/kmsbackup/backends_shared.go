package main

import (
	"context"
	"fmt"

	"github.com/kmsbackup/kmsbackup/adapters/esdb"
	"github.com/kmsbackup/kmsbackup/adapters/natsjs"
)

// openNATSStores opens the wrapped data keys (a JetStream key-value bucket)
// and the backup blobs (a JetStream object store) beside a NATS event log.
func (m *Main) openNATSStores(ctx context.Context) error {
	c, err := natsjs.Connect(ctx, m.Config.EventLog, natsjs.ConnOptions{Logger: m.Logger})
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redactURL(m.Config.EventLog), err)
	}
	m.closers = append(m.closers, c.Close)
	keys, err := natsjs.OpenKeyStore(ctx, c, natsjs.KeyStoreOptions{Replicas: m.Config.NATSReplicas})
	if err != nil {
		return fmt.Errorf("open the data key store: %w", err)
	}
	blobs, err := natsjs.OpenBlobs(ctx, c, natsjs.BlobsOptions{Replicas: m.Config.NATSReplicas})
	if err != nil {
		return fmt.Errorf("open the backup blob store: %w", err)
	}
	m.keys, m.blobs = keys, blobs
	m.health = append(m.health, healthCheck{"data key store (NATS KV)", keys.Ping},
		healthCheck{"backup blob store (NATS object store)", blobs.Ping})
	return nil
}

// openESDBStores keeps the wrapped data keys and the backup blobs in
// streams of the EventStoreDB log itself.
func (m *Main) openESDBStores(_ context.Context, l *esdb.Log) error {
	blobs, err := esdb.NewBlobs(l)
	if err != nil {
		return fmt.Errorf("open the backup blob store: %w", err)
	}
	m.keys, m.blobs = esdb.NewKeyStore(l), blobs
	return nil
}
