// Package keystore is the conformance suite of the envelope's key store
// (commands.KeyStore), where wrapped data-key records live. Every
// implementation (pebblestore on one machine, natsjs's key-value bucket
// and esdb's streams across nodes, the envelope's in-memory test store)
// runs it from its own tests with Run, handing it two handles on one store
// that stand for two engine nodes, so that all of them keep the same
// promises.
//
// Records (records.go): a missing ref reads as absent, a record comes back
// as written, deletes are idempotent, refs of any bytes (up to the
// envelope's 256) stay distinct, concurrent use is safe, empty refs and
// records are refused. Revisions (revisions.go): every write is a
// compare-and-swap on the record's revision, revisions only grow over a
// ref's whole life (a delete never lets a stale writer resurrect the
// record), of writers racing to create a record exactly one wins, and
// writers on both handles that read, change and write back with retries
// lose no update. The master-key check (keycheck.go) is created once (of
// racing creators one wins, everywhere) and kept apart from the records,
// AnyWrapped returns a stored record, and an envelope with another master
// key is refused and writes nothing. Envelopes on the store (envelope.go)
// seal, open and cannot open once the data key is destroyed; two of them,
// one per handle, rotating one data key at once lose no version; and once
// one destroys a data key, the other's next Seal or Open fails with
// domain.ErrNotFound, though it had the key in memory.
//
// The suite drives only the port: whether a deleted record's bytes are
// gone from disk is each adapter's own test. Production code never imports
// it.
package keystore
