package natsserver

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestCluster starts a cluster of 3, writes to a stream of 3 replicas
// through a follower, stops the stream's leader, writes again (a quorum of
// 2 remains), restarts the stopped server on its store and waits until it
// is current: the stream holds both messages.
func TestCluster(t *testing.T) {
	c := StartCluster(t, 3)
	ctx := t.Context()
	js := connect(t, c.URL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("create a stream of 3 replicas: %v", err)
	}
	leader := c.StreamLeader(Account, "T")
	follower := (leader + 1) % 3
	jsf := connect(t, c.URLOf(follower))
	publish(t, ctx, jsf, "t.a", 1)

	c.Stop(leader)
	if c.Servers[leader] != nil {
		t.Fatalf("server %d still listed after Stop", leader)
	}
	publish(t, ctx, jsf, "t.b", 2)

	c.Restart(leader)
	// StreamLeader waits until every replica, the restarted one too, is
	// current with the leader.
	c.StreamLeader(Account, "T")
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
}

func connect(tb testing.TB, url string) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatalf("connect to %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

func publish(tb testing.TB, ctx context.Context, js jetstream.JetStream, subject string, wantSeq uint64) {
	tb.Helper()
	ack, err := js.Publish(ctx, subject, []byte("x"))
	if err != nil {
		tb.Fatalf("publish on %s: %v", subject, err)
	}
	if ack.Sequence != wantSeq {
		tb.Fatalf("publish on %s acknowledged at %d, want %d", subject, ack.Sequence, wantSeq)
	}
}
