// Package keystore is the conformance suite of the envelope's key store
// (commands.KeyStore), where wrapped data-key records live. Every
// implementation (pebblestore on one machine, natsjs's key-value bucket
// and esdb's streams across nodes, the envelope's in-memory test store) runs it from its own tests with Run, so that all of them
// keep the same promises: a missing ref reads as absent, puts replace,
// deletes are idempotent, refs of any bytes (up to the envelope's 256) stay
// distinct, concurrent use is safe, the master-key check is created once
// (of racing creators one wins, everywhere) and kept apart from the records,
// AnyWrapped returns a stored record, an envelope built on the store seals,
// opens, and cannot open once the data key is destroyed, and an envelope
// with another master key is refused and writes nothing. The suite
// drives only the port: whether a deleted record's bytes are gone from disk
// is each adapter's own test. Production code never imports it.
package keystore
