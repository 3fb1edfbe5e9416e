// Package blobstore is the conformance suite of the blob-store port
// (commands.BlobStore). Every implementation of that port (pebblestore on one
// machine; natsjs's object store and esdb's streams across nodes) runs it
// from its own tests with Run, so that all of them keep the same promises:
// round trips of any size up to a few MiB, idempotent puts, ErrAlreadyExists
// for other bytes under a name, ErrNotFound, destruction of exactly one ref's
// blobs, concurrent use, and the limits on refs and names (1 to 256 bytes for
// a ref, 1 to 1024 for a name, no NUL byte). The suite drives only the port:
// it never reaches into an adapter's storage (corruption is each adapter's
// own test), and production code never imports it.
package blobstore
