// Package projections holds the state built from events: the KMS state (and
// accounts), and later full-backup manifests, incremental slices, day views
// and the restore projection. Each projection is a pure function of the
// events it is given plus a small key-value port (Reader, Txn); it never
// talks to the log, the network or the clock itself.
package projections
