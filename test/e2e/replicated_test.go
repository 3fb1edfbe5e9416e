package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// TestNodeOnAReplicatedCluster runs a server on a cluster of 3 NATS
// servers, named by the list of their URLs, with --nats-replicas 3: every
// JetStream stream it creates (the log's, the key and blob buckets', the
// bus's) has 3 replicas. With the server that leads the log's stream
// stopped, the node goes on: a key is created and the key made before
// decrypts what it encrypted.
func TestNodeOnAReplicatedCluster(t *testing.T) {
	c := natsserver.StartCluster(t, 3)
	tok := commands.NewToken()
	s := StartServer(t, "", "--event-log", c.URL(), "--bus", c.URL(), "--nats-replicas", "3",
		"--master-key-file", masterKeyFile(t), "--dev-token", tok)

	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	k := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst), "id")
	ct := strings.TrimSpace(s.CLI(tok, "", "kms", "encrypt", "--key", k, "--plaintext", "replicated").Stdout)

	nc, err := nats.Connect(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := map[string]bool{"KMSBACKUP_LOG": true, "KV_KMSBACKUP_KEYS": true, "OBJ_KMSBACKUP_BLOBS": true, "kmsbackup_events": true, "kmsbackup_kms_ingest": true}
	streams := js.ListStreams(ctx)
	for info := range streams.Info() {
		if got := info.Config.Replicas; got != 3 {
			t.Errorf("stream %s has %d replicas, want 3", info.Config.Name, got)
		}
		delete(want, info.Config.Name)
	}
	if err := streams.Err(); err != nil {
		t.Fatal(err)
	}
	if len(want) > 0 {
		t.Errorf("streams missing: %v", want)
	}

	c.Stop(c.StreamLeader(natsserver.Account, "KMSBACKUP_LOG"))
	c.StreamLeader(natsserver.Account, "KMSBACKUP_LOG")
	s.MustJSON(tok, "kms", "key", "create", "--instance", inst)
	if got := strings.TrimSpace(s.CLI(tok, "", "kms", "decrypt", "--ciphertext", ct).Stdout); got != "replicated" {
		t.Fatalf("decrypt with one server of three stopped: %q", got)
	}
}
