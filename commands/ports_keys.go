package commands

import "context"

// KeyStore holds the wrapped data-key record of each ref (opaque bytes
// that are safe to store: every key in them is wrapped under the master
// key) and the master-key check, for the envelope that implements Sealer
// and DataKeys. Several envelopes (the engine nodes of a deployment) may
// share one store: every write of a record is a compare-and-swap on its
// revision, so that of two envelopes changing one record at once exactly
// one succeeds and the other reads it again, and no change is lost.
//
// A record's revision is a number above 0 that the store gives it at each
// write. A ref's revisions only grow, over its whole life: a record
// written after a delete of the ref gets a revision above every one the
// ref had before, so a writer holding a revision read before the delete
// never overwrites the new record. 0 stands for "no record".
//
// Every method is safe for concurrent use, from one process or many, and
// honours ctx's deadline and cancellation: a store across the network
// gives up then (a store on the local disk may finish the call).
//
// Errors, for every method: domain.ErrInvalidArgument for an empty ref or
// (PutWrapped) an empty record; domain.ErrUnavailable when the store
// cannot answer (closed, failing, unreachable, or its own time limit
// reached); ctx's error, wrapped, when ctx ends first.
type KeyStore interface {
	// GetWrapped returns ref's record and its revision; rev is 0 and
	// wrapped nil when there is none. The returned slice is owned by the
	// caller. Read-only.
	GetWrapped(ctx context.Context, ref string) (wrapped []byte, rev uint64, err error)
	// PutWrapped durably writes wrapped as ref's record if ref's revision
	// is still expected (0: ref has no record), and returns the record's
	// new revision; it returns only once the write would survive a crash.
	// Errors: also domain.ErrWrongExpectedRevision when ref's revision is
	// another (written, created or deleted meanwhile; or a revision the
	// store never gave): nothing was written, and the caller reads the
	// record again and decides again. After domain.ErrUnavailable the
	// write may or may not have happened: read again. Not idempotent: the
	// same call repeated after a success fails with
	// ErrWrongExpectedRevision.
	PutWrapped(ctx context.Context, ref string, wrapped []byte, expected uint64) (rev uint64, err error)
	// DeleteWrapped durably removes ref's record, whatever its revision:
	// from then on GetWrapped reports none and a PutWrapped expecting an
	// earlier revision fails. Removing an absent record is not an error.
	// Idempotent.
	DeleteWrapped(ctx context.Context, ref string) error
	MasterKeyChecks
}

// MasterKeyChecks is the part of a KeyStore that lets the envelope check
// its master key before it writes anything under it. The check is stored
// beside the records, never among them: GetWrapped and AnyWrapped never
// return it.
type MasterKeyChecks interface {
	// KeyCheck returns the stored master-key check; ok is false when there
	// is none. Read-only.
	KeyCheck(ctx context.Context) (check []byte, ok bool, err error)
	// CreateKeyCheck stores check (1 to 1024 bytes) unless a check is
	// stored already, durably, and returns the check stored afterwards:
	// check itself, or the one found. It is atomic across every process
	// sharing the store: of concurrent calls, all return the same check.
	// Errors: also domain.ErrInvalidArgument for an empty or oversized
	// check. Idempotent.
	CreateKeyCheck(ctx context.Context, check []byte) (stored []byte, err error)
	// AnyWrapped returns one record the store holds, with its ref; ok is
	// false when it holds none. It lets the envelope verify its master key
	// on a store written before checks existed. Read-only.
	AnyWrapped(ctx context.Context) (ref string, wrapped []byte, ok bool, err error)
}
