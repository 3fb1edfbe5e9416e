// Package pebblestore is the embedded storage of kmsbackup, in two Pebble
// databases under the data directory sharing one block cache: Store (db/)
// holds the source of truth, the event log (by global position, by stream
// and revision, and by event ID), the wrapped data keys with their
// master-key check and the backup blobs, and implements commands.EventLog,
// commands.BlobStore and the envelope's key store; Projections
// (projections/) holds the read models with their positions, rebuildable
// from the log, and implements commands.ProjectionStore; Scratches
// (scratch/) makes the temporary databases of reads (commands.ScratchStores:
// no write-ahead log, small caches, removed after each read and at start).
// A database that
// exists is checked read-only before anything is written: its sstables'
// checksums (those not validated since they were written), and for the log
// its high-water mark, kept outside the write-ahead log, so that lost
// acknowledged events are refused (LostPositionsError); damage names the
// file and what it holds, and damaged read models are made again. Pebble's
// fatal errors reach Options.Fatal as one error. Both databases flush every
// FlushInterval while written, and reserve their write-ahead log files on
// disk just ahead of their writes (walFS), so that the disk they take stays
// close to what they hold. Large writes skip the write-ahead log: blobs of
// 2 MiB and more and the read models' loads (a base's rows) are written as
// sorted tables and ingested (ingest.go). Appends pass through one
// writer goroutine that commits concurrent requests together (group
// commit) and acknowledges them only once a pebble.Sync commit has made
// them durable (an AppendMulti's parts, to several streams, are checked
// together and written in one batch: all or none); the writer knows a new
// stream without reading Pebble from a Bloom filter of every stream the log
// holds, built by a scan at start (streams.go); readers see only
// acknowledged, gap-free positions; events
// are stored in a compact, versioned binary encoding (domain/wire), never
// JSON. It never interprets or decrypts event payloads, never puts payload
// or key bytes into errors, and never rewrites or deletes an acknowledged
// event.
package pebblestore
