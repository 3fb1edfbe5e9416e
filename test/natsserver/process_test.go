package natsserver

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestProcessCluster starts a cluster of 3 server processes, writes to a
// stream of 3 replicas, kills the stream's leader with SIGKILL, writes
// again once a new leader answers (a quorum of 2 remains), restarts the
// killed server on its store and ports and waits until it is current: the
// stream holds both messages, also as the restarted server reads it.
func TestProcessCluster(t *testing.T) {
	c := StartProcessCluster(t, BuildServer(t, t.TempDir()), 3)
	ctx := t.Context()
	js := connect(t, c.URL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("create a stream of 3 replicas: %v", err)
	}
	// The stream's replicas elect their leader after CreateStream returns:
	// on a busy machine the first publish can find none yet.
	publishOnceElected(t, ctx, js, "t.a", 1)

	leader := c.StreamLeader("T")
	c.Kill(leader)
	if c.Running(leader) {
		t.Fatalf("server %d still runs after Kill", leader)
	}
	follower := (leader + 1) % 3
	jsf := connect(t, c.URLOf(follower))
	publishOnceElected(t, ctx, jsf, "t.b", 2)
	if l := c.StreamLeader("T"); l == leader {
		t.Fatalf("the killed server %d still leads the stream", leader)
	}

	c.Restart(leader)
	jsr := connect(t, c.URLOf(leader))
	s, err := jsr.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 || info.State.LastSeq != 2 {
		t.Fatalf("after the restart the stream holds %d messages up to %d, want 2 up to 2", info.State.Msgs, info.State.LastSeq)
	}
	m, err := s.GetMsg(ctx, 2)
	if err != nil || m.Subject != "t.b" {
		t.Fatalf("message 2 after the restart: %v, %v", m, err)
	}
}

// publishOnceElected publishes on subject, again while the stream has no
// leader (its first election, or one after a server died) for at most
// clusterReadyTimeout, and checks the sequence acknowledged.
func publishOnceElected(tb testing.TB, ctx context.Context, js jetstream.JetStream, subject string, wantSeq uint64) {
	tb.Helper()
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := js.Publish(pctx, subject, []byte("x"), jetstream.WithExpectLastSequence(wantSeq-1))
		cancel()
		if err == nil {
			if ack.Sequence != wantSeq {
				tb.Fatalf("publish on %s acknowledged at %d, want %d", subject, ack.Sequence, wantSeq)
			}
			return
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			tb.Fatalf("publish on %s: %v (a retry after a write that was acknowledged to no one)", subject, err)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("publish on %s: no leader answered within %s: %v", subject, clusterReadyTimeout, err)
		}
	}
}
