package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"github.com/kmsbackup/kmsbackup/adapters/internal/natsconn"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

var _ commands.EventLog = (*Log)(nil)

// Defaults of Options.
const (
	DefaultStream        = "KMSBACKUP_LOG"
	DefaultSubjectPrefix = "kmsbackup.log"
)

const (
	// requestTimeout bounds every request to the server when the caller's
	// context has no earlier deadline.
	requestTimeout = 10 * time.Second
	// electionWait bounds how long a call rides out a stream without a
	// leader: after its leader died (killed, say), the followers wait 4 to
	// 9 s before one of them stands, and a first vote can fail.
	electionWait = 20 * time.Second
	// firstAttempt is the timeout of the first request a call sends while
	// it rides out an election (see untilSettled).
	firstAttempt = 250 * time.Millisecond
	// maxInflightBatches bounds the atomic batches this Log has open at once
	// (the server allows 50 per stream by default).
	maxInflightBatches = 32
	// maxTokenLen bounds the subject token of a stream name.
	maxTokenLen = 1024
)

// minServer is the oldest server with atomic batch publish (2.12).
var minServer = [3]int{2, 12, 0}

// Options configures Open. The zero value uses the defaults.
type Options struct {
	// Stream is the JetStream stream that holds the whole log; empty means
	// DefaultStream.
	Stream string
	// SubjectPrefix is the subject prefix of the log: events are on
	// <prefix>.e.<stream token>, event-ID markers on <prefix>.id.<event ID>,
	// and the JetStream stream takes <prefix>.>; empty means
	// DefaultSubjectPrefix. It must not overlap another stream's subjects.
	SubjectPrefix string
	// Replicas is the JetStream stream's replication factor (1 to 5); 0
	// means 1. With 1, acknowledged events are as durable as the server's
	// sync_interval makes them (set "always" to fsync before acknowledging).
	Replicas int
	// Logger receives connection events (disconnects, reconnects,
	// asynchronous errors) that no call can return; nil means
	// slog.Default().
	Logger *slog.Logger
}

// withDefaults fills in the defaults.
func (o Options) withDefaults() Options {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports every problem of the options (after defaults), joined.
// Each wraps domain.ErrInvalidArgument.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if strings.ContainsAny(o.Stream, " \t\r\n.*>/\\") || len(o.Stream) > 255 {
		errs = append(errs, domain.Invalid("jetstream options", "stream name %q must be at most 255 characters without white space, '.', '*', '>', '/' or '\\'", o.Stream))
	}
	for _, tok := range strings.Split(o.SubjectPrefix, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			errs = append(errs, domain.Invalid("jetstream options", "subject prefix %q must be non-empty dot-separated tokens without white space or wildcards", o.SubjectPrefix))
			break
		}
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		errs = append(errs, domain.Invalid("jetstream options", "replicas must be 1 to 5, got %d", o.Replicas))
	}
	return errors.Join(errs...)
}

// Log is the event log on one JetStream stream. All its methods are safe for
// concurrent use. After Close every method fails with domain.ErrUnavailable.
type Log struct {
	nc     *nats.Conn
	stream jsapi.Stream
	// logger receives what no call can return (a subscription starting
	// a new consumer); never nil once Open returns.
	logger *slog.Logger

	evPrefix string // <prefix>.e.
	idPrefix string // <prefix>.id.
	evAll    string // <prefix>.e.>
	r        reader // reads the stream

	heads    heads         // per-stream append state
	hints    hints         // where stream reads ended
	inflight chan struct{} // semaphore of open atomic batches
	queue    chan *pending // appends waiting for a committer
	// ctx is cancelled by Close; the committers publish under it.
	ctx        context.Context
	cancel     context.CancelFunc
	committing sync.WaitGroup
	// claimSingle: appends of one event use a claim and the event rather
	// than an atomic batch (claim.go); set on one-replica streams.
	claimSingle bool
	// groups and groupsRefused count the groups of several appends
	// published, and those the server refused (for tests).
	groups, groupsRefused atomic.Int64
	// inFlight counts the writes a replicated stream refused because
	// another write of the same subject was still in flight (10164, for
	// tests).
	inFlight atomic.Int64

	closed    atomic.Bool
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	subsMu sync.Mutex
	subs   map[*subscription]struct{}
	pumps  sync.WaitGroup
}

// Open connects to the NATS server at url (a comma-separated list for a
// cluster), creates or updates the log's JetStream stream (idempotent) and
// returns the log. The connection reconnects forever; while it is down,
// calls fail with domain.ErrUnavailable instead of being buffered.
//
// Errors: domain.ErrInvalidArgument for bad options; domain.ErrUnavailable
// when the server cannot be reached or JetStream refuses the stream;
// domain.ErrFailedPrecondition when the server is older than 2.12 (no
// atomic batch publish). Call Close when done.
func Open(ctx context.Context, url string, opts Options) (*Log, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	logger := opts.Logger.With("component", "jetstream", "stream", opts.Stream)
	nc, err := natsconn.Dial(url, "kmsbackup event log", logger)
	if err != nil {
		return nil, unavailable("connect", err)
	}
	l, err := setUp(ctx, nc, opts)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return l, nil
}

func setUp(ctx context.Context, nc *nats.Conn, opts Options) (*Log, error) {
	if v := nc.ConnectedServerVersion(); !versionAtLeast(v, minServer) {
		return nil, &domain.Error{Op: "open event log", Kind: domain.ErrFailedPrecondition, Item: opts.Stream,
			Msg:  fmt.Sprintf("NATS server %s has no atomic batch publish", v),
			Hint: fmt.Sprintf("use nats-server %d.%d or later", minServer[0], minServer[1])}
	}
	js, err := jsapi.New(nc)
	if err != nil {
		return nil, unavailable("open JetStream", err)
	}
	cfg := jsapi.StreamConfig{
		Name:        opts.Stream,
		Description: "kmsbackup event log",
		Subjects:    []string{opts.SubjectPrefix + ".>"},
		Storage:     jsapi.FileStorage,
		Replicas:    opts.Replicas,
		// The log is kept forever: no age, count or size limit, and should
		// one be set by hand, new writes fail rather than old events vanish.
		Retention:         jsapi.LimitsPolicy,
		Discard:           jsapi.DiscardNew,
		MaxAge:            0,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        -1,
		DenyDelete:        true,
		DenyPurge:         true,
		AllowDirect:       true,
		// Appends are atomic batches (see doc.go).
		AllowAtomicPublish: true,
	}
	var st jsapi.Stream
	err = created(ctx, func(cctx context.Context) error {
		var err error
		if st, err = js.CreateOrUpdateStream(cctx, cfg); err != nil {
			return fmt.Errorf("create or update stream %s: %w", opts.Stream, err)
		}
		if err := waitLeader(cctx, st); err != nil {
			return fmt.Errorf("wait for the leader of stream %s: %w", opts.Stream, err)
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, unavailable("open stream "+opts.Stream, err)
	}
	if got := st.CachedInfo().Config; !got.AllowAtomicPublish || !got.AllowDirect {
		return nil, &domain.Error{Op: "open event log", Kind: domain.ErrFailedPrecondition, Item: opts.Stream,
			Msg:  "the server did not enable atomic publish and direct get on the stream",
			Hint: fmt.Sprintf("use nats-server %d.%d or later", minServer[0], minServer[1])}
	}
	p := opts.SubjectPrefix
	l := &Log{
		nc: nc, stream: st,
		evPrefix: p + ".e.",
		idPrefix: p + ".id.",
		evAll:    p + ".e.>",
		r:        newReader(nc, opts.Stream, st.CachedInfo().Config.Replicas),

		claimSingle: st.CachedInfo().Config.Replicas == 1,
		inflight:    make(chan struct{}, maxInflightBatches),
		heads:       heads{m: make(map[string]*head)},
		done:        make(chan struct{}),
		subs:        make(map[*subscription]struct{}),
		queue:       make(chan *pending, maxQueued),
		logger:      opts.Logger.With("component", "jetstream", "stream", opts.Stream),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.committing.Add(committers)
	for range committers {
		go l.committer()
	}
	return l, nil
}

// Ping checks that the server answers and the log's stream is there, for a
// readiness probe. Errors: domain.ErrUnavailable; ctx.Err().
func (l *Log) Ping(ctx context.Context) error {
	if err := l.enter("ping"); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if _, err := l.stream.Info(cctx); err != nil {
		return l.callErr(ctx, "ping", err)
	}
	return nil
}

// Close ends every subscription (their Next fails with
// domain.ErrUnavailable), closes the connection, failing calls in flight
// with domain.ErrUnavailable, and waits for the subscriptions' goroutines.
// Idempotent; safe for concurrent use. It never fails.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.done)
		l.subsMu.Lock()
		subs := make([]*subscription, 0, len(l.subs))
		for s := range l.subs {
			subs = append(subs, s)
		}
		l.subsMu.Unlock()
		for _, s := range subs {
			s.stop()
		}
		l.cancel()
		l.nc.Close()
		l.pumps.Wait()
		l.committing.Wait()
	})
	return nil
}

// enter fails once the log is closed.
func (l *Log) enter(op string) error {
	if l.closed.Load() {
		return &domain.Error{Op: op, Kind: domain.ErrUnavailable, Msg: "the event log is closed"}
	}
	return nil
}

// callErr translates the error of a call to the server: the caller's own
// context ending is returned as it is (wrapped), anything else is
// domain.ErrUnavailable.
func (l *Log) callErr(ctx context.Context, op string, err error) error {
	if l.closed.Load() {
		return &domain.Error{Op: op, Kind: domain.ErrUnavailable, Msg: "the event log is closed"}
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("jetstream: %s: %w", op, cerr)
	}
	return unavailable(op, err)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("jetstream: %s: %w (%w)", op, domain.ErrUnavailable, err)
}

// versionAtLeast reports whether the server version v ("2.15.2",
// "2.12.0-beta.1") is at least min.
func versionAtLeast(v string, min [3]int) bool {
	v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "-")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) != 3 {
		return false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return false
		}
		if n != min[i] {
			return n > min[i]
		}
	}
	return true
}
