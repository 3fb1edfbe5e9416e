// Package bench holds the backup engine's benchmarks that need a large
// state: the cost of sealing an incremental checkpoint against the size of
// the state, the storage a month of daily churn takes in a backup against
// the raw event log, restoring a day against replaying the log, and
// downloading and uploading a day as a backup data file against raw
// AES-GCM, 16 concurrent writers of one KMS instance against 16
// instances and raw Pebble synced appends, and the background scrub of
// every backup against raw reading of the same data, with the checkpoints
// it may slow down. They drive the engine in-process as the server wires it (Pebble
// store, envelope encryption, software KMS, manual clock), build large
// states by appending KMS events with real sealed key material straight to
// the log, and report their results in docs/BENCHMARKS.md. The package has
// no code outside its tests; a plain go test runs only small smoke tests
// of the same scenarios.
package bench
