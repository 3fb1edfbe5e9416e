package esdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmsbackup/kmsbackup/domain"
)

func TestKindOf(t *testing.T) {
	for _, c := range []struct {
		code esdbclient.ErrorCode
		grpc codes.Code
		want error
	}{
		{esdbclient.ErrorCodeWrongExpectedVersion, codes.OK, domain.ErrWrongExpectedRevision},
		{esdbclient.ErrorCodeStreamDeleted, codes.FailedPrecondition, domain.ErrFailedPrecondition},
		{esdbclient.ErrorCodeUnknown, codes.InvalidArgument, domain.ErrInvalidArgument},
		{esdbclient.ErrorCodeUnknown, codes.Unknown, domain.ErrUnavailable},
		{esdbclient.ErrorUnavailable, codes.Unavailable, domain.ErrUnavailable},
		{esdbclient.ErrorCodeConnectionClosed, codes.OK, domain.ErrUnavailable},
		{esdbclient.ErrorCodeNotLeader, codes.NotFound, domain.ErrUnavailable},
		{esdbclient.ErrorCodeDeadlineExceeded, codes.DeadlineExceeded, domain.ErrUnavailable},
		{esdbclient.ErrorAborted, codes.Aborted, domain.ErrUnavailable},
		{esdbclient.ErrorCodeUnauthenticated, codes.Unauthenticated, domain.ErrUnavailable},
		{esdbclient.ErrorCodeAccessDenied, codes.PermissionDenied, domain.ErrUnavailable},
		{esdbclient.ErrorCodeResourceNotFound, codes.NotFound, domain.ErrUnavailable},
		{esdbclient.ErrorCodeInternalServer, codes.Internal, domain.ErrUnavailable},
	} {
		got, hint := kindOf(c.code, c.grpc)
		if got != c.want {
			t.Errorf("kindOf(%d, %s) = %v, want %v", c.code, c.grpc, got, c.want)
		}
		if got != domain.ErrInvalidArgument && hint == "" {
			t.Errorf("kindOf(%d, %s) gives no hint", c.code, c.grpc)
		}
	}
}

func TestTranslate(t *testing.T) {
	if translate("op", "s", nil) != nil {
		t.Fatal("translate(nil) is not nil")
	}
	ours := domain.Corruption("esdb: bad")
	if got := translate("op", "s", ours); got != ours {
		t.Errorf("a domain error is not passed through: %v", got)
	}
	clientErr, _ := esdbclient.FromError(status.Error(codes.InvalidArgument, "Maximum Append Size of 1048576 Exceeded."))
	for _, c := range []struct {
		name string
		err  error
		want error
	}{
		{"raw gRPC error", status.Error(codes.Unavailable, "connection refused"), domain.ErrUnavailable},
		{"plain error", errors.New("failed to initiate subscription"), domain.ErrUnavailable},
		{"call timeout", fmt.Errorf("%w (30s)", errCallTimeout), domain.ErrUnavailable},
		{"client gone", errClientGone, domain.ErrUnavailable},
		{"client error, invalid argument", clientErr, domain.ErrInvalidArgument},
	} {
		got := translate("append", "kms-a", c.err)
		if !errors.Is(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		var ce *esdbclient.Error
		if errors.As(got, &ce) {
			t.Errorf("%s: the client's error type leaks through: %v", c.name, got)
		}
		if !strings.Contains(got.Error(), "append kms-a") {
			t.Errorf("%s: the error does not say what failed: %v", c.name, got)
		}
	}
}

func TestErrorClassification(t *testing.T) {
	unknownStatus, _ := esdbclient.FromError(status.Error(codes.Unknown, "Unexpected ReadAllResult: InvalidPosition"))
	invalidArg, _ := esdbclient.FromError(status.Error(codes.InvalidArgument, "Trying to read from an invalid position."))
	unavailable := status.Error(codes.Unavailable, "down")
	if !isBadPosition(unknownStatus) || !isBadPosition(invalidArg) {
		t.Error("the server's invalid-position answers are not recognised")
	}
	if isBadPosition(unavailable) || isBadPosition(errClientGone) || isBadPosition(nil) {
		t.Error("other errors are taken for an invalid position")
	}
	if !isClientDead(errClientGone) || !isClientDead(fmt.Errorf("x: %w", errClientGone)) || isClientDead(unknownStatus) {
		t.Error("isClientDead")
	}
	if isWrongExpectedVersion(unknownStatus) || isStreamNotFound(unknownStatus) {
		t.Error("an unknown error is taken for a known code")
	}
	if !isPermanent(domain.Corruption("x")) || isPermanent(unavailable) || isPermanent(errClientGone) {
		t.Error("isPermanent")
	}
}

func TestRedactUserinfo(t *testing.T) {
	for in, want := range map[string]string{
		"esdb://admin:changeit@localhost:2113?tls=false": "esdb://xxxxx:xxxxx@localhost:2113?tls=false",
		"esdb://u:p@s/s?w@rd@h1:2113,h2:2113":            "esdb://xxxxx:xxxxx@h1:2113,h2:2113",
		"esdb+discover://ops:pw@cluster.local:2113":      "esdb+discover://xxxxx:xxxxx@cluster.local:2113",
		"esdb://localhost:2113?tls=false":                "esdb://localhost:2113?tls=false",
		"localhost:2113":                                 "localhost:2113",
	} {
		if got := redactUserinfo(in); got != want {
			t.Errorf("redactUserinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenMalformedURL(t *testing.T) {
	ctx := context.Background()
	for _, url := range []string{
		"esdb://admin:s3cretpw@localhost:notaport",
		"esdb://admin:s3cretpw@",
		"http://admin:s3cretpw@localhost:2113",
		"esdb://localhost:2113?tls=maybe",
		"esdb://:s3cretpw@localhost:2113",
	} {
		l, err := Open(ctx, url, Options{})
		if l != nil || !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("Open(%q) = %v, %v; want ErrInvalidArgument", url, l, err)
			continue
		}
		if strings.Contains(err.Error(), "s3cretpw") {
			t.Errorf("Open(%q): the error shows the password: %v", url, err)
		}
	}
	if _, err := Open(ctx, "esdb://localhost:2113", Options{StreamPrefixes: []string{"$all"}}); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("Open with bad options: %v", err)
	}
}

// deadURL is a connection string for a port nobody listens on, with a
// short discovery so that the client gives up fast.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "esdb://admin:s3cretpw@" + addr + "?tls=false&maxDiscoverAttempts=2&discoveryInterval=10&gossipTimeout=1"
}

// testLogger logs to t until the test ends (the client's goroutines may
// outlive it by a little).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(b)))
	}
	return len(b), nil
}

// TestUnreachableServer drives the client's failure modes without a
// server: its connection goroutine stops after the failed discovery, the
// log replaces it, and nothing blocks or panics, Close included.
func TestUnreachableServer(t *testing.T) {
	url := deadURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	start := time.Now()
	_, err := Open(ctx, url, Options{Logger: testLogger(t)})
	if !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("Open of an unreachable server: %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "s3cretpw") {
		t.Fatalf("the error shows the password: %v", err)
	}
	t.Logf("Open failed after %s: %v", time.Since(start), err)

	conf, err := parseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	l, err := newLog(conf, Options{Logger: testLogger(t), StreamPrefixes: []string{"kms-"}})
	if err != nil {
		t.Fatal(err)
	}
	first := l.client
	if _, err := l.Head(ctx); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("Head: %v, want ErrUnavailable", err)
	}
	// The failed discovery stopped the client for good: the next call finds
	// it closed, replaces it, and fails on the new one the same way.
	if _, err := l.ReadAll(ctx, 0, 10); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("ReadAll: %v, want ErrUnavailable", err)
	}
	l.mu.Lock()
	replaced := l.client != first
	l.mu.Unlock()
	if !replaced {
		t.Fatal("the dead client was not replaced")
	}
	if _, err := l.Append(ctx, "kms-a", domain.ExpectAny, []domain.Event{testEvent("kms-a", 0)}); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("Append: %v, want ErrUnavailable", err)
	}

	// A subscription keeps trying, and Close wakes it.
	sub, err := l.Subscribe(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := sub.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next while the server is down: %v, want DeadlineExceeded", err)
	}
	cancelShort()
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctx); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("Next after Close: %v, want ErrUnavailable", err)
	}
	sub2, err := l.Subscribe(ctx, 12345)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := sub2.Next(ctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)

	start = time.Now()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %s", d)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, domain.ErrUnavailable) {
			t.Errorf("blocked Next when the log closes: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked Next did not return after the log closed")
	}
	if _, err := l.Append(ctx, "kms-a", domain.ExpectAny, []domain.Event{testEvent("kms-a", 0)}); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, err := l.Subscribe(ctx, 0); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	if err := l.Ping(ctx); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("Ping after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// idleLog is a log whose client is never used to reach a server.
func idleLog(t *testing.T, opts Options) *Log {
	t.Helper()
	conf, err := parseURL("esdb://127.0.0.1:1?tls=false")
	if err != nil {
		t.Fatal(err)
	}
	l, err := newLog(conf, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestCallRecoversTheClientsPanic(t *testing.T) {
	l := idleLog(t, Options{})
	ctx := context.Background()
	closed := make(chan int)
	close(closed)
	calls := 0
	first := l.client
	err := l.do(ctx, "test", func(ctx context.Context, c *esdbclient.Client) error {
		calls++
		if calls == 1 {
			closed <- 1 // what the client does when closed under a call
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("do after a recovered panic: %v after %d calls; want success on the second", err, calls)
	}
	if l.client == first {
		t.Fatal("the client was not replaced after it panicked")
	}
	l.inflight.Add(1) // call's caller holds a count, which call's goroutine releases
	err = l.call(ctx, l.client, func(ctx context.Context, c *esdbclient.Client) error {
		closed <- 1
		return nil
	})
	if !errors.Is(err, errClientGone) {
		t.Fatalf("call: %v, want errClientGone", err)
	}
}

func TestCallTimeoutAndCancel(t *testing.T) {
	l := idleLog(t, Options{Timeout: 50 * time.Millisecond})
	release := make(chan struct{})
	defer close(release)
	block := func(ctx context.Context, c *esdbclient.Client) error {
		<-release // a call stuck outside gRPC ignores its context
		return nil
	}
	l.inflight.Add(1)
	if err := l.call(context.Background(), l.client, block); !errors.Is(err, errCallTimeout) {
		t.Fatalf("stuck call: %v, want errCallTimeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.do(ctx, "test", block); !errors.Is(err, context.Canceled) {
		t.Fatalf("do with a cancelled context: %v", err)
	}
}

func TestClientLogger(t *testing.T) {
	var buf bytes.Buffer
	log := clientLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	log(esdbclient.LogError, "subscription has dropped. Reason: %v", "context canceled")
	log(esdbclient.LogDebug, "trying candidate %s", "x")
	out := buf.String()
	if !strings.Contains(out, "level=INFO") || !strings.Contains(out, "subscription has dropped. Reason: context canceled") {
		t.Errorf("a client error is not logged at info: %q", out)
	}
	if strings.Contains(out, "trying candidate") {
		t.Errorf("a client debug message shows at info: %q", out)
	}
}
