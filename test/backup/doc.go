// Package backup tests the backup engine in-process with real parts (the
// Pebble store, envelope encryption, the software KMS) and a manual clock:
// the schedule, catch-up after downtime, and the randomized equivalence of
// backed-up state with a replay of the log.
package backup
