package natsjs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	jsapi "github.com/nats-io/nats.go/jetstream"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/keystore"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// bucketN numbers the buckets of a test binary, so that each store gets
// its own.
var bucketN atomic.Int64

func uniqueBucket(what string) string { return fmt.Sprintf("TEST_%s_%d", what, bucketN.Add(1)) }

// MustConnect connects to the server at url and closes the connection when
// the test ends.
func MustConnect(tb testing.TB, url string) *Conn {
	tb.Helper()
	// The tests that stop the server would log the disconnection.
	c, err := Connect(tb.Context(), url, ConnOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatalf("Connect(%s): %v", url, err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// MustOpenKeyStore opens a key store in a bucket of its own on c.
func MustOpenKeyStore(tb testing.TB, c *Conn) *KeyStore {
	tb.Helper()
	s, err := OpenKeyStore(tb.Context(), c, KeyStoreOptions{Bucket: uniqueBucket("KEYS")})
	if err != nil {
		tb.Fatalf("OpenKeyStore: %v", err)
	}
	return s
}

// TestKeyStoreConformance runs the suite with two nodes: two connections
// to one server, each with a KeyStore on the same bucket.
func TestKeyStoreConformance(t *testing.T) {
	url, _ := natsserver.Start(t)
	c1, c2 := MustConnect(t, url), MustConnect(t, url)
	keystore.Run(t, func(t *testing.T) (commands.KeyStore, commands.KeyStore) {
		opts := KeyStoreOptions{Bucket: uniqueBucket("KEYS")}
		var stores [2]commands.KeyStore
		for i, c := range []*Conn{c1, c2} {
			s, err := OpenKeyStore(t.Context(), c, opts)
			if err != nil {
				t.Fatalf("OpenKeyStore: %v", err)
			}
			stores[i] = s
		}
		return stores[0], stores[1]
	})
}

// storeFilesContaining lists the files under dir that contain needle.
func storeFilesContaining(tb testing.TB, dir string, needle []byte) []string {
	tb.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, path)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("scan %s: %v", dir, err)
	}
	return hits
}

// TestDeleteWrappedErases: after DeleteWrapped the key has no history at
// all (no revision, no purge marker), and neither the current record nor a
// replaced one is left in the server's files, while another key's record,
// which the scan must find, is.
func TestDeleteWrappedErases(t *testing.T) {
	srv := natsserver.StartAt(t, t.TempDir(), -1)
	c := MustConnect(t, srv.URL)
	s := MustOpenKeyStore(t, c)
	ref, other := "bkp_01JERASE/1", "bkp_01JERASE/10"
	first := []byte("FIRST-WRAPPED-RECORD-0123456789")
	second := []byte("SECOND-WRAPPED-RECORD-0123456789")
	kept := []byte("KEPT-WRAPPED-RECORD-0123456789")
	for _, p := range []struct {
		ref string
		v   []byte
	}{{ref, first}, {other, kept}, {ref, second}} {
		_, rev, err := s.GetWrapped(context.Background(), p.ref)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutWrapped(context.Background(), p.ref, p.v, rev); err != nil {
			t.Fatalf("PutWrapped(%q): %v", p.ref, err)
		}
	}
	// A replaced record is erased at once: only the current revision is
	// left.
	if h, err := s.kv.History(t.Context(), kvKey(ref)); err != nil || len(h) != 1 || !bytes.Equal(h[0].Value(), second) {
		t.Fatalf("history after a replacement = %d entries, %v; want the current record only", len(h), err)
	}
	if err := s.DeleteWrapped(context.Background(), ref); err != nil {
		t.Fatalf("DeleteWrapped: %v", err)
	}
	if h, err := s.kv.History(t.Context(), kvKey(ref)); !errors.Is(err, jsapi.ErrKeyNotFound) {
		t.Fatalf("history after DeleteWrapped = %d entries, %v; want ErrKeyNotFound", len(h), err)
	}
	si, err := s.stream.Info(t.Context(), jsapi.WithSubjectFilter(s.prefix+kvKey(ref)))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if n := si.State.Subjects[s.prefix+kvKey(ref)]; n != 0 {
		t.Fatalf("%d messages left on the key's subject", n)
	}
	if _, rev, err := s.GetWrapped(context.Background(), ref); rev != 0 || err != nil {
		t.Fatalf("GetWrapped after DeleteWrapped: revision %d, %v", rev, err)
	}

	// On disk: the scan finds the record that was kept, and neither of the
	// deleted ones, before and after the server stops (which flushes).
	for _, when := range []string{"running", "stopped"} {
		if when == "stopped" {
			srv.Stop()
		}
		if hits := storeFilesContaining(t, srv.StoreDir, kept); len(hits) == 0 {
			t.Fatalf("%s: the kept record is in no file under %s: the scan cannot see records", when, srv.StoreDir)
		}
		for _, v := range [][]byte{first, second} {
			if hits := storeFilesContaining(t, srv.StoreDir, v); len(hits) != 0 {
				t.Errorf("%s: deleted record %q still in %v", when, v, hits)
			}
		}
	}
}

// TestKVKey: refs become valid KV keys, readable for the usual ones.
func TestKVKey(t *testing.T) {
	for ref, want := range map[string]string{
		"kms_01JABC":      "kms_01JABC",
		"bkp_01JABC/3":    "bkp_01JABC/3",
		"a.b":             "a=2Eb",
		"a=b":             "a=3Db",
		"*> \x00\xff":     "=2A=3E=20=00=FF",
		"bkp_01JABC%2F3":  "bkp_01JABC=252F3",
		"ü":               "=C3=BC",
		"-_/":             "-_/",
		"trailing.dot.":   "trailing=2Edot=2E",
		".leading/ slash": "=2Eleading/=20slash",
	} {
		if got := kvKey(ref); got != want {
			t.Errorf("kvKey(%q) = %q, want %q", ref, got, want)
		}
		if back, ok := refOfKVKey(want); !ok || back != ref {
			t.Errorf("refOfKVKey(%q) = %q, %v; want %q", want, back, ok, ref)
		}
	}
	// Keys kvKey never makes: the key check's, and malformed escapes.
	for _, key := range []string{keyCheckKey, "a=2e", "a=2", "=", "a.b", ""} {
		if ref, ok := refOfKVKey(key); ok {
			t.Errorf("refOfKVKey(%q) = %q, a ref", key, ref)
		}
	}
}

func TestKeyStoreLimitsAndOptions(t *testing.T) {
	for _, o := range []KeyStoreOptions{{Bucket: "a.b"}, {Bucket: "a b"}, {Bucket: "a*"}, {Replicas: 6}, {Replicas: -1}} {
		if err := o.Validate(); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidArgument", o, err)
		}
	}
	if err := (KeyStoreOptions{}).Validate(); err != nil {
		t.Errorf("Validate of the defaults: %v", err)
	}
	url, _ := natsserver.Start(t)
	c := MustConnect(t, url)
	s := MustOpenKeyStore(t, c)
	long := string(bytes.Repeat([]byte{'.'}, maxKeyRefLen)) // every byte escaped
	rev, err := s.PutWrapped(context.Background(), long, []byte{1}, 0)
	if err != nil {
		t.Fatalf("PutWrapped of a %d-byte ref that escapes to %d: %v", len(long), len(kvKey(long)), err)
	}
	if v, got, err := s.GetWrapped(context.Background(), long); err != nil || got != rev || !bytes.Equal(v, []byte{1}) {
		t.Fatalf("GetWrapped of the long ref = %x, %d, %v", v, got, err)
	}
	if err := s.DeleteWrapped(context.Background(), long); err != nil {
		t.Fatalf("DeleteWrapped of the long ref: %v", err)
	}
	if _, err := s.PutWrapped(context.Background(), long+"x", []byte{1}, 0); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("PutWrapped of a ref over %d bytes = %v, want ErrInvalidArgument", maxKeyRefLen, err)
	}
}

// TestOpenKeyStoreRefusesDenyDelete: a bucket made by other tools denies
// message deletes, which erasure needs; opening it says so.
func TestOpenKeyStoreRefusesDenyDelete(t *testing.T) {
	url, _ := natsserver.Start(t)
	c := MustConnect(t, url)
	bucket := uniqueBucket("KEYS")
	if _, err := c.js.CreateKeyValue(t.Context(), jsapi.KeyValueConfig{Bucket: bucket}); err != nil {
		t.Fatalf("CreateKeyValue: %v", err)
	}
	_, err := OpenKeyStore(t.Context(), c, KeyStoreOptions{Bucket: bucket})
	if !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("OpenKeyStore on a bucket that denies deletes = %v, want ErrFailedPrecondition", err)
	}
	// Opening twice (every node does) is fine.
	MustOpenKeyStore(t, c)
	bucket = uniqueBucket("KEYS")
	for range 2 {
		if _, err := OpenKeyStore(t.Context(), c, KeyStoreOptions{Bucket: bucket}); err != nil {
			t.Fatalf("OpenKeyStore: %v", err)
		}
	}
}

// TestStoresAfterClose: once the connection is closed, every call fails
// with ErrUnavailable.
func TestStoresAfterClose(t *testing.T) {
	url, _ := natsserver.Start(t)
	c := MustConnect(t, url)
	ks := MustOpenKeyStore(t, c)
	bs := MustOpenBlobs(t, c)
	ctx := t.Context()
	if err := ks.Ping(ctx); err != nil {
		t.Fatalf("KeyStore.Ping: %v", err)
	}
	if err := bs.Ping(ctx); err != nil {
		t.Fatalf("Blobs.Ping: %v", err)
	}
	_ = c.Close()
	_ = c.Close()
	_, _, getErr := ks.GetWrapped(context.Background(), "kms_x")
	_, putErr := ks.PutWrapped(context.Background(), "kms_x", []byte{1}, 0)
	for what, err := range map[string]error{
		"KeyStore.Ping":      ks.Ping(ctx),
		"Blobs.Ping":         bs.Ping(ctx),
		"GetWrapped":         getErr,
		"PutWrapped":         putErr,
		"DeleteWrapped":      ks.DeleteWrapped(context.Background(), "kms_x"),
		"PutBlob":            bs.PutBlob(ctx, "bkp_x/1", "a", []byte{1}),
		"DestroyBlobs":       bs.DestroyBlobs(ctx, "bkp_x/1"),
		"OpenKeyStore/Blobs": func() error { _, err := OpenBlobs(ctx, c, BlobsOptions{}); return err }(),
	} {
		if !errors.Is(err, domain.ErrUnavailable) {
			t.Errorf("%s after Close = %v, want ErrUnavailable", what, err)
		}
	}
	if _, err := bs.GetBlob(ctx, "bkp_x/1", "a"); !errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("GetBlob after Close = %v, want ErrUnavailable", err)
	}
}

func TestConnectUnreachable(t *testing.T) {
	if _, err := Connect(t.Context(), "nats://127.0.0.1:1", ConnOptions{}); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("Connect to a closed port = %v, want ErrUnavailable", err)
	}
}

// TestCreateKeyCheckWaitsForItsStream: a bucket's stream that does not
// answer yet (just created, on a cluster whose servers have not all
// learnt of it: a create then finds no responders) is asked again; here
// the stream is removed, and made again once the create has been sent to
// nobody three times (the client library's own publish and its two
// retries, 250 ms apart).
func TestCreateKeyCheckWaitsForItsStream(t *testing.T) {
	url, _ := natsserver.Start(t)
	c := MustConnect(t, url)
	opts := KeyStoreOptions{Bucket: uniqueBucket("KEYS")}
	s, err := OpenKeyStore(t.Context(), c, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.js.DeleteStream(t.Context(), "KV_"+opts.Bucket); err != nil {
		t.Fatal(err)
	}
	sent := c.nc.Stats().OutMsgs
	done := make(chan error, 1)
	go func() {
		_, err := s.CreateKeyCheck(context.Background(), []byte("check"))
		done <- err
	}()
	for c.nc.Stats().OutMsgs < sent+3 {
		select {
		case err := <-done:
			t.Fatalf("CreateKeyCheck returned before the bucket came back: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if _, err := OpenKeyStore(t.Context(), MustConnect(t, url), opts); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("CreateKeyCheck while its bucket's stream did not answer: %v", err)
	}
	if got, ok, err := s.KeyCheck(t.Context()); err != nil || !ok || string(got) != "check" {
		t.Fatalf("the key check stored: %q, %v, %v", got, ok, err)
	}
}
