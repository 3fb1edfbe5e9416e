// Package eventlog is the conformance suite of the event-log port
// (commands.EventLog). Every implementation of that port (pebblestore,
// natsjs, esdb, the in-memory double of the use-case tests) runs it from its
// own tests with Run, declaring in Features the promises it does not make, so
// that all of them keep the same promises. The suite drives only the port: it
// never reaches into an adapter's storage, and production code never imports
// it. One file per behaviour: appends (append.go), reads (read.go),
// subscriptions (subscribe.go), concurrent writers (concurrency.go), bad
// input and a closed log (edges.go); eventlog.go holds Run and what they
// share.
package eventlog
