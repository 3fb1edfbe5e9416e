package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// KMSIngest appends the events of an external KMS to the log: a KMS that
// shares kmsbackup's envelope (the same master key and data-key store) and
// publishes its instances' events in the public JSON form on the ingest
// topic (docs/events.md, "Ingesting events from an external KMS"). Once in
// the log they are backed up like the built-in KMS's own events.
//
// Each event goes to its own stream (kms-<instance>) at exactly the
// revision it was published with: it is appended expecting its predecessor
// to be the stream's last event (domain.ExpectNoStream for revision 0,
// domain.ExpectRevision(revision-1) otherwise). So the log holds every
// ingested stream as the external KMS wrote it, whatever order and however
// often the bus delivers its events:
//
//   - an event delivered again is a no-op, by the log's idempotency on event
//     IDs (its ID is already in the stream);
//   - an event that arrives ahead of its predecessor fails with
//     domain.ErrWrongExpectedRevision, and the caller retries it later
//     (the bus handler nacks it for redelivery).
//
// The ingested streams must have no other writer: kmsbackup's own KMS
// commands must not write to an instance the external KMS owns.
//
// Safe for concurrent use.
type KMSIngest struct {
	Log EventAppender
	// Streams, when set, is read to check that an event of revision 1 or
	// later has the account and region of its stream's first event, so that
	// no event can slip into another account's view (tails and the public
	// stream show an event to its envelope's account), and to tell a
	// diverged stream apart from a missing predecessor. Every EventLog is
	// one; leave it nil only in tests.
	Streams StreamReader
	// State and Applied, when set (with Streams), are the KMS read model and
	// its projector: an event is checked against the state its predecessor
	// left (a rotation of a missing key, a second create, a version out of
	// order are refused), so that no event the read models cannot apply
	// reaches the log and stops them.
	State   projections.Reader
	Applied Waiter
}

// Ingest converts e (publicevent.ToEvent) and appends it to its stream at
// its revision. It returns nil once the event is in the log, whether this
// call appended it or an earlier delivery did.
//
// Errors:
//   - domain.ErrInvalidArgument: the event can never be ingested: not of a
//     KMS instance's stream, malformed (see publicevent.ToEvent), revision 0
//     that is not InstanceCreated or an InstanceCreated at another revision,
//     an account or region other than its stream's, or an event ID already
//     in the log at another revision or in another stream. Drop it (and
//     tell someone).
//   - domain.ErrWrongExpectedRevision: the stream is not at the event's
//     predecessor yet: an earlier event has not been ingested (retry later),
//     or the stream already holds another event at this revision (it has
//     diverged from the external KMS; the error says so, and retrying will
//     not help until an operator steps in).
//   - domain.ErrUnavailable: the log cannot serve now (retry later).
//   - ctx.Err().
//
// Idempotent on the event ID.
func (k *KMSIngest) Ingest(ctx context.Context, pe publicevent.Event) error {
	const op = "ingest KMS event"
	if k.Log == nil {
		return domain.Invalid(op, "no event log")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	e, err := publicevent.ToEvent(pe)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	item := fmt.Sprintf("%s %s (revision %d of %s)", e.Type, e.ID, e.Revision, e.Stream)
	if (e.Revision == 0) != (e.Type == domain.TypeInstanceCreated) {
		return &domain.Error{Op: op, Kind: domain.ErrInvalidArgument, Item: item,
			Msg: "a KMS instance's stream starts with InstanceCreated, and only there"}
	}
	if e.Revision > 0 {
		if err := k.checkStream(ctx, op, item, e); err != nil {
			return err
		}
		if err := k.checkState(ctx, op, item, e); err != nil {
			return err
		}
	}

	expected := domain.ExpectNoStream
	if e.Revision > 0 {
		expected = domain.ExpectRevision(e.Revision - 1)
	}
	rev := e.Revision
	e.Position = 0 // the external log's; this log assigns its own
	res, err := k.Log.Append(ctx, e.Stream, expected, []domain.Event{e})
	switch {
	case errors.Is(err, domain.ErrWrongExpectedRevision):
		return k.explainWrongRevision(ctx, op, item, e, err)
	case err != nil:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s %s: %w", op, item, err)
	case res.LastRevision != rev:
		// Appended earlier (the append was a no-op), but not where the
		// external KMS says it belongs.
		return &domain.Error{Op: op, Kind: domain.ErrInvalidArgument, Item: item,
			Msg: fmt.Sprintf("the event is already in the log at revision %d", res.LastRevision)}
	}
	return nil
}

// checkStream checks e against the first event of its stream, when Streams
// is set and the stream has one.
func (k *KMSIngest) checkStream(ctx context.Context, op, item string, e domain.Event) error {
	if k.Streams == nil {
		return nil
	}
	first, err := k.Streams.ReadStream(ctx, e.Stream, 0, false, 1)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s %s: read the stream's first event: %w", op, item, err)
	}
	if len(first) == 0 {
		return nil // not created yet: the append fails, and is retried
	}
	if f := first[0]; f.Account != e.Account || f.Region != e.Region || f.Instance != e.Instance {
		return &domain.Error{Op: op, Kind: domain.ErrInvalidArgument, Item: item,
			Msg: fmt.Sprintf("account %s, region %q and instance %s differ from the stream's (%s, %q, %s)",
				e.Account, e.Region, e.Instance, f.Account, f.Region, f.Instance)}
	}
	return nil
}

// explainWrongRevision returns err, saying whether the stream has diverged
// (another event at e's revision) when Streams can tell.
func (k *KMSIngest) explainWrongRevision(ctx context.Context, op, item string, e domain.Event, err error) error {
	if k.Streams != nil {
		at, rerr := k.Streams.ReadStream(ctx, e.Stream, e.Revision, false, 1)
		if rerr == nil && len(at) == 1 && at[0].Revision == e.Revision && at[0].ID != e.ID {
			return fmt.Errorf("%s %s: revision %d of the stream is already event %s: the stream has diverged from the external KMS: %w",
				op, item, e.Revision, at[0].ID, err)
		}
	}
	return fmt.Errorf("%s %s: its predecessor is not in the log yet (retry later): %w", op, item, err)
}

// checkState checks that e follows from the state its predecessor left in
// the KMS read model (when State, Applied and Streams are set).
func (k *KMSIngest) checkState(ctx context.Context, op, item string, e domain.Event) error {
	if k.State == nil || k.Applied == nil || k.Streams == nil {
		return nil
	}
	prev, err := k.Streams.ReadStream(ctx, e.Stream, e.Revision-1, false, 1)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s %s: read its predecessor: %w", op, item, err)
	}
	if len(prev) == 0 || prev[0].Revision != e.Revision-1 {
		return nil // the predecessor is not in yet: the append fails and is retried
	}
	if err := k.Applied.WaitFor(ctx, prev[0].Position); err != nil {
		return err
	}
	d, err := e.Decode()
	if err != nil {
		return &domain.Error{Op: op, Kind: domain.ErrInvalidArgument, Item: item, Msg: "the payload does not decode"}
	}
	refuse := func(format string, args ...any) error {
		return &domain.Error{Op: op, Kind: domain.ErrInvalidArgument, Item: item, Msg: fmt.Sprintf(format, args...)}
	}
	key := func(id domain.KeyID) (*domain.Key, bool, error) {
		kk, err := kmsstate.GetKey(k.State, e.Instance, id)
		if errors.Is(err, domain.ErrNotFound) {
			return nil, false, nil
		}
		return kk, err == nil, err
	}
	secret := func(name string) (*domain.Secret, bool, error) {
		sc, err := kmsstate.GetSecret(k.State, e.Instance, name)
		if errors.Is(err, domain.ErrNotFound) {
			return nil, false, nil
		}
		return sc, err == nil, err
	}
	switch d := d.(type) {
	case *domain.KeyCreated, *domain.KeyRestored:
		id := keyOf(d)
		if _, ok, err := key(id); err != nil || ok {
			return errOr(err, refuse("key %s already exists in the instance", id))
		}
		if r, isRestore := d.(*domain.KeyRestored); isRestore && !numbered(len(r.Versions), func(i int) uint32 { return r.Versions[i].Version }) {
			return refuse("a restored key's versions must be 1 to n, in order")
		}
	case *domain.KeyRotated:
		kk, ok, err := key(d.Key)
		if err != nil || !ok {
			return errOr(err, refuse("key %s does not exist in the instance", d.Key))
		}
		if d.Version != uint32(len(kk.Versions))+1 {
			return refuse("key %s has %d versions: the next is %d, not %d", d.Key, len(kk.Versions), len(kk.Versions)+1, d.Version)
		}
	case *domain.KeyDeleted:
		if _, ok, err := key(d.Key); err != nil || !ok {
			return errOr(err, refuse("key %s does not exist in the instance", d.Key))
		}
	case *domain.SecretCreated, *domain.SecretRestored:
		name := secretOf(d)
		if _, ok, err := secret(name); err != nil || ok {
			return errOr(err, refuse("secret %s already exists in the instance", name))
		}
		if r, isRestore := d.(*domain.SecretRestored); isRestore && !numbered(len(r.Versions), func(i int) uint32 { return r.Versions[i].Version }) {
			return refuse("a restored secret's versions must be 1 to n, in order")
		}
	case *domain.SecretRotated:
		sc, ok, err := secret(d.Name)
		if err != nil || !ok {
			return errOr(err, refuse("secret %s does not exist in the instance", d.Name))
		}
		if d.Version != uint32(len(sc.Versions))+1 {
			return refuse("secret %s has %d versions: the next is %d, not %d", d.Name, len(sc.Versions), len(sc.Versions)+1, d.Version)
		}
	case *domain.SecretDeleted:
		if _, ok, err := secret(d.Name); err != nil || !ok {
			return errOr(err, refuse("secret %s does not exist in the instance", d.Name))
		}
	}
	return nil
}

func keyOf(d domain.EventData) domain.KeyID {
	if c, ok := d.(*domain.KeyCreated); ok {
		return c.Key
	}
	return d.(*domain.KeyRestored).Key
}

func secretOf(d domain.EventData) string {
	if c, ok := d.(*domain.SecretCreated); ok {
		return c.Name
	}
	return d.(*domain.SecretRestored).Name
}

// numbered reports whether n versions are numbered 1 to n in order.
func numbered(n int, version func(int) uint32) bool {
	if n == 0 {
		return false
	}
	for i := range n {
		if version(i) != uint32(i)+1 {
			return false
		}
	}
	return true
}

// errOr returns err if there is one, else refusal.
func errOr(err, refusal error) error {
	if err != nil {
		return err
	}
	return refusal
}
