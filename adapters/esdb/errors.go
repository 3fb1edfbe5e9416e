package esdb

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Operation names, as they appear in errors.
const (
	opAppend     = "append"
	opReadStream = "read stream"
	opReadAll    = "read all"
	opHead       = "head"
	opSubscribe  = "subscribe"
	opPing       = "ping"
	opOpen       = "open event log"
)

var (
	// errClientGone marks a call that ran into a client whose connection
	// goroutine had stopped: the client panics with a send on its closed
	// channel, which call recovers. The call is retried on a fresh client.
	errClientGone = errors.New("esdb: the EventStoreDB client was closed under the call")
	// errCallTimeout marks a call that gave no answer within
	// Options.Timeout (the client can block outside gRPC, where no
	// deadline reaches it, while it rediscovers the server).
	errCallTimeout = errors.New("esdb: no answer from EventStoreDB in time")
	// errDropped stands for a subscription drop that carried no error.
	errDropped = errors.New("esdb: subscription dropped")
)

func errClosed(op string) error {
	return &domain.Error{Op: op, Kind: domain.ErrUnavailable, Msg: "the event log is closed"}
}

var errSubClosed = &domain.Error{Op: "next", Kind: domain.ErrUnavailable, Msg: "the subscription is closed"}

// translate turns an error of the EventStoreDB client (or of gRPC under
// it) into a domain error. It keeps the client's message, which names
// streams, positions and gRPC statuses but never event data, and drops the
// vendor type: callers see only our sentinels.
func translate(op, item string, err error) error {
	if err == nil {
		return nil
	}
	if domain.Kind(err) != nil {
		return err
	}
	kind, hint := domain.ErrUnavailable, "EventStoreDB cannot serve now; retry later"
	var ee *esdbclient.Error
	switch {
	case errors.As(err, &ee):
		kind, hint = kindOf(ee.Code(), status.Code(ee.Err()))
	case errors.Is(err, errCallTimeout), errors.Is(err, context.DeadlineExceeded):
		hint = "EventStoreDB did not answer in time; retry later"
	}
	return &domain.Error{Op: op, Kind: kind, Item: item, Msg: "eventstoredb: " + err.Error(), Hint: hint}
}

// kindOf maps a client error code (and, for codes the client leaves
// unclassified, the gRPC status code) to a sentinel and a hint.
func kindOf(code esdbclient.ErrorCode, grpc codes.Code) (error, string) {
	switch code {
	case esdbclient.ErrorCodeWrongExpectedVersion:
		return domain.ErrWrongExpectedRevision, "reload and retry"
	case esdbclient.ErrorCodeStreamDeleted:
		return domain.ErrFailedPrecondition, "the stream was deleted in EventStoreDB; kmsbackup never deletes streams"
	case esdbclient.ErrorCodeUnauthenticated, esdbclient.ErrorCodeAccessDenied:
		return domain.ErrUnavailable, "check the user and ACLs of the connection string (the client sends credentials only over TLS; reading $all needs a user allowed to read it)"
	case esdbclient.ErrorCodeUnknown:
		if grpc == codes.InvalidArgument {
			// The server refused the request itself, e.g. a batch over its
			// maximum append size.
			return domain.ErrInvalidArgument, ""
		}
	}
	return domain.ErrUnavailable, "EventStoreDB cannot serve now; retry later"
}

// clientCode returns the client error code of err, if it is a client error.
func clientCode(err error) (esdbclient.ErrorCode, bool) {
	var ee *esdbclient.Error
	if errors.As(err, &ee) {
		return ee.Code(), true
	}
	return 0, false
}

// isWrongExpectedVersion reports the client's optimistic-concurrency error.
func isWrongExpectedVersion(err error) bool {
	c, ok := clientCode(err)
	return ok && c == esdbclient.ErrorCodeWrongExpectedVersion
}

// isStreamNotFound reports the client's "stream not found" from a read.
func isStreamNotFound(err error) bool {
	c, ok := clientCode(err)
	return ok && c == esdbclient.ErrorCodeResourceNotFound
}

// isClientDead reports an error meaning the client itself is unusable: it
// reports its connection closed (after a failed node discovery its
// connection goroutine stops for good) or it panicked because it was.
func isClientDead(err error) bool {
	c, ok := clientCode(err)
	return errors.Is(err, errClientGone) || (ok && c == esdbclient.ErrorCodeConnectionClosed)
}

// isBadPosition reports the errors a read of $all fails with when it
// starts at a position that is not the start of a record: the server
// answers "invalid position" or fails to parse what it finds there, both of
// which reach the client as an unclassified error with gRPC status Unknown
// (or InvalidArgument on servers that report the position as such).
func isBadPosition(err error) bool {
	var ee *esdbclient.Error
	if !errors.As(err, &ee) || ee.Code() != esdbclient.ErrorCodeUnknown {
		return false
	}
	switch status.Code(ee.Err()) {
	case codes.Unknown, codes.InvalidArgument, codes.Internal:
		return true
	}
	return false
}

// isPermanent reports errors a subscription does not retry: data that
// does not decode, or a configuration the server will keep refusing.
func isPermanent(err error) bool {
	return errors.Is(err, domain.ErrCorrupt) || errors.Is(err, domain.ErrFailedPrecondition)
}

// recoverClientGone turns the client's "send on closed channel" panic into
// errClientGone and passes it to report; any other panic is a bug and goes
// on.
func recoverClientGone(report func(error)) {
	r := recover()
	if r == nil {
		return
	}
	if re, ok := r.(runtime.Error); ok && strings.Contains(re.Error(), "send on closed channel") {
		report(fmt.Errorf("%w (%v)", errClientGone, re))
		return
	}
	panic(r)
}

// Resubscription backoff: 100 ms, doubling, at most 5 s.
const (
	initialBackoff = 100 * time.Millisecond
	maxBackoff     = 5 * time.Second
)

// backoff is the wait before resubscribing after failures consecutive
// failed attempts (0 for the first retry).
func backoff(failures int) time.Duration {
	d := initialBackoff
	for i := 0; i < failures && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// sleepCtx waits d or until ctx is done; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
