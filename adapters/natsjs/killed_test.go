package natsjs

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// natsServerBin is nats-server built once for the package's tests that
// kill a server process.
var (
	natsServerOnce sync.Once
	natsServerBin  string
)

func natsServerBinary(tb testing.TB) string {
	tb.Helper()
	natsServerOnce.Do(func() { natsServerBin = natsserver.BuildServer(tb, tb.TempDir()) })
	return natsServerBin
}

// TestReadsWhileALeaderIsElected kills (SIGKILL) the server that leads
// the streams of the log, the key store and the blob store of a cluster
// of 3 server processes, and reads through a follower at once: a read that
// only a stream's leader answers, sent before a new leader is elected (an
// election after a kill takes 4 to 9 seconds), is asked again until one
// answers, so that each read returns what was written.
func TestReadsWhileALeaderIsElected(t *testing.T) {
	c := natsserver.StartProcessCluster(t, natsServerBinary(t), 3)
	ctx := t.Context()
	opts := uniqueOptions()
	opts.Replicas, opts.Logger = clusterReplicas, quietLogger
	keyOpts := KeyStoreOptions{Bucket: uniqueBucket("KEYS"), Replicas: clusterReplicas}
	blobOpts := BlobsOptions{Bucket: uniqueBucket("BLOBS"), Replicas: clusterReplicas}
	l := MustOpen(t, c.URL(), opts)
	conn, err := Connect(ctx, c.URL(), ConnOptions{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keys, err := OpenKeyStore(ctx, conn, keyOpts)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := OpenBlobs(ctx, conn, blobOpts)
	if err != nil {
		t.Fatal(err)
	}
	const stream = "kms-elected"
	evs := eventlog.Events(stream, 5, 3)
	mustAppend(t, l, stream, domain.ExpectNoStream, evs)
	if _, err := keys.PutWrapped(ctx, "kms_elected", []byte("wrapped"), 0); err != nil {
		t.Fatal(err)
	}
	blob := bytes.Repeat([]byte("elected"), 10_000)
	if err := blobs.PutBlob(ctx, "bkp_elected", "slice", blob); err != nil {
		t.Fatal(err)
	}

	for _, st := range []string{"KV_" + keyOpts.Bucket, "OBJ_" + blobOpts.Bucket, opts.Stream} {
		t.Run(st, func(t *testing.T) {
			victim := c.StreamLeader(st)
			// The reads go through a server that stays up.
			url := c.URLOf((victim + 1) % 3)
			l := MustOpen(t, url, opts)
			conn, err := Connect(ctx, url, ConnOptions{Logger: quietLogger})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			keys, err := OpenKeyStore(ctx, conn, keyOpts)
			if err != nil {
				t.Fatal(err)
			}
			blobs, err := OpenBlobs(ctx, conn, blobOpts)
			if err != nil {
				t.Fatal(err)
			}
			c.Kill(victim)
			defer c.Restart(victim)
			start := time.Now()
			switch st {
			case "KV_" + keyOpts.Bucket:
				if rec, rev, err := keys.GetWrapped(ctx, "kms_elected"); err != nil || rev == 0 || string(rec) != "wrapped" {
					t.Fatalf("GetWrapped after %s: %q, revision %d, %v", time.Since(start), rec, rev, err)
				}
			case "OBJ_" + blobOpts.Bucket:
				if got, err := blobs.GetBlob(ctx, "bkp_elected", "slice"); err != nil || !bytes.Equal(got, blob) {
					t.Fatalf("GetBlob after %s: %d bytes, %v", time.Since(start), len(got), err)
				}
			default:
				if got, err := l.ReadStream(ctx, stream, 0, false, 10); err != nil || len(got) != len(evs) {
					t.Fatalf("ReadStream after %s: %d events, %v", time.Since(start), len(got), err)
				}
			}
			t.Logf("read after %s", time.Since(start))
		})
	}
}
