package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var _ commands.EventLog = (*Log)(nil)

// DefaultStreamPrefixes are the prefixes of kmsbackup's streams: accounts,
// account-<id>, audit-<id>, backup-<id>, kms-<id>, name-<hash> (the
// reservation of a unique name, domain.NameStream), binding-<id> (the
// binding of a KMS instance to a backup instance, domain.BindingStream)
// and devclock (the shared development clock, domain.DevClockStream).
func DefaultStreamPrefixes() []string {
	return []string{domain.AccountsStream, "account-", "audit-", domain.BackupStreamPrefix, domain.KMSStreamPrefix,
		domain.NameStreamPrefix, domain.BindingStreamPrefix, domain.DevClockStream}
}

// Defaults of Options.
const (
	DefaultRetryWindow   = 100
	DefaultMaxAppendSize = 1 << 20   // EventStoreDB's default MaxAppendSize
	DefaultChunkSize     = 256 << 20 // EventStoreDB's default ChunkSize
	DefaultTimeout       = 30 * time.Second
)

// closeGrace bounds how long Close waits for calls in flight once it has
// cancelled them.
const closeGrace = 5 * time.Second

// maxAppendAttempts bounds how often Append re-reads a stream that keeps
// changing under it (only appends that expect any revision, or an existing
// stream, retry: an exact expectation fails at once when the head moved).
const maxAppendAttempts = 64

// Options configures the log. The zero value is usable.
type Options struct {
	// StreamPrefixes are the streams the log is made of: Append refuses
	// other streams, and ReadAll, Head and subscriptions show only the
	// events of these streams (and never EventStoreDB's own, whose stream
	// or type starts with "$"). "" means every non-system stream. Nil means
	// DefaultStreamPrefixes. Whatever they say, the streams of the key
	// store and the blob store (datakey-, blob-, blobs-) are never part of
	// the log: Append and ReadStream refuse them, and ReadAll, Head and
	// subscriptions skip their events. A prefix that only such streams can
	// match is refused.
	StreamPrefixes []string
	// Logger receives resubscriptions and the client's own messages (at
	// lower levels than the client gives them). Nil discards them.
	Logger *slog.Logger
	// RetryWindow is how many events at the end of a stream Append searches
	// for the event IDs of a batch, to recognise a retried batch (0:
	// DefaultRetryWindow). See the package documentation.
	RetryWindow int
	// MaxAppendSize is the server's maximum append size in bytes (0:
	// DefaultMaxAppendSize); a larger batch is refused before it is sent,
	// and the blob store cuts blobs so that each append fits.
	MaxAppendSize int
	// ChunkSize is the server's transaction-file chunk size (0:
	// DefaultChunkSize); ReadAll uses it to find a valid place to read
	// from when asked for a position that is not an event's.
	ChunkSize uint64
	// Timeout bounds each call to the server (0: DefaultTimeout), but not
	// the life of a subscription.
	Timeout time.Duration
}

// Validate reports every problem of o.
func (o Options) Validate() error {
	var errs []error
	for _, p := range o.StreamPrefixes {
		if strings.HasPrefix(p, "$") {
			errs = append(errs, domain.Invalid(opOpen, "stream prefix %q: streams starting with $ are EventStoreDB's own", p))
		}
		if isStoreStream(p) {
			errs = append(errs, domain.Invalid(opOpen, "stream prefix %q: streams starting with %q belong to the key and blob stores, never to the log", p, storeStreamPrefixes))
		}
	}
	if o.StreamPrefixes != nil && len(o.StreamPrefixes) == 0 {
		errs = append(errs, domain.Invalid(opOpen, "StreamPrefixes is empty: the log would show no stream (use nil for the defaults, or \"\" for every stream)"))
	}
	if o.RetryWindow < 0 {
		errs = append(errs, domain.Invalid(opOpen, "RetryWindow %d is negative", o.RetryWindow))
	}
	if o.MaxAppendSize < 0 {
		errs = append(errs, domain.Invalid(opOpen, "MaxAppendSize %d is negative", o.MaxAppendSize))
	}
	if o.Timeout < 0 {
		errs = append(errs, domain.Invalid(opOpen, "Timeout %s is negative", o.Timeout))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.StreamPrefixes == nil {
		o.StreamPrefixes = DefaultStreamPrefixes()
	} else {
		o.StreamPrefixes = append([]string(nil), o.StreamPrefixes...)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RetryWindow == 0 {
		o.RetryWindow = DefaultRetryWindow
	}
	if o.MaxAppendSize == 0 {
		o.MaxAppendSize = DefaultMaxAppendSize
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	return o
}

// Log is the event log on EventStoreDB (or KurrentDB). It implements
// commands.EventLog. Safe for concurrent use.
type Log struct {
	conf   esdbclient.Configuration // copied into every client made
	opts   Options
	filter *esdbclient.SubscriptionFilter
	logger *slog.Logger
	// base is cancelled by Close; every call and subscription derives its
	// context from it.
	base context.Context
	stop context.CancelFunc

	mu     sync.Mutex
	closed bool
	client *esdbclient.Client
	// inflight counts the goroutines running a call on a client.
	inflight sync.WaitGroup
}

// Open connects to the server named by url, an EventStoreDB connection
// string (esdb://[user:password@]host:port[,host:port...]?tls=...), and
// checks that it answers a read of $all (as Ping does). The connection
// string's nodePreference is overridden with leader: Append reads the
// stream it writes to and needs to read its own writes.
//
// Errors: domain.ErrInvalidArgument for bad options or a malformed
// connection string (the message never shows its password);
// domain.ErrUnavailable when the server cannot be reached or refuses the
// read; ctx.Err() when ctx ends first.
func Open(ctx context.Context, url string, opts Options) (*Log, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	conf, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	l, err := newLog(conf, opts)
	if err != nil {
		return nil, err
	}
	if err := l.Ping(ctx); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

// parseURL parses a connection string. A parse error is reported with the
// error of the same string with its credentials replaced, so that the
// password never reaches a message.
func parseURL(url string) (*esdbclient.Configuration, error) {
	conf, err := esdbclient.ParseConnectionString(url)
	if err == nil {
		return conf, nil
	}
	msg := "malformed connection string"
	if redacted := redactUserinfo(url); redacted == url {
		msg += ": " + err.Error()
	} else if _, err := esdbclient.ParseConnectionString(redacted); err != nil {
		msg += ": " + err.Error()
	} else {
		msg += " (check its user and password)"
	}
	return nil, &domain.Error{Op: opOpen, Kind: domain.ErrInvalidArgument, Msg: msg,
		Hint: "expected esdb://[user:password@]host:port[,host:port...][?tls=false&...]"}
}

// redactUserinfo replaces the user and password of a connection string
// (between "://" and the last "@") with placeholders. The last "@" is taken
// so that a password holding "@", "/" or "?" is still covered.
func redactUserinfo(url string) string {
	i := strings.Index(url, "://")
	if i < 0 {
		return url
	}
	at := strings.LastIndex(url[i+3:], "@")
	if at < 0 {
		return url
	}
	return url[:i+3] + "xxxxx:xxxxx" + url[i+3+at:]
}

// newLog builds a log on a parsed configuration, without contacting the
// server.
func newLog(conf *esdbclient.Configuration, opts Options) (*Log, error) {
	opts = opts.withDefaults()
	c := *conf
	if c.DisableTLS && (c.Username != "" || c.Password != "") {
		opts.Logger.Warn("esdb: the connection string has credentials but tls=false: the EventStoreDB client sends no credentials without TLS")
	}
	if c.NodePreference != esdbclient.NodePreferenceLeader {
		opts.Logger.Info("esdb: nodePreference overridden with leader (appends read the stream they write to)", "was", string(c.NodePreference))
		c.NodePreference = esdbclient.NodePreferenceLeader
	}
	c.Logger = clientLogger(opts.Logger)
	client, err := newClient(c)
	if err != nil {
		return nil, err
	}
	base, stop := context.WithCancel(context.Background())
	return &Log{conf: c, opts: opts, filter: subscriptionFilter(opts.StreamPrefixes), logger: opts.Logger,
		base: base, stop: stop, client: client}, nil
}

func newClient(conf esdbclient.Configuration) (*esdbclient.Client, error) {
	c, err := esdbclient.NewClient(&conf)
	if err != nil {
		return nil, &domain.Error{Op: opOpen, Kind: domain.ErrInvalidArgument, Msg: "eventstoredb: " + err.Error()}
	}
	return c, nil
}

// clientLogger routes the client's messages to l, one level lower than the
// client gives them: the client reports every dropped subscription (also
// the ones the adapter closes) and every failed call as an error, which the
// adapter handles and reports itself.
func clientLogger(l *slog.Logger) esdbclient.LoggingFunc {
	return func(level esdbclient.LogLevel, format string, args ...any) {
		lv := slog.LevelDebug
		if level == esdbclient.LogError || level == esdbclient.LogWarn {
			lv = slog.LevelInfo
		}
		ctx := context.Background()
		if l.Enabled(ctx, lv) {
			l.Log(ctx, lv, "eventstoredb client: "+fmt.Sprintf(format, args...), "client_level", level)
		}
	}
}

// Ping checks that the server answers a read of the end of $all, for
// readiness probes. Errors as for Open.
func (l *Log) Ping(ctx context.Context) error {
	err := l.do(ctx, opPing, func(ctx context.Context, c *esdbclient.Client) error {
		rs, err := c.ReadAll(ctx, esdbclient.ReadAllOptions{Direction: esdbclient.Backwards, From: esdbclient.End{}}, 1)
		if err != nil {
			return err
		}
		defer rs.Close()
		for {
			if _, err := rs.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	})
	return l.mapErr(ctx, opPing, "", err)
}

// Close cancels every call and subscription in flight (subscriptions then
// fail with domain.ErrUnavailable), waits for them a few seconds at most,
// and closes the client. Idempotent; later calls fail with
// domain.ErrUnavailable.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	c := l.client
	l.mu.Unlock()
	l.stop()
	waited := make(chan struct{})
	go func() {
		l.inflight.Wait()
		close(waited)
	}()
	t := time.NewTimer(closeGrace)
	select {
	case <-waited:
	case <-t.C:
		// A call stuck inside the client (waiting for its connection
		// goroutine) is released by the close below: it panics with a send
		// on a closed channel, which call recovers.
		l.logger.Warn("esdb: calls still in flight when closing the client")
	}
	t.Stop()
	return c.Close()
}

// acquire returns the current client for one call, counted in inflight.
func (l *Log) acquire(op string) (*esdbclient.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errClosed(op)
	}
	l.inflight.Add(1)
	return l.client, nil
}

// replace swaps a dead client for a fresh one. The client's connection
// goroutine stops for good when a node discovery fails (after
// MaxDiscoverAttempts); every later call then fails with "connection
// closed", and a call may even block forever handing it a reconnect
// request. Closing the dead client releases such calls (they panic, and
// call recovers).
func (l *Log) replace(dead *esdbclient.Client) {
	l.mu.Lock()
	if l.closed || l.client != dead {
		l.mu.Unlock()
		return
	}
	fresh, err := newClient(l.conf)
	if err != nil { // cannot happen: the same configuration was accepted before
		l.mu.Unlock()
		return
	}
	l.client = fresh
	l.mu.Unlock()
	l.logger.Warn("esdb: the EventStoreDB client stopped after failing to reach the server; using a new client")
	_ = dead.Close()
}

// do runs fn on the current client (see call), once more on a fresh
// client when the first one turns out dead. It returns fn's error as is
// (for the caller to classify), ctx.Err() when ctx ended, or a closed
// error once the log is closed.
func (l *Log) do(ctx context.Context, op string, fn func(ctx context.Context, c *esdbclient.Client) error) error {
	for attempt := 0; ; attempt++ {
		c, err := l.acquire(op)
		if err != nil {
			return err
		}
		err = l.call(ctx, c, fn)
		if err == nil {
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if l.base.Err() != nil {
			return errClosed(op)
		}
		if attempt == 0 && isClientDead(err) {
			l.replace(c)
			continue
		}
		return err
	}
}

// call runs fn in its own goroutine and waits for it, for ctx, for the log
// to close, or for Options.Timeout. The goroutine is needed because the
// client can block outside gRPC, where neither contexts nor deadlines reach:
// every call first asks the client's connection goroutine for a connection,
// which waits while it rediscovers the server, and a failed call hands it a
// reconnect request. fn's context is cancelled when call returns; fn must
// not leave anything running on it. The caller holds a count in inflight,
// which the goroutine releases.
func (l *Log) call(ctx context.Context, c *esdbclient.Client, fn func(ctx context.Context, c *esdbclient.Client) error) error {
	cctx, cancel := context.WithTimeoutCause(ctx, l.opts.Timeout, errCallTimeout)
	defer cancel()
	stop := context.AfterFunc(l.base, cancel)
	defer stop()
	done := make(chan error, 1)
	go func() {
		defer l.inflight.Done()
		defer recoverClientGone(func(err error) { done <- err })
		done <- fn(cctx, c)
	}()
	select {
	case err := <-done:
		return err
	case <-cctx.Done():
		if cause := context.Cause(cctx); errors.Is(cause, errCallTimeout) {
			return fmt.Errorf("%w (%s)", errCallTimeout, l.opts.Timeout)
		}
		return cctx.Err()
	}
}

// mapErr translates an error of do for the caller: ctx's own error, a
// closed error, or a domain error (see translate).
func (l *Log) mapErr(ctx context.Context, op, item string, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if l.base.Err() != nil && domain.Kind(err) == nil {
		return errClosed(op)
	}
	return translate(op, item, err)
}

// wanted reports whether an event of $all belongs to the log: not a system
// event, not an event of the key or blob stores, and in a stream of the
// log's prefixes.
func (l *Log) wanted(stream, eventType string) bool {
	return !isSystem(stream, eventType) && !isStoreStream(stream) && matchesPrefix(stream, l.opts.StreamPrefixes)
}
