package natsserver

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Account is the JetStream account of a client that connects without
// credentials: its streams are named under it in the server's API (for
// Cluster.StreamLeader).
const Account = "$G"

const (
	// clusterReadyTimeout bounds how long StartCluster and Restart wait for
	// the meta leader and for every running server to be current.
	clusterReadyTimeout = 60 * time.Second
	// pollEvery is how often the cluster's state is looked at while waiting
	// for it.
	pollEvery = 20 * time.Millisecond
)

// clusterN numbers the clusters of a test binary, for their names.
var clusterN atomic.Int64

// Cluster is a running JetStream cluster of test servers: each with its own
// store directory (sync_interval: always, as the single server), routes
// between them on loopback, one cluster name. It exists so that the NATS
// adapters run on replicated streams (3 replicas, a quorum of 2 to
// acknowledge, Raft leaders and followers, the staging of atomic batches in
// memory rather than in a file store), and so that tests can stop one
// server and start it again on its store.
type Cluster struct {
	// Name is the cluster's name.
	Name string
	// Servers are the cluster's servers; Servers[i] is nil while server i
	// is stopped.
	Servers []*Server

	tb        testing.TB
	dirs      []string // store directory of each server
	ports     []int    // client port of each server
	routePort []int    // cluster (route) port of each server
	routes    []*url.URL
}

// StartCluster runs a cluster of n servers (at least 1; 3 for a quorum of
// 2) on free loopback ports with their stores in tb.TempDir(), waits until
// it has elected its JetStream meta leader and every server is current, and
// stops every server when the test ends.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("natsserver: a cluster of %d servers", n)
	}
	c := &Cluster{Name: fmt.Sprintf("kmsbackup-test-%d", clusterN.Add(1)), tb: tb,
		Servers: make([]*Server, n), dirs: make([]string, n), ports: make([]int, n)}
	c.routePort = freePorts(tb, n)
	for _, p := range c.routePort {
		c.routes = append(c.routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	for i := range n {
		c.dirs[i] = filepath.Join(tb.TempDir(), fmt.Sprintf("s%d", i+1))
		c.ports[i] = -1
	}
	// Each server's own clean-up stops it (run); this one, registered
	// first, runs last and finds them stopped.
	tb.Cleanup(func() {
		for i, s := range c.Servers {
			if s != nil {
				c.Servers[i] = nil
				s.Stop()
			}
		}
	})
	for i := range n {
		c.start(i)
	}
	c.waitReady()
	return c
}

// URL is the comma-separated list of the client URLs of every server, as a
// client of the whole cluster is configured.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.ports))
	for i, p := range c.ports {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	return strings.Join(urls, ",")
}

// URLOf is the client URL of server i alone, for a client that must talk
// to that server (a follower of a stream, say). A client learns the other
// servers from it all the same and may reconnect to them.
func (c *Cluster) URLOf(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.ports[i]) }

// Stop shuts server i down and waits until it has stopped, keeping its
// store directory and ports for Restart; then, if any server is still
// running, waits until the remaining servers have a meta leader again (with
// fewer than a quorum running there is none: Stop then returns once the
// server is down). Idempotent.
func (c *Cluster) Stop(i int) {
	c.tb.Helper()
	s := c.Servers[i]
	if s == nil {
		return
	}
	c.Servers[i] = nil
	s.Stop()
	if c.running() > len(c.Servers)/2 {
		c.waitFor("a meta leader after stopping server "+s.srv.Name(), func() bool { return c.MetaLeader() >= 0 })
	}
}

// Restart starts server i again on its store directory and ports (so that
// clients given its URL reconnect to it) and waits until the cluster has a
// meta leader and every running server, this one included, is current.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	if c.Servers[i] != nil {
		c.tb.Fatalf("natsserver: server %d of %s is running", i, c.Name)
	}
	c.start(i)
	c.waitReady()
}

// MetaLeader is the index of the server that leads the JetStream meta
// group, -1 when there is none.
func (c *Cluster) MetaLeader() int {
	for i, s := range c.Servers {
		if s != nil && s.srv.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// StreamLeader waits until one running server leads JetStream stream of
// account (Account for clients without credentials) and every running
// replica of it is current, and returns its index.
func (c *Cluster) StreamLeader(account, stream string) int {
	c.tb.Helper()
	leader := -1
	c.waitFor("a current leader of stream "+stream, func() bool {
		leader = -1
		for i, s := range c.Servers {
			if s == nil {
				continue
			}
			if s.srv.JetStreamIsStreamLeader(account, stream) {
				leader = i
			}
		}
		if leader < 0 {
			return false
		}
		for _, s := range c.Servers {
			if s != nil && s.srv.JetStreamIsStreamAssigned(account, stream) && !s.srv.JetStreamIsStreamCurrent(account, stream) {
				return false
			}
		}
		return true
	})
	return leader
}

// start runs server i on its store directory, its route port and its
// client port (a free one the first time).
func (c *Cluster) start(i int) {
	c.tb.Helper()
	opts := serverOptions(fmt.Sprintf("%s-s%d", c.Name, i+1), c.dirs[i], c.ports[i])
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: "127.0.0.1", Port: c.routePort[i]}
	opts.Routes = c.routes
	s := run(c.tb, opts)
	c.Servers[i] = s
	c.ports[i] = s.Port
}

func (c *Cluster) running() int {
	n := 0
	for _, s := range c.Servers {
		if s != nil {
			n++
		}
	}
	return n
}

// waitReady waits until the cluster has a meta leader that knows every
// server as a peer, and every running server is current.
func (c *Cluster) waitReady() {
	c.tb.Helper()
	c.waitFor("a meta leader with every server current", func() bool {
		l := c.MetaLeader()
		if l < 0 || len(c.Servers[l].srv.JetStreamClusterPeers()) != len(c.Servers) {
			return false
		}
		for _, s := range c.Servers {
			if s != nil && !s.srv.JetStreamIsCurrent() {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond until it holds, failing the test after
// clusterReadyTimeout.
func (c *Cluster) waitFor(what string, cond func() bool) {
	c.tb.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			c.tb.Fatalf("natsserver: cluster %s: no %s after %s", c.Name, what, clusterReadyTimeout)
		}
		<-t.C
	}
}

// freePorts returns n TCP ports free on 127.0.0.1 when it looked (they are
// held open together, so they differ, then released for the servers).
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, n)
	ls := make([]net.Listener, n)
	for i := range ls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("natsserver: find a free port: %v", err)
		}
		ls[i] = l
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}
