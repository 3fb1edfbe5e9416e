// Package engine assembles kmsbackup's use cases from their ports, once:
// the server (cmd/kmsbackup), the in-process engine tests (test/backup),
// the use-case tests of commands and the benchmarks (test/bench) all build
// the engine with New, so that what they test and measure is wired as the
// server wires it. It is wiring only: it decides nothing, opens no store
// and starts no goroutine; the caller opens the stores, runs the projectors
// (Projectors) and closes what it opened.
package engine
