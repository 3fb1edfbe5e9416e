package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"github.com/kmsbackup/kmsbackup/adapters/internal/natsconn"
	"github.com/kmsbackup/kmsbackup/domain"
)

// ConnOptions configures Connect. The zero value uses the defaults.
type ConnOptions struct {
	// Name is the connection name the server shows (monitoring, logs);
	// empty means "kmsbackup".
	Name string
	// Logger receives connection events (disconnects, reconnects,
	// asynchronous errors) that no call can return; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Conn is one connection to a NATS server or cluster, shared by the
// KeyStore and the Blobs of a process (each binds its own bucket on it).
// The caller owns it: the stores never close it, and once it is closed
// every call of theirs fails with domain.ErrUnavailable. It is safe for
// concurrent use.
//
// The event log (Open) keeps a connection of its own, because it depends on
// connection settings of its own and its Close ends it.
type Conn struct {
	nc *nats.Conn
	js jsapi.JetStream

	closed    atomic.Bool
	closeOnce sync.Once
}

// Connect connects to the NATS server at url (a comma-separated list for a
// cluster) with the settings the event log uses: the connection reconnects
// forever, and while it is down calls fail with domain.ErrUnavailable
// instead of being buffered.
//
// Errors: domain.ErrUnavailable when the server cannot be reached;
// ctx.Err(). (A server without JetStream fails OpenKeyStore and OpenBlobs.)
// Call Close when done.
func Connect(ctx context.Context, url string, opts ConnOptions) (*Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "kmsbackup"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	nc, err := natsconn.Dial(url, opts.Name, opts.Logger.With("component", "jetstream"))
	if err != nil {
		return nil, unavailable("connect", err)
	}
	js, err := jsapi.New(nc)
	if err != nil {
		nc.Close()
		return nil, unavailable("open JetStream", err)
	}
	return &Conn{nc: nc, js: js}, nil
}

// Close closes the connection: calls in flight on it fail with
// domain.ErrUnavailable. Idempotent; safe for concurrent use. It never
// fails.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.nc.Close()
	})
	return nil
}

// enter fails once the connection is closed.
func (c *Conn) enter(op string) error {
	if c.closed.Load() {
		return &domain.Error{Op: op, Kind: domain.ErrUnavailable, Msg: "the NATS connection is closed"}
	}
	return nil
}

// callErr translates the error of a call to the server: the caller's own
// context ending is returned as it is (wrapped), anything else is
// domain.ErrUnavailable.
func (c *Conn) callErr(ctx context.Context, op string, err error) error {
	if c.closed.Load() || errors.Is(err, nats.ErrConnectionClosed) {
		return &domain.Error{Op: op, Kind: domain.ErrUnavailable, Msg: "the NATS connection is closed"}
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("jetstream: %s: %w", op, cerr)
	}
	return unavailable(op, err)
}

// validBucket reports whether name can name a key-value or object bucket:
// letters, digits, '-' and '_', at most maxBucketLen bytes.
func validBucket(name string) bool {
	if name == "" || len(name) > maxBucketLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !tokenSafe(name[i]) {
			return false
		}
	}
	return true
}

// maxBucketLen bounds bucket names (the stream name adds a prefix; stream
// names may have 255 bytes).
const maxBucketLen = 200

// bucketDefaults fills in a store's bucket options: the default bucket
// name, and one replica.
func bucketDefaults(bucket, def string, replicas int) (string, int) {
	if bucket == "" {
		bucket = def
	}
	if replicas == 0 {
		replicas = 1
	}
	return bucket, replicas
}

// validateBucket reports every problem of a store's bucket options, joined;
// each wraps domain.ErrInvalidArgument. what names the store's options.
func validateBucket(what, bucket string, replicas int) error {
	var errs []error
	if !validBucket(bucket) {
		errs = append(errs, domain.Invalid(what, "bucket name %q must be 1 to %d letters, digits, '-' or '_'", bucket, maxBucketLen))
	}
	if replicas < 1 || replicas > 5 {
		errs = append(errs, domain.Invalid(what, "replicas must be 1 to 5, got %d", replicas))
	}
	return errors.Join(errs...)
}

// waitLeader waits until the replicated stream st, just created or
// updated, has a leader (a new stream elects one first: until then
// publishes find no responder and reads fail). A one-replica stream
// returns at once. Errors are the client's, untranslated; ctx bounds the
// wait.
// created runs create (which makes a stream or a bucket and waits for its
// leader), each attempt bounded by requestTimeout, and runs it again while
// no server answers it in time or at all (failover: a cluster electing its
// meta leader or the stream's, or too loaded to answer), while electionWait
// has not passed since the first (so for up to electionWait and one
// attempt); creating what exists with the same configuration changes
// nothing. Other errors, and ctx's, are returned at once.
func created(ctx context.Context, create func(context.Context) error) error {
	deadline := time.Now().Add(electionWait)
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := create(cctx)
		cancel()
		if err == nil || failover(ctx, err) == nil || time.Now().After(deadline) {
			return err
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

func waitLeader(ctx context.Context, st jsapi.Stream) error {
	info := st.CachedInfo()
	for attempt := 0; info.Config.Replicas > 1 && (info.Cluster == nil || info.Cluster.Leader == ""); attempt++ {
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
		var err error
		if info, err = st.Info(ctx); err != nil {
			return err
		}
	}
	return nil
}
