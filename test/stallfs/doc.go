// Package stallfs is a Pebble file system for tests that holds back the
// creation of sstables on demand, so that flushes cannot finish and the
// write-ahead log files of acknowledged writes pile up: the state a killed
// process leaves when its flushes had not finished, made deterministic.
// The tests of the event log's high-water mark (adapters/pebblestore and
// the end-to-end tests) use it to remove one write-ahead log file among
// several. Production code never imports it.
package stallfs
