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
package envelope
