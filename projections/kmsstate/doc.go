// Package kmsstate is the read model of the software KMS and its accounts:
// instances, live keys and secrets with every version, the per-region
// indexes that make key IDs and secret names unique within a region,
// account tokens (by hash), and the console sessions that are live (by the
// hash of their reference). It is a pure function of the log's events applied through
// a projections.Txn, plus queries over a projections.Reader. It never stores
// plaintext: key material stays sealed and secret values stay KMS
// ciphertext.
package kmsstate
