package commands

import "context"

// KeyStore holds the wrapped data-key record of each ref (opaque bytes
// that are safe to store: every key in them is wrapped under the master
// key) and the master-key check, for the envelope that implements Sealer
// and DataKeys. One envelope is the only writer of the refs it uses. Every
// method is safe for concurrent use and honours ctx's deadline and
// cancellation: a store across the network gives up then (a store on the
// local disk may finish the call).
//
// Errors, for every method: domain.ErrUnavailable when the store cannot
// answer (closed, failing, unreachable, or its own time limit reached);
// ctx's error, wrapped, when ctx ends first.
type KeyStore interface {
	// GetWrapped returns ref's record; ok is false when there is none. The
	// returned slice is owned by the caller. Read-only.
	GetWrapped(ctx context.Context, ref string) (wrapped []byte, ok bool, err error)
	// PutWrapped durably replaces ref's record; it returns only once the
	// write would survive a crash. Idempotent.
	PutWrapped(ctx context.Context, ref string, wrapped []byte) error
	// DeleteWrapped durably removes ref's record. Removing an absent record
	// is not an error. Idempotent.
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
