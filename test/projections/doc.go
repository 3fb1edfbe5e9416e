// Package projections tests the read models of projections/ against the
// real projection store (Pebble), with golden files of what queries return
// after a history of events (go test -update rewrites them).
package projections
