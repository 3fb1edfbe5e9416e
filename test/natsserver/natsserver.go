package natsserver

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// MaxPayload is the largest message the test server accepts: 8 MiB, so that
// adapters can be tested with events of a few MiB (the server's own default
// is 1 MiB).
const MaxPayload = 8 << 20

// readyTimeout bounds how long Start waits for the server to accept
// connections.
const readyTimeout = 10 * time.Second

// Server is a running test server.
type Server struct {
	// URL is the client URL, nats://127.0.0.1:<port>.
	URL string
	// Port is the port the server listens on.
	Port int
	// StoreDir is the JetStream store directory.
	StoreDir string

	srv *server.Server
}

// Stop shuts the server down and waits until it has stopped. Idempotent.
func (s *Server) Stop() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// Start runs a fresh server with JetStream on a random port and a store in
// tb.TempDir(), and stops it when the test ends. It returns the client URL
// and a stop function for tests that stop it earlier (stop is idempotent).
func Start(tb testing.TB) (url string, stop func()) {
	tb.Helper()
	s := StartAt(tb, tb.TempDir(), -1)
	return s.URL, s.Stop
}

// StartAt runs a server with JetStream whose store is storeDir, listening on
// port (-1 picks a free one), and stops it when the test ends. Starting a
// server again on the store of a stopped one (and its port, so that clients
// reconnect) is how tests restart it.
//
// The server fsyncs every write before acknowledging it (sync_interval:
// always), which is what an event log's "durable once acknowledged" needs on
// a single server.
func StartAt(tb testing.TB, storeDir string, port int) *Server {
	tb.Helper()
	return run(tb, serverOptions("kmsbackup-test", storeDir, port))
}

// serverOptions are the options of a test server named name with its store
// in storeDir, listening on port (-1: a free one): JetStream, fsync of every
// write before its acknowledgement (sync_interval: always), MaxPayload,
// nothing logged, no signal handlers, no monitoring.
func serverOptions(name, storeDir string, port int) *server.Options {
	return &server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		SyncAlways: true,
		MaxPayload: MaxPayload,
		NoLog:      true,
		NoSigs:     true,
		HTTPPort:   0,
	}
}

// run starts a server with opts, waits until it accepts connections and
// stops it when the test ends.
func run(tb testing.TB, opts *server.Options) *Server {
	tb.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("natsserver: new server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		tb.Fatalf("natsserver: server %s on %s:%d not ready after %s", opts.ServerName, opts.Host, opts.Port, readyTimeout)
	}
	s := &Server{URL: srv.ClientURL(), StoreDir: opts.StoreDir, srv: srv}
	if addr, ok := srv.Addr().(*net.TCPAddr); ok {
		s.Port = addr.Port
	} else if _, p, err := net.SplitHostPort(srv.Addr().String()); err == nil {
		s.Port, _ = strconv.Atoi(p)
	}
	tb.Cleanup(s.Stop)
	return s
}
