package natsserver

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// serverPackage is the main package of nats-server, in this module's graph
// at the version go.mod requires (the one the in-process servers run).
const serverPackage = "github.com/nats-io/nats-server/v2"

// processStopTimeout bounds how long a server process is given to exit on
// SIGTERM at the end of a test before it is killed.
const processStopTimeout = 10 * time.Second

// BuildServer builds the nats-server binary of this module's graph into dir
// and returns its path. The Go build cache makes every build after the
// first one a link of a few seconds. (The nats-server a system's package
// manager installs is usually older than the 2.12 the log needs.)
func BuildServer(tb testing.TB, dir string) string {
	tb.Helper()
	bin := filepath.Join(dir, "nats-server")
	out, err := exec.Command("go", "build", "-o", bin, serverPackage).CombinedOutput()
	if err != nil {
		tb.Fatalf("natsserver: build %s: %v\n%s", serverPackage, err, out)
	}
	return bin
}

// ProcessCluster is a JetStream cluster of nats-server processes (the
// binary BuildServer made) on loopback: each with its own directory (its
// configuration, its store, fsynced on every write as the in-process
// servers are, and its log), routes between them, one cluster name. Unlike
// an in-process server, a process can be killed with SIGKILL, losing
// whatever it had not written to its store: fault tests kill one and start
// it again on its store and ports. Its methods are for the test's
// goroutine; none is safe for concurrent use.
type ProcessCluster struct {
	// Name is the cluster's name; server i is named Name-s<i+1>.
	Name string

	tb      testing.TB
	binary  string
	dirs    []string // each server's directory
	ports   []int    // client ports
	routes  []int    // cluster (route) ports
	monitor []int    // HTTP monitoring ports (/healthz)
	procs   []*serverProcess
}

// serverProcess is one running server; done is closed once it has exited.
type serverProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProcessCluster runs a cluster of n (at least 1; 3 for a quorum of 2)
// server processes of binary on free loopback ports below the ephemeral
// range (stablePorts), with their directories in tb.TempDir(); it waits until every server answers its
// health check (/healthz: a JetStream meta leader elected, and every
// stream and consumer the server holds current), and stops every server
// when the test ends.
func StartProcessCluster(tb testing.TB, binary string, n int) *ProcessCluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("natsserver: a cluster of %d servers", n)
	}
	ports := stablePorts(tb, 3*n)
	c := &ProcessCluster{Name: fmt.Sprintf("kmsbackup-proc-%d", clusterN.Add(1)), tb: tb, binary: binary,
		dirs: make([]string, n), ports: ports[:n], routes: ports[n : 2*n], monitor: ports[2*n:], procs: make([]*serverProcess, n)}
	root := tb.TempDir()
	for i := range n {
		c.dirs[i] = filepath.Join(root, fmt.Sprintf("s%d", i+1))
		if err := os.MkdirAll(c.dirs[i], 0o700); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(c.configPath(i), []byte(c.config(i)), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(c.stopAll)
	for i := range n {
		c.start(i)
	}
	c.WaitReady()
	return c
}

// stablePorts returns n TCP ports free on 127.0.0.1 when it looked, drawn
// below the kernel's range of ephemeral ports (ip_local_port_range), so
// that while a server is down no connection takes its port as its source
// port before it starts again (a client reconnecting to it can even
// connect to itself when the kernel picks that port as the source).
func stablePorts(tb testing.TB, n int) []int {
	tb.Helper()
	lo := 32768 // Linux's default start of the ephemeral range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > minStablePort+n {
				lo = v
			}
		}
	}
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			tb.Fatalf("natsserver: no %d free ports below %d", n, lo)
		}
		p := minStablePort + rand.IntN(lo-minStablePort)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		held, ports = append(held, l), append(ports, p)
	}
	return ports
}

// minStablePort is the lowest port stablePorts draws.
const minStablePort = 10000

// URL is the comma-separated list of the client URLs of every server, as a
// client of the whole cluster is configured.
func (c *ProcessCluster) URL() string {
	urls := make([]string, len(c.ports))
	for i := range c.ports {
		urls[i] = c.URLOf(i)
	}
	return strings.Join(urls, ",")
}

// URLOf is the client URL of server i alone.
func (c *ProcessCluster) URLOf(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.ports[i]) }

// Running reports whether server i runs (it was started and neither
// killed nor exited).
func (c *ProcessCluster) Running(i int) bool {
	p := c.procs[i]
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill sends server i SIGKILL and waits until it has exited: no shutdown,
// nothing flushed. Its directory and ports stay for Restart. Idempotent.
func (c *ProcessCluster) Kill(i int) {
	p := c.procs[i]
	if p == nil {
		return
	}
	c.procs[i] = nil
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Restart starts server i again on its store and ports (clients given its
// URL reconnect to it) and waits until every running server, this one
// included, answers its health check.
func (c *ProcessCluster) Restart(i int) {
	c.tb.Helper()
	if c.procs[i] != nil {
		c.tb.Fatalf("natsserver: server %d of %s is running", i, c.Name)
	}
	c.start(i)
	c.WaitReady()
}

// WaitReady waits until every running server answers /healthz with 200:
// it knows the JetStream meta leader and every stream and consumer it holds
// a replica of is current. It fails the test after clusterReadyTimeout, or
// at once when a server process has exited, with the server's log.
func (c *ProcessCluster) WaitReady() {
	c.tb.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(clusterReadyTimeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		healthy, last := true, ""
		for i, p := range c.procs {
			if p == nil {
				continue
			}
			select {
			case <-p.done:
				c.tb.Fatalf("natsserver: server %d of %s exited; its log:\n%s", i, c.Name, c.Log(i))
			default:
			}
			if ok, why := c.healthy(client, i); !ok {
				healthy, last = false, fmt.Sprintf("server %d: %s", i, why)
				break
			}
		}
		if healthy {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("natsserver: cluster %s not healthy after %s (%s)", c.Name, clusterReadyTimeout, last)
		}
		<-tick.C
	}
}

// healthy asks server i's /healthz, returning why not when it is not.
func (c *ProcessCluster) healthy(client *http.Client, i int) (bool, string) {
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", c.monitor[i]))
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return false, strings.TrimSpace(body.String())
	}
	return true, ""
}

// StreamLeader returns the index of the server that leads JetStream stream
// (of the account of clients without credentials), waiting until it has
// one, for at most clusterReadyTimeout.
func (c *ProcessCluster) StreamLeader(stream string) int {
	c.tb.Helper()
	nc, err := nats.Connect(c.URL(), nats.Timeout(time.Second))
	if err != nil {
		c.tb.Fatalf("natsserver: connect to %s: %v", c.Name, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.tb.Fatal(err)
	}
	deadline := time.Now().Add(clusterReadyTimeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s, err := js.Stream(ctx, stream)
		var leader string
		if err == nil && s.CachedInfo().Cluster != nil {
			leader = s.CachedInfo().Cluster.Leader
		}
		cancel()
		for i := range c.dirs {
			if leader == c.serverName(i) {
				return i
			}
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("natsserver: stream %s of %s has no leader after %s (last error: %v)", stream, c.Name, clusterReadyTimeout, err)
		}
		<-tick.C
	}
}

// Log returns what server i has logged, across its restarts.
func (c *ProcessCluster) Log(i int) string {
	b, err := os.ReadFile(c.logPath(i))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func (c *ProcessCluster) serverName(i int) string { return fmt.Sprintf("%s-s%d", c.Name, i+1) }
func (c *ProcessCluster) configPath(i int) string { return filepath.Join(c.dirs[i], "server.conf") }
func (c *ProcessCluster) logPath(i int) string    { return filepath.Join(c.dirs[i], "server.log") }

// config is server i's configuration: loopback only, JetStream with its
// store fsynced before every acknowledgement (as the in-process servers),
// MaxPayload as they take it, the routes to every server of the cluster.
func (c *ProcessCluster) config(i int) string {
	routes := make([]string, len(c.routes))
	for j, p := range c.routes {
		routes[j] = fmt.Sprintf("%q", fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	return fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
max_payload: %d
jetstream {
  store_dir: %q
  sync_interval: always
}
cluster {
  name: %q
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, c.serverName(i), c.ports[i], c.monitor[i], MaxPayload, filepath.Join(c.dirs[i], "store"), c.Name, c.routes[i], strings.Join(routes, ", "))
}

// start runs server i's process, its output appended to its log.
func (c *ProcessCluster) start(i int) {
	c.tb.Helper()
	logFile, err := os.OpenFile(c.logPath(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.tb.Fatal(err)
	}
	cmd := exec.Command(c.binary, "-c", c.configPath(i))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		c.tb.Fatalf("natsserver: start %s: %v", c.serverName(i), err)
	}
	p := &serverProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	c.procs[i] = p
}

// stopAll stops every running server with SIGTERM, killing those that do
// not exit in time.
func (c *ProcessCluster) stopAll() {
	var wg sync.WaitGroup
	for i, p := range c.procs {
		if p == nil {
			continue
		}
		c.procs[i] = nil
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(processStopTimeout):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}()
	}
	wg.Wait()
}
