package commands

import "context"

// BlobStore keeps a backup instance's own copy of what it backed up: the
// slices of its checkpoints, resealed under its own data key. Blobs are
// grouped by a data ref (domain.DataRef: one backup generation), so that a
// reset or release destroys a generation at once.
type BlobStore interface {
	// PutBlob stores data under (ref, name) and returns once it is durable.
	// Idempotent: storing the same bytes again is a no-op. Errors:
	// domain.ErrAlreadyExists when the name holds other bytes;
	// domain.ErrUnavailable when the store fails. Safe for concurrent use.
	PutBlob(ctx context.Context, ref, name string, data []byte) error
	// GetBlob returns a blob. Errors: domain.ErrNotFound; domain.ErrCorrupt
	// when the stored bytes fail their checksum. Safe for concurrent use.
	GetBlob(ctx context.Context, ref, name string) ([]byte, error)
	// DestroyBlobs deletes every blob of ref. Idempotent.
	DestroyBlobs(ctx context.Context, ref string) error
}
