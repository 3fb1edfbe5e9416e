// Package pebblestore is the embedded storage of kmsbackup: one Pebble
// database under the data directory holds the event log (by global
// position, by stream and revision, and by event ID), the projections with
// their positions, and the wrapped data keys; it implements
// commands.EventLog, commands.ProjectionStore and the wrapped data-key store
// (GetWrapped, PutWrapped, DeleteWrapped). Appends pass through one writer
// goroutine that commits concurrent requests together (group commit) and
// acknowledges them only once a pebble.Sync commit has made them durable;
// readers see only acknowledged, gap-free positions; events are stored in a
// compact, versioned binary encoding (domain/wire), never JSON. It never
// interprets or decrypts event payloads, never puts payload or key bytes into
// errors, and never rewrites or deletes an acknowledged event.
package pebblestore
