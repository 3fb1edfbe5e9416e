// Package envelope is kmsbackup's key hierarchy: a 256-bit master key (from
// a file or the KMSBACKUP_MASTER_KEY environment variable, or generated into
// the data directory in --dev mode) wraps one AES-256-GCM data-encryption key
// (DEK) per ref, a KMS instance or a backup instance, and the DEKs seal the
// key material and secret values that go into events. It implements the
// commands.Sealer and commands.DataKeys ports over a small KeyStore port that
// holds each ref's wrapped record and a check of the master key: no
// Envelope reads or writes anything under a master key that does not
// match the store's check (ErrWrongMasterKey), and the first one to use a
// store writes the check, after unwrapping one of its records when it has
// some.
//
// Every ciphertext is bound to its associated data, every wrapped DEK to its
// ref and version, and every DEK is rotated long before random nonces could
// collide; destroying a ref's DEK shreds everything sealed under it. The
// package never stores a DEK unwrapped, never logs, never hands out a key
// (only the master key, to whoever loads it for New) and returns plaintext
// only as domain.Plaintext; it never puts key, plaintext or sealed bytes in
// an error message, and never returns unauthenticated bytes or panics on
// hostile input.
//
// # Several nodes on one key store
//
// The engine nodes of a deployment share one key store, each with an
// Envelope of its own. Two rules keep them consistent.
//
// Every change of a record is a compare-and-swap. A record holds a ref's
// DEK versions and a reservation: how many seals of the newest version
// may have been made. An Envelope changes it (creating it, reserving the
// next ReserveChunk seals, adding a version after RotateAfter seals) by
// writing the new record at the revision it read (KeyStore.PutWrapped).
// When another node wrote the record since, the write is refused; the
// Envelope reads the record again and starts over from it. So no version
// is ever lost, and each seal index of a version is handed to one node
// only (each node seals from the range it reserved), which keeps every
// version within its RotateAfter seals. An Open naming a version the
// Envelope does not hold reads the record again, once: another node made
// it.
//
// Destruction takes effect everywhere before DestroyDataKey returns. A
// node shares the store when its Envelope has a Lease: it then uses a key
// it holds in memory only while the store confirmed the record less than
// Lease ago, counted from the start of the read (or of the successful
// write) that confirmed it; the first use after that reads the record
// again, and finds it gone if it was destroyed. DestroyDataKey deletes the
// record and then waits Lease and an eighth before it returns. Why that
// suffices: a node's lease started before the read that confirmed the
// record, and that read saw the record, so it took effect before the
// delete, which took effect before the destroyer's wait began; the lease
// therefore ends before the wait does, even on a node whose clock runs up
// to an eighth slower (real clocks differ by well under 0.1%). Once
// DestroyDataKey has returned, every node's next Seal or Open reads the
// store and fails with domain.ErrNotFound. A reservation or rotation
// that another node writes after the delete fails too, since it expects
// a revision the record no longer has, so no write brings a destroyed key
// back. What it does not cover: a Seal or Open that began before
// DestroyDataKey returned may still finish with the key, as any operation
// concurrent with the destruction may; and the lease counts time on the
// monotonic clock and the wall clock both, so that a node whose machine
// was suspended (which stops the monotonic clock) reads again on waking.
//
// The cost: one clock reading per Seal and Open (BenchmarkSealOpen, beside
// raw AES-256-GCM), and one read of the store per ref a node uses, per
// lease, whatever the number of seals and opens in between (not one per
// item of a checkpoint or restore); a destruction takes a lease longer.
// While the store cannot answer, a node stops using its keys within a
// lease: it cannot tell whether they were destroyed. An Envelope without a
// Lease is its store's only user (the embedded store): it keeps its keys
// for its life and its DestroyDataKey returns once the record is deleted.
package envelope
