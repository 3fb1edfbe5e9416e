package commands

import (
	"context"
	"io"
	"strings"

	"github.com/kmsbackup/kmsbackup/domain"
)

// BlobStore keeps a backup instance's own copy of what it backed up: the
// slice parts of its checkpoints and the parts of its bases, resealed
// under its own data key. Blobs are grouped by a data ref (domain.DataRef:
// one backup generation), so that a reset or release destroys a generation
// at once.
type BlobStore interface {
	// PutBlob stores data under (ref, name) and returns once it is durable.
	// Idempotent: storing the same bytes again is a no-op. Errors:
	// domain.ErrAlreadyExists when the name holds other bytes;
	// domain.ErrUnavailable when the store fails. Safe for concurrent use.
	PutBlob(ctx context.Context, ref, name string, data []byte) error
	// GetBlob returns a blob. Errors: domain.ErrNotFound; domain.ErrCorrupt
	// when the stored bytes fail their checksum. Safe for concurrent use.
	GetBlob(ctx context.Context, ref, name string) ([]byte, error)
	// OpenBlob returns a reader of a blob that reads it from the store as
	// it is consumed, so that a blob is never whole in memory. The bytes
	// are checked as they go against the length and SHA-256 recorded when
	// the blob was put: a Read that finds them wrong fails with
	// domain.ErrCorrupt, and only the whole blob, matching, ends with
	// io.EOF, so a caller trusts what it read once it got io.EOF. Errors,
	// of OpenBlob or of a Read: domain.ErrNotFound (also for a blob deleted
	// while read); domain.ErrCorrupt; domain.ErrUnavailable; ctx's (the
	// reader keeps ctx). Safe for concurrent use (the reader itself is
	// not); Close releases the reader and is idempotent.
	OpenBlob(ctx context.Context, ref, name string) (io.ReadCloser, error)
	// DeleteBlob deletes one blob of ref (a part that lost a race to be
	// recorded). Idempotent: deleting an absent blob succeeds. Errors:
	// domain.ErrInvalidArgument for a ref or name PutBlob would refuse;
	// domain.ErrUnavailable. Safe for concurrent use; a read of the blob
	// running at the same time gets it whole or domain.ErrNotFound.
	DeleteBlob(ctx context.Context, ref, name string) error
	// DestroyBlobs deletes every blob of ref. Idempotent.
	DestroyBlobs(ctx context.Context, ref string) error
}

// BlobDigester is what a reader OpenBlob returns may also be: Digest is
// the SHA-256 of the whole blob, as the reader checked it against the
// store's record, once Read has returned io.EOF (ok is false before). A
// caller that must check a blob against a digest of its own (a base part
// against its chained record) takes it instead of hashing the bytes a
// second time. Not safe for concurrent use, as the reader.
type BlobDigester interface {
	Digest() (sum [32]byte, ok bool)
}

// Limits every BlobStore keeps (and its conformance suite checks).
const (
	MaxBlobSize    = 1 << 30 // bytes in one blob
	MaxBlobRefLen  = 256     // bytes in a ref
	MaxBlobNameLen = 1024    // bytes in a name
)

// CheckBlobRef validates a ref as every BlobStore does: 1 to MaxBlobRefLen
// bytes, no NUL byte. Errors: domain.ErrInvalidArgument.
func CheckBlobRef(op, ref string) error {
	switch {
	case ref == "":
		return domain.Invalid(op, "the data ref is empty")
	case len(ref) > MaxBlobRefLen:
		return domain.Invalid(op, "the data ref has %d bytes, more than %d", len(ref), MaxBlobRefLen)
	case strings.IndexByte(ref, 0) >= 0:
		return domain.Invalid(op, "the data ref %q contains a NUL byte", ref)
	}
	return nil
}

// CheckBlobName validates a ref and a name: the name 1 to MaxBlobNameLen
// bytes, no NUL byte. Errors: domain.ErrInvalidArgument.
func CheckBlobName(op, ref, name string) error {
	if err := CheckBlobRef(op, ref); err != nil {
		return err
	}
	switch {
	case name == "":
		return domain.Invalid(op, "the blob name is empty")
	case len(name) > MaxBlobNameLen:
		return domain.Invalid(op, "the blob name has %d bytes, more than %d", len(name), MaxBlobNameLen)
	case strings.IndexByte(name, 0) >= 0:
		return domain.Invalid(op, "the blob name %q contains a NUL byte", name)
	}
	return nil
}

// Throttle paces background work, the scrub of every backup, by the bytes
// it reads, so that it leaves the disk and the CPU to checkpoints and
// requests.
type Throttle interface {
	// WaitN blocks until the work may count n more bytes read (n of any
	// size; 0 returns at once), then counts them. Errors: ctx's error
	// (wrapped) as soon as ctx ends, or at once when the wait would end
	// after ctx's deadline. Safe for concurrent use; not idempotent (every
	// call counts).
	WaitN(ctx context.Context, n int) error
}
