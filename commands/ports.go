package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// AppendResult tells where an append landed.
type AppendResult struct {
	// FirstPosition and LastPosition are the global positions of the first and
	// last event of the batch.
	FirstPosition, LastPosition uint64
	// LastRevision is the stream revision of the batch's last event: the
	// revision to expect on the next append.
	LastRevision uint64
}

// EventAppender appends to the event log.
type EventAppender interface {
	// Append writes events atomically at the end of stream if expected holds,
	// and returns only once they are durable. Events must all carry this
	// stream name; the log sets their Revision and Position. An append whose
	// event IDs are all already in the stream (a retried batch) is a no-op
	// that returns the original result, whatever expected says.
	//
	// Errors: domain.ErrWrongExpectedRevision when expected does not hold;
	// domain.ErrInvalidArgument for an empty batch, a stream mismatch, event
	// IDs partly already present, or an event ID already used in another
	// stream; domain.ErrUnavailable when the log is closed or failing. Safe for concurrent use. Idempotent on event IDs.
	Append(ctx context.Context, stream string, expected domain.ExpectedRevision, events []domain.Event) (AppendResult, error)
}

// StreamAppend is one stream's part of an AppendMulti: events for Stream,
// appended if Expected holds.
type StreamAppend struct {
	Stream   string
	Expected domain.ExpectedRevision
	Events   []domain.Event
}

// MultiAppender appends to several streams in one atomic write. The use
// cases that keep a name unique (a secret name or key ID in a region, the
// binding of a KMS instance) append the item's event and the claim of its
// name this way, each at the revision they read, so that of two writers
// racing for a name, on any nodes, exactly one succeeds.
type MultiAppender interface {
	// AppendMulti writes every part, each at the end of its stream if its
	// expected revision holds, all or nothing, and returns only once they
	// are durable, with one result per part in the order given. The parts
	// name distinct streams, and each is a batch Append would take
	// (CheckMultiAppend). A call whose event IDs are all already in their
	// streams (a retried call) is a no-op that returns the original
	// results, whatever the expectations say.
	//
	// Errors: as Append's. domain.ErrWrongExpectedRevision when any part's
	// expectation does not hold (nothing is written), naming that part's
	// stream; domain.ErrInvalidArgument for no part, two parts of one
	// stream, a part Append would refuse, or event IDs partly already
	// present. Safe for concurrent use. Idempotent on event IDs.
	//
	// Atomicity is the adapter's: see each adapter's documentation for
	// how it holds (pebblestore, natsjs) or the window it leaves (esdb).
	AppendMulti(ctx context.Context, parts []StreamAppend) ([]AppendResult, error)
}

// CheckMultiAppend checks the shape MultiAppender.AppendMulti requires:
// at least one part, distinct stream names, each part a batch
// CheckAppendBatch accepts, and no event ID twice in the call. Errors:
// domain.ErrInvalidArgument.
func CheckMultiAppend(op string, parts []StreamAppend) error {
	if len(parts) == 0 {
		return domain.Invalid(op, "the multi-stream append has no part")
	}
	streams := make(map[string]struct{}, len(parts))
	ids := make(map[domain.EventID]struct{})
	for _, p := range parts {
		if _, dup := streams[p.Stream]; dup {
			return &domain.Error{Op: op, Kind: domain.ErrInvalidArgument, Item: p.Stream, Msg: "two parts of the append name this stream"}
		}
		streams[p.Stream] = struct{}{}
		if err := CheckAppendBatch(op, p.Stream, p.Events); err != nil {
			return err
		}
		for i := range p.Events {
			if _, dup := ids[p.Events[i].ID]; dup {
				return &domain.Error{Op: op, Kind: domain.ErrInvalidArgument, Item: p.Stream,
					Msg: fmt.Sprintf("event ID %s is in two parts of the append", p.Events[i].ID)}
			}
			ids[p.Events[i].ID] = struct{}{}
		}
	}
	return nil
}

// CheckAppendBatch checks the shape EventAppender.Append requires of a
// batch, the same for every event log: a stream name, at least one event,
// every event naming that stream, with a non-zero event ID used once in
// the batch. Logs add their own limits (sizes, names) after it. Errors:
// domain.ErrInvalidArgument, naming the stream and the event.
func CheckAppendBatch(op, stream string, events []domain.Event) error {
	invalid := func(format string, args ...any) error {
		return &domain.Error{Op: op, Kind: domain.ErrInvalidArgument, Item: stream, Msg: fmt.Sprintf(format, args...)}
	}
	if stream == "" {
		return domain.Invalid(op, "the stream name is empty")
	}
	if len(events) == 0 {
		return invalid("the batch has no event")
	}
	seen := make(map[domain.EventID]struct{}, len(events))
	for i := range events {
		e := &events[i]
		switch _, dup := seen[e.ID]; {
		case e.Stream != stream:
			return invalid("event %d (ID %s) names stream %q, not the stream appended to", i, e.ID, e.Stream)
		case e.ID == (domain.EventID{}):
			return invalid("event %d has a zero event ID", i)
		case dup:
			return invalid("event %d repeats event ID %s within the batch", i, e.ID)
		}
		seen[e.ID] = struct{}{}
	}
	return nil
}

// StreamReader reads one stream.
type StreamReader interface {
	// ReadStream returns at most max events of stream, starting at revision
	// from (inclusive) and going forwards, or backwards when backwards is set
	// (from = math.MaxUint64 starts at the end). A stream that does not exist
	// reads as empty; max < 1 is domain.ErrInvalidArgument. Safe for
	// concurrent use.
	ReadStream(ctx context.Context, stream string, from uint64, backwards bool, max int) ([]domain.Event, error)
}

// LogReader reads the whole log in global order.
type LogReader interface {
	// ReadAll returns at most max events whose position is greater than
	// after, in position order; max < 1 is domain.ErrInvalidArgument. Safe
	// for concurrent use.
	ReadAll(ctx context.Context, after uint64, max int) ([]domain.Event, error)
	// Head returns the position of the last durable event (0 when empty).
	Head(ctx context.Context) (uint64, error)
}

// LogSubscriber follows the log.
type LogSubscriber interface {
	// Subscribe returns a catch-up subscription delivering every event whose
	// position is greater than after, in order, then every later event as it
	// is appended. Safe for concurrent use.
	Subscribe(ctx context.Context, after uint64) (Subscription, error)
}

// Subscription is a catch-up subscription.
type Subscription interface {
	// Next blocks until the next event, ctx is done (ctx.Err()), or the
	// subscription or the log itself is closed (domain.ErrUnavailable). Not
	// for concurrent use.
	Next(ctx context.Context) (domain.Event, error)
	// Close ends the subscription; Next then fails. Idempotent.
	Close() error
}

// BufferedSubscription is a Subscription that tells how many events it
// has read ahead: the next Buffered calls of Next return at once, without
// blocking or reading the log. Optional; a Projector applies them in one
// transaction with the event before them. Not for concurrent use (Next's
// goroutine).
type BufferedSubscription interface {
	Subscription
	Buffered() int
}

// EventLog is the whole event-log port, as an adapter provides it. Use cases
// depend on the smaller interfaces above.
type EventLog interface {
	EventAppender
	MultiAppender
	StreamReader
	LogReader
	LogSubscriber
	Close() error
}

// Sealer seals and opens values under a named data key (one per KMS
// instance, one per backup instance), wrapped by the master key.
type Sealer interface {
	// Seal encrypts plaintext under the data key ref with AES-256-GCM, bound
	// to aad. Errors: domain.ErrNotFound when ref has no data key (it was
	// never created, or was destroyed); domain.ErrCorrupt when the stored
	// data key cannot be unwrapped (wrong master key, damaged record);
	// domain.ErrUnavailable when the key store fails. Safe for concurrent use.
	Seal(ctx context.Context, ref string, plaintext domain.Plaintext, aad []byte) (domain.Sealed, error)
	// Open decrypts. A tampered ciphertext or other aad is domain.ErrCorrupt,
	// never garbage; a destroyed key is domain.ErrNotFound; a failing key
	// store is domain.ErrUnavailable. Safe for concurrent use.
	Open(ctx context.Context, ref string, sealed domain.Sealed, aad []byte) (domain.Plaintext, error)
}

// DataKeys creates and destroys the data keys a Sealer uses. Safe for
// concurrent use; errors are domain.ErrInvalidArgument for a malformed ref
// and domain.ErrUnavailable when the key store fails.
type DataKeys interface {
	// CreateDataKey makes a fresh data key for ref. Idempotent: an existing
	// key is kept.
	CreateDataKey(ctx context.Context, ref string) error
	// DestroyDataKey destroys ref's data key, making everything sealed under
	// it unreadable (crypto-shredding). Once it has returned, no Sealer
	// sharing the key store (another engine node) seals or opens under it:
	// their next Seal or Open is domain.ErrNotFound. Idempotent.
	DestroyDataKey(ctx context.Context, ref string) error
}

// DataCipher is the data plane of the software KMS: AES-256-GCM under one
// version of a key's material. Stateless and safe for concurrent use.
// Material of the wrong length is domain.ErrInvalidArgument.
type DataCipher interface {
	// NewKeyMaterial returns 32 fresh random bytes.
	NewKeyMaterial() (domain.Plaintext, error)
	// Encrypt returns nonce || ciphertext || tag.
	Encrypt(material domain.Plaintext, plaintext, aad []byte) ([]byte, error)
	// Decrypt reverses Encrypt; a tampered input or other aad is
	// domain.ErrCorrupt.
	Decrypt(material domain.Plaintext, sealed, aad []byte) ([]byte, error)
}

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// IDSource draws identifiers. Implementations use crypto randomness and are
// safe for concurrent use.
type IDSource interface {
	NewULID() ulid.ULID
}

// ProjectionStore is the local store that holds read models. Each
// projection records the log position it has applied in the same atomic
// write as its data, so it resumes exactly where it stopped.
type ProjectionStore interface {
	projections.Reader
	// Position returns the last log position projection name applied (0 if
	// none).
	Position(name string) (uint64, error)
	// Update runs fn in one transaction and commits its writes together with
	// position as projection name's new position. If fn fails nothing is
	// written. Projections are rebuildable, so commits need not be synced.
	// Not safe for concurrent use on the same name.
	Update(name string, position uint64, fn func(projections.Txn) error) error
	// Load writes a large change of projection name (a base's rows, a
	// large checkpoint's items) as sorted runs, without changing its
	// position: fn adds keys to runs (a nil value deletes the key), each
	// run's keys in strictly increasing order and the runs' key ranges
	// apart; when fn returns, every run is added to the store at once, as
	// tables rather than through the write-ahead log. If fn or the load
	// fails, nothing is written. What it writes must be blind (the same
	// keys and values when the event is applied again after a crash) and
	// read by nothing before the Update of the same event commits, except
	// that apply itself. Durable when it returns, and so is every Update
	// committed before it. Safe to call while an Update of name is open
	// (from its fn); a write of that Update commits after the load and
	// wins over it.
	Load(name string, fn func(add projections.AddSorted) error) error
}
