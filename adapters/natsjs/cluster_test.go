package natsjs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/blobstore"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
	"github.com/kmsbackup/kmsbackup/test/conformance/keystore"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
	"github.com/nats-io/nats.go"
)

// The tests of this file run the stores on a cluster of 3 servers with 3
// replicas, the shape of a deployment beyond one machine: a quorum of 2
// acknowledges, a replica may lag its leader (reader), atomic batches are
// staged in memory, and a lost race can come back as 10164.
//
// The servers run in the test process, so the race detector watches them
// too. nats-server 2.15 (checked up to 2.15.3) sets up its tracking of
// writes with an expected last sequence (stream.expectedPerSubjectSequence)
// without a lock the first time a stream leader sees one, while its apply
// goroutine reads that field without one: the detector reports it when
// writes without an expected sequence are still being applied at that
// moment. The three stores write with an expected sequence from their first
// message on (the log's claims and batches, the key store's creates and
// updates, the first chunk of a blob: blobs.go, writeChunks), which keeps
// them out of it.

const clusterReplicas = 3

// quietLogger drops the connection messages of the tests that stop servers.
var quietLogger = slog.New(slog.DiscardHandler)

// onFollower opens a store on the cluster with open (its JetStream stream
// is created and has a leader once open returns), finds the server that
// leads stream, and opens it again with reopen on a connection to another
// server only, a follower of the stream, which it checks it is connected
// to. The first store is closed by close.
func onFollower[T any](tb testing.TB, c *natsserver.Cluster, stream string, open func(url string) T, close func(T), reopen func(url string) T) T {
	tb.Helper()
	close(open(c.URL()))
	leader := c.StreamLeader(natsserver.Account, stream)
	return reopen(c.URLOf((leader + 1) % len(c.Servers)))
}

// clusterLog opens a log of 3 replicas on c; through a follower of its
// stream when follower is set.
func clusterLog(t *testing.T, c *natsserver.Cluster, follower bool) *Log {
	t.Helper()
	opts := uniqueOptions()
	opts.Replicas = clusterReplicas
	open := func(url string) *Log {
		l, err := Open(t.Context(), url, opts)
		if err != nil {
			t.Fatalf("Open(%s): %v", url, err)
		}
		return l
	}
	if !follower {
		return open(c.URL())
	}
	return onFollower(t, c, opts.Stream, open, func(l *Log) { _ = l.Close() }, func(url string) *Log {
		l := open(url)
		if got := l.nc.ConnectedUrl(); got != url {
			t.Fatalf("the log is connected to %s, not to the follower %s", got, url)
		}
		if leader := c.StreamLeader(natsserver.Account, opts.Stream); c.URLOf(leader) == url {
			t.Fatalf("the follower %s leads the stream", url)
		}
		return l
	})
}

// clusterConn connects to c (or to a follower of stream only) and closes
// the connection when the test ends.
func clusterConn(t *testing.T, c *natsserver.Cluster, stream string, follower bool) *Conn {
	t.Helper()
	if !follower {
		return MustConnect(t, c.URL())
	}
	url := c.URLOf((c.StreamLeader(natsserver.Account, stream) + 1) % len(c.Servers))
	conn := MustConnect(t, url)
	if got := conn.nc.ConnectedUrl(); got != url {
		t.Fatalf("connected to %s, not to the follower %s", got, url)
	}
	return conn
}

// TestClusterConformance runs the three conformance suites on a cluster of
// 3 servers with 3 replicas, through a connection to every server, then
// through a connection to a follower of each store's stream only (the
// event log there also with single-event appends as claims, which a
// replicated log does not use by default).
func TestClusterConformance(t *testing.T) {
	c := natsserver.StartCluster(t, 3)
	for _, follower := range []bool{false, true} {
		t.Run(fmt.Sprintf("follower=%v", follower), func(t *testing.T) {
			t.Run("eventlog", func(t *testing.T) {
				eventlog.Run(t, func(t *testing.T) commands.EventLog { return clusterLog(t, c, follower) },
					eventlog.Features{ContiguousPositions: false, MaxDataSize: 4 << 20})
			})
			if follower {
				t.Run("eventlog/claims", func(t *testing.T) {
					eventlog.Run(t, func(t *testing.T) commands.EventLog {
						l := clusterLog(t, c, follower)
						l.claimSingle = true
						return l
					}, eventlog.Features{ContiguousPositions: false, MaxDataSize: 4 << 20})
				})
			}
			t.Run("keystore", func(t *testing.T) {
				// Two handles, as two nodes: the first on a follower when
				// follower is set, the second on every server.
				keystore.Run(t, func(t *testing.T) (commands.KeyStore, commands.KeyStore) {
					bucket := uniqueBucket("KEYS")
					opts := KeyStoreOptions{Bucket: bucket, Replicas: clusterReplicas}
					b, err := OpenKeyStore(t.Context(), MustConnect(t, c.URL()), opts)
					if err != nil {
						t.Fatal(err)
					}
					a, err := OpenKeyStore(t.Context(), clusterConn(t, c, "KV_"+bucket, follower), opts)
					if err != nil {
						t.Fatal(err)
					}
					return a, b
				})
			})
			t.Run("blobstore", func(t *testing.T) {
				blobstore.Run(t, func(t *testing.T) commands.BlobStore {
					bucket := uniqueBucket("BLOBS")
					opts := BlobsOptions{Bucket: bucket, Replicas: clusterReplicas}
					if _, err := OpenBlobs(t.Context(), MustConnect(t, c.URL()), opts); err != nil {
						t.Fatal(err)
					}
					s, err := OpenBlobs(t.Context(), clusterConn(t, c, "OBJ_"+bucket, follower), opts)
					if err != nil {
						t.Fatal(err)
					}
					return s
				})
			})
		})
	}
}

// TestClusterRaces races Logs connected to different servers (the
// stream's leader and a follower) for every revision of one stream, on
// both paths of a single-event append (a claim then the event, or an
// atomic batch, which a replicated stream stages in memory): exactly one
// append wins each revision. Some of the lost races come back from the
// server as 10164 (another write of the subject still in flight), which
// the log retries as a race it lost.
func TestClusterRaces(t *testing.T) {
	c := natsserver.StartCluster(t, 3)
	for _, claims := range []bool{false, true} {
		t.Run(fmt.Sprintf("claims=%v", claims), func(t *testing.T) {
			opts := uniqueOptions()
			opts.Replicas = clusterReplicas
			first := MustOpen(t, c.URL(), opts)
			leader := c.StreamLeader(natsserver.Account, opts.Stream)
			logs := []*Log{first, MustOpen(t, c.URLOf(leader), opts), MustOpen(t, c.URLOf((leader+1)%3), opts)}
			for _, l := range logs {
				l.claimSingle = claims
			}
			var inFlight int64
			for round := 0; round < 5 && inFlight == 0; round++ {
				raceBetweenLogs(t, logs, fmt.Sprintf("kms-race-%d", round))
				inFlight = 0
				for _, l := range logs {
					inFlight += l.inFlight.Load()
				}
			}
			t.Logf("writes refused with 10164: %d", inFlight)
			if inFlight == 0 {
				t.Errorf("no race came back as 10164 in 5 runs")
			}
		})
	}
}

// TestClusterServerDown stops the server that leads the log's stream:
// appends (single events and batches, each expecting an exact revision),
// data keys and blobs are still acknowledged by the 2 servers left (a
// quorum of 2 of 3), through clients of the whole cluster. The server
// starts again on its store and catches up; then another server stops, so
// that the restarted one is needed for the quorum, and everything
// acknowledged reads back, whole and once, through clients connected to
// the restarted server alone.
func TestClusterServerDown(t *testing.T) {
	c := natsserver.StartCluster(t, 3)
	ctx := t.Context()
	opts := uniqueOptions()
	opts.Replicas = clusterReplicas
	opts.Logger = quietLogger
	l := MustOpen(t, c.URL(), opts)
	conn, err := Connect(ctx, c.URL(), ConnOptions{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keyOpts := KeyStoreOptions{Bucket: uniqueBucket("KEYS"), Replicas: clusterReplicas}
	blobOpts := BlobsOptions{Bucket: uniqueBucket("BLOBS"), Replicas: clusterReplicas}
	keys, err := OpenKeyStore(ctx, conn, keyOpts)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := OpenBlobs(ctx, conn, blobOpts)
	if err != nil {
		t.Fatal(err)
	}

	streams := []string{"kms-down-a", "kms-down-b"}
	acked := map[string][]domain.Event{}
	seed := uint64(0)
	write := func(round int) {
		t.Helper()
		for i, st := range streams {
			seed++
			evs := eventlog.Events(st, seed, 1+(round+i)%3)
			exp := domain.ExpectNoStream
			if n := len(acked[st]); n > 0 {
				exp = domain.ExpectRevision(uint64(n - 1))
			}
			res, err := l.Append(ctx, st, exp, evs)
			if err != nil {
				t.Fatalf("round %d: append %d events to %s: %v", round, len(evs), st, err)
			}
			if want := uint64(len(acked[st]) + len(evs) - 1); res.LastRevision != want {
				t.Fatalf("round %d: %s: revision %d, want %d", round, st, res.LastRevision, want)
			}
			acked[st] = append(acked[st], evs...)
		}
		ref := fmt.Sprintf("bkp_down/%d", round)
		if _, err := keys.PutWrapped(ctx, ref, []byte("wrapped "+ref), 0); err != nil {
			t.Fatalf("round %d: put a data key: %v", round, err)
		}
		if err := blobs.PutBlob(ctx, ref, "slice", bytes.Repeat([]byte(ref), 50_000)); err != nil {
			t.Fatalf("round %d: put a blob: %v", round, err)
		}
	}
	const before, during = 5, 20
	for round := range before {
		write(round)
	}
	down := c.StreamLeader(natsserver.Account, opts.Stream)
	c.Stop(down)
	for round := before; round < before+during; round++ {
		write(round)
	}
	c.Restart(down)
	c.StreamLeader(natsserver.Account, opts.Stream) // every replica current
	c.StreamLeader(natsserver.Account, "KV_"+keyOpts.Bucket)
	c.StreamLeader(natsserver.Account, "OBJ_"+blobOpts.Bucket)
	c.Stop((down + 1) % 3)
	start := time.Now()
	for _, st := range []string{opts.Stream, "KV_" + keyOpts.Bucket, "OBJ_" + blobOpts.Bucket} {
		c.StreamLeader(natsserver.Account, st)
	}
	t.Logf("leaders again after %s", time.Since(start))

	// Read everything through the restarted server.
	url := c.URLOf(down)
	l2 := MustOpen(t, url, opts)
	conn2, err := Connect(ctx, url, ConnOptions{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	keys2, err := OpenKeyStore(ctx, conn2, keyOpts)
	if err != nil {
		t.Fatal(err)
	}
	blobs2, err := OpenBlobs(ctx, conn2, blobOpts)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range streams {
		got := mustReadStream(t, l2, st)
		if len(got) != len(acked[st]) {
			t.Fatalf("%s holds %d events, %d were acknowledged", st, len(got), len(acked[st]))
		}
		for i, e := range got {
			if e.ID != acked[st][i].ID || e.Revision != uint64(i) {
				t.Fatalf("%s revision %d holds %s (revision %d), want %s", st, i, e.ID, e.Revision, acked[st][i].ID)
			}
		}
	}
	for round := range before + during {
		ref := fmt.Sprintf("bkp_down/%d", round)
		if rec, rev, err := keys2.GetWrapped(ctx, ref); err != nil || rev == 0 || string(rec) != "wrapped "+ref {
			t.Fatalf("data key %s after the restart: %q, revision %d, %v", ref, rec, rev, err)
		}
		if blob, err := blobs2.GetBlob(ctx, ref, "slice"); err != nil || !bytes.Equal(blob, bytes.Repeat([]byte(ref), 50_000)) {
			t.Fatalf("blob %s after the restart: %d bytes, %v", ref, len(blob), err)
		}
	}
}

// TestClusterReplicaBehind plays the replica furthest behind there can be:
// the Log's direct gets go to another, empty stream's replicas, so every
// read that any replica may answer finds nothing. Appends with every
// expectation still succeed or fail as the leader's stream says, retries
// are still recognised, and reads still return every event, completed from
// the leader.
func TestClusterReplicaBehind(t *testing.T) {
	c := natsserver.StartCluster(t, 3)
	ctx := t.Context()
	opts := uniqueOptions()
	opts.Replicas = clusterReplicas
	empty := uniqueOptions()
	empty.Replicas = clusterReplicas
	nothing := MustOpen(t, c.URL(), empty).r.direct
	// behind opens a Log that knows nothing of the stream yet, whose
	// direct gets find nothing.
	behind := func() *Log {
		l := MustOpen(t, c.URL(), opts)
		l.r.direct = nothing
		return l
	}

	const stream = "kms-behind"
	evs := eventlog.Events(stream, 1, 6)
	first := mustAppend(t, behind(), stream, domain.ExpectNoStream, evs[:2])
	if _, err := behind().Append(ctx, stream, domain.ExpectNoStream, evs[2:3]); !errors.Is(err, domain.ErrWrongExpectedRevision) {
		t.Fatalf("ExpectNoStream on a stream of 2 events: %v, want ErrWrongExpectedRevision", err)
	}
	mustAppend(t, behind(), stream, domain.ExpectRevision(1), evs[2:3])
	mustAppend(t, behind(), stream, domain.ExpectAny, evs[3:4])
	if again := mustAppend(t, behind(), stream, domain.ExpectNoStream, evs[:2]); again != first {
		t.Fatalf("retry = %+v, want %+v", again, first)
	}
	res, err := behind().AppendMulti(ctx, []commands.StreamAppend{
		{Stream: stream, Expected: domain.ExpectRevision(3), Events: evs[4:6]},
		{Stream: "kms-behind-2", Expected: domain.ExpectNoStream, Events: eventlog.Events("kms-behind-2", 2, 1)},
	})
	if err != nil || res[0].LastRevision != 5 {
		t.Fatalf("AppendMulti: %+v, %v", res, err)
	}
	l := behind()
	got := mustReadStream(t, l, stream)
	if len(got) != len(evs) {
		t.Fatalf("ReadStream: %d events, want %d", len(got), len(evs))
	}
	for i, e := range got {
		if e.ID != evs[i].ID || e.Revision != uint64(i) {
			t.Fatalf("revision %d holds %s (revision %d), want %s", i, e.ID, e.Revision, evs[i].ID)
		}
	}
	all, err := l.ReadAll(ctx, 0, 100)
	if err != nil || len(all) != len(evs)+1 {
		t.Fatalf("ReadAll: %d events, %v; want %d", len(all), err, len(evs)+1)
	}
	if h, err := l.Head(ctx); err != nil || h != all[len(all)-1].Position {
		t.Fatalf("Head = %d, %v; want %d", h, err, all[len(all)-1].Position)
	}
}

// TestCreatedAsksAgainWhileNoServerAnswers: opening a stream or bucket on a
// cluster that does not answer in time (electing a leader, or too loaded:
// TestClusterRaces's Open once timed out at a load of 5) asks again, each
// attempt with a deadline of its own; an answer that refuses is returned
// at once.
func TestCreatedAsksAgainWhileNoServerAnswers(t *testing.T) {
	ctx := context.Background()
	calls := 0
	err := created(ctx, func(cctx context.Context) error {
		calls++
		if _, ok := cctx.Deadline(); !ok {
			t.Error("an attempt without a deadline")
		}
		switch calls {
		case 1:
			return fmt.Errorf("create or update stream: %w", context.DeadlineExceeded)
		case 2:
			return fmt.Errorf("create or update stream: %w", nats.ErrNoResponders)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("created = %v after %d attempts, want success at the third", err, calls)
	}
	refused := errors.New("the bucket denies deletes")
	calls = 0
	if err := created(ctx, func(context.Context) error { calls++; return refused }); !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("created = %v after %d attempts, want the refusal after one", err, calls)
	}
}
