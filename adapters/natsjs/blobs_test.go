package natsjs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/blobstore"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// MustOpenBlobs opens a blob store in a bucket of its own on c.
func MustOpenBlobs(tb testing.TB, c *Conn) *Blobs {
	tb.Helper()
	b, err := OpenBlobs(tb.Context(), c, BlobsOptions{Bucket: uniqueBucket("BLOBS")})
	if err != nil {
		tb.Fatalf("OpenBlobs: %v", err)
	}
	return b
}

func TestBlobStoreConformance(t *testing.T) {
	url, _ := natsserver.Start(t)
	c := MustConnect(t, url)
	blobstore.Run(t, func(t *testing.T) commands.BlobStore { return MustOpenBlobs(t, c) })
}

// objectStore binds the library's object store to b's bucket.
func objectStore(tb testing.TB, b *Blobs) jsapi.ObjectStore {
	tb.Helper()
	obs, err := b.c.js.ObjectStore(tb.Context(), b.bucket)
	if err != nil {
		tb.Fatalf("ObjectStore(%s): %v", b.bucket, err)
	}
	return obs
}

// subjects returns the subjects of b's stream that match filter, with
// their message counts.
func subjects(tb testing.TB, b *Blobs, filter string) map[string]uint64 {
	tb.Helper()
	si, err := b.stream.Info(tb.Context(), jsapi.WithSubjectFilter(filter))
	if err != nil {
		tb.Fatalf("stream info: %v", err)
	}
	if si.State.Subjects == nil {
		return map[string]uint64{}
	}
	return si.State.Subjects
}

func mustPutBlob(tb testing.TB, b *Blobs, ref, name string, data []byte) {
	tb.Helper()
	if err := b.PutBlob(tb.Context(), ref, name, data); err != nil {
		tb.Fatalf("PutBlob(%q, %q): %v", ref, name, err)
	}
}

func pattern(n int, seed byte) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = seed + byte(i*7) + byte(i>>11)
	}
	return out
}

// TestDestroyBlobsLeavesNothing: after DestroyBlobs the object store lists
// no object of the ref, no message is left on the subjects of its metas or
// chunks, and the ref whose text extends it keeps everything.
func TestDestroyBlobsLeavesNothing(t *testing.T) {
	url, _ := natsserver.Start(t)
	b := MustOpenBlobs(t, MustConnect(t, url))
	obs := objectStore(t, b)
	ctx := t.Context()
	ref, other := "bkp_1/1", "bkp_1/10"
	names := []string{"slice-1", "slice-2", "empty", "big"}
	data := func(ref, name string) []byte {
		switch name {
		case "empty":
			return nil
		case "big":
			return pattern(3*blobChunkSize+5, ref[len(ref)-1])
		}
		return []byte(ref + "/" + name)
	}
	for _, r := range []string{ref, other} {
		for _, n := range names {
			mustPutBlob(t, b, r, n, data(r, n))
		}
	}
	var nuids []string
	for _, n := range names {
		info, err := obs.GetInfo(ctx, objectName(ref, n))
		if err != nil {
			t.Fatalf("GetInfo(%s): %v", objectName(ref, n), err)
		}
		nuids = append(nuids, info.NUID)
	}

	if err := b.DestroyBlobs(ctx, ref); err != nil {
		t.Fatalf("DestroyBlobs: %v", err)
	}
	list, err := obs.List(ctx, jsapi.ListObjectsShowDeleted())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var listed []string
	for _, info := range list {
		listed = append(listed, info.Name)
	}
	slices.Sort(listed)
	var want []string
	for _, n := range names {
		want = append(want, objectName(other, n))
	}
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Fatalf("objects after DestroyBlobs(%q) = %q, want %q", ref, listed, want)
	}
	for _, n := range names {
		if got := subjects(t, b, b.metaPrefix+metaToken(objectName(ref, n))); len(got) != 0 {
			t.Errorf("meta of %q left: %v", n, got)
		}
	}
	for _, id := range nuids {
		if got := subjects(t, b, b.chunkPfx+id); len(got) != 0 {
			t.Errorf("chunks of NUID %s left: %v", id, got)
		}
	}
	for _, n := range names {
		got, err := b.GetBlob(ctx, other, n)
		if err != nil || !bytes.Equal(got, data(other, n)) {
			t.Fatalf("GetBlob(%q, %q) after destroying %q: %d bytes, %v", other, n, ref, len(got), err)
		}
	}
}

// TestDestroyBlobsFinishesAfterCrash: a destruction that stopped after
// marking a meta deleted (readers already see the blob gone) is finished
// by the next call.
func TestDestroyBlobsFinishesAfterCrash(t *testing.T) {
	url, _ := natsserver.Start(t)
	b := MustOpenBlobs(t, MustConnect(t, url))
	ctx := t.Context()
	ref := "bkp_2/1"
	mustPutBlob(t, b, ref, "a", pattern(2*blobChunkSize, 1))
	subj := b.metaPrefix + metaToken(objectName(ref, "a"))
	cur, _, err := b.readMeta(ctx, "test", subj)
	if err != nil {
		t.Fatal(err)
	}
	marker := cur.info
	marker.Deleted, marker.Size, marker.Chunks, marker.Digest = true, 0, 0, ""
	if _, err := b.publishMeta(ctx, subj, marker, cur.seq); err != nil {
		t.Fatalf("publish marker: %v", err)
	}
	if _, err := b.GetBlob(ctx, ref, "a"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("GetBlob of a blob marked deleted = %v, want ErrNotFound", err)
	}
	if got := subjects(t, b, b.chunkPfx+cur.info.NUID); len(got) != 1 {
		t.Fatalf("chunk subjects before the retry: %v", got)
	}
	if err := b.DestroyBlobs(ctx, ref); err != nil {
		t.Fatalf("DestroyBlobs: %v", err)
	}
	if got := subjects(t, b, b.chunkPfx+">"); len(got) != 0 {
		t.Fatalf("chunks left after the retry: %v", got)
	}
	if got := subjects(t, b, b.metaPrefix+">"); len(got) != 0 {
		t.Fatalf("metas left after the retry: %v", got)
	}
	// A put over a deleted marker (as the library's Delete leaves) works.
	mustPutBlob(t, b, ref, "b", []byte("b"))
	if err := objectStore(t, b).Delete(ctx, objectName(ref, "b")); err != nil {
		t.Fatalf("library Delete: %v", err)
	}
	if _, err := b.GetBlob(ctx, ref, "b"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("GetBlob after the library's Delete = %v, want ErrNotFound", err)
	}
	mustPutBlob(t, b, ref, "b", []byte("other bytes"))
	if got, err := b.GetBlob(ctx, ref, "b"); err != nil || string(got) != "other bytes" {
		t.Fatalf("GetBlob = %q, %v", got, err)
	}
}

// TestBlobsInterop: blobs are ordinary objects: the library reads what
// PutBlob wrote, and GetBlob reads what the library wrote.
func TestBlobsInterop(t *testing.T) {
	url, _ := natsserver.Start(t)
	b := MustOpenBlobs(t, MustConnect(t, url))
	obs := objectStore(t, b)
	ctx := t.Context()
	data := pattern(5*blobChunkSize+17, 3)
	mustPutBlob(t, b, "bkp_3/1", "ours", data)
	got, err := obs.GetBytes(ctx, objectName("bkp_3/1", "ours"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("library GetBytes of our blob: %d bytes, %v", len(got), err)
	}
	theirs := pattern(300<<10, 9)
	if _, err := obs.PutBytes(ctx, objectName("bkp_3/1", "theirs"), theirs); err != nil {
		t.Fatalf("library PutBytes: %v", err)
	}
	got, err = b.GetBlob(ctx, "bkp_3/1", "theirs")
	if err != nil || !bytes.Equal(got, theirs) {
		t.Fatalf("GetBlob of the library's object: %d bytes, %v", len(got), err)
	}
	// The library's object takes part in idempotence and in destruction.
	if err := b.PutBlob(ctx, "bkp_3/1", "theirs", theirs); err != nil {
		t.Fatalf("PutBlob of the same bytes over the library's object: %v", err)
	}
	if err := b.DestroyBlobs(ctx, "bkp_3/1"); err != nil {
		t.Fatalf("DestroyBlobs: %v", err)
	}
	if got := subjects(t, b, "$O."+b.bucket+".>"); len(got) != 0 {
		t.Fatalf("subjects left: %v", got)
	}
}

// TestGetBlobCorrupt: a tampered meta, a missing, extra or altered chunk
// is ErrCorrupt, never bytes.
func TestGetBlobCorrupt(t *testing.T) {
	url, _ := natsserver.Start(t)
	c := MustConnect(t, url)
	ctx := t.Context()
	data := pattern(3*blobChunkSize+100, 5)
	type fixture struct {
		b    *Blobs
		subj string
		cur  meta
	}
	setUp := func(t *testing.T) fixture {
		b := MustOpenBlobs(t, c)
		mustPutBlob(t, b, "bkp_4/1", "a", data)
		subj := b.metaPrefix + metaToken(objectName("bkp_4/1", "a"))
		cur, found, err := b.readMeta(ctx, "test", subj)
		if err != nil || !found {
			t.Fatalf("readMeta: %v, %v", found, err)
		}
		return fixture{b, subj, cur}
	}
	republish := func(t *testing.T, f fixture, edit func(*jsapi.ObjectInfo)) {
		info := f.cur.info
		edit(&info)
		if _, err := f.b.publishMeta(ctx, f.subj, info, f.cur.seq); err != nil {
			t.Fatalf("republish meta: %v", err)
		}
	}
	chunkSeqs := func(t *testing.T, f fixture) []uint64 {
		msgs, _, err := directBatch(ctx, c.nc, f.b.r.direct, directRequest{Seq: 1, NextFor: f.b.chunkPfx + f.cur.info.NUID, Batch: 100})
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, m := range msgs {
			seqs = append(seqs, m.seq)
		}
		return seqs
	}
	cases := map[string]func(t *testing.T, f fixture){
		"digest": func(t *testing.T, f fixture) {
			republish(t, f, func(i *jsapi.ObjectInfo) { i.Digest = objectDigest([32]byte{1}) })
		},
		"unreadable digest": func(t *testing.T, f fixture) {
			republish(t, f, func(i *jsapi.ObjectInfo) { i.Digest = "MD5=abc" })
		},
		"size larger": func(t *testing.T, f fixture) {
			republish(t, f, func(i *jsapi.ObjectInfo) { i.Size++ })
		},
		"size smaller": func(t *testing.T, f fixture) {
			republish(t, f, func(i *jsapi.ObjectInfo) { i.Size-- })
		},
		"chunk count": func(t *testing.T, f fixture) {
			republish(t, f, func(i *jsapi.ObjectInfo) { i.Chunks++ })
		},
		"wildcard NUID": func(t *testing.T, f fixture) {
			republish(t, f, func(i *jsapi.ObjectInfo) { i.NUID = ">" })
		},
		"unreadable meta": func(t *testing.T, f fixture) {
			m := nats.NewMsg(f.subj)
			m.Header.Set(jsapi.MsgRollup, jsapi.MsgRollupSubject)
			m.Data = []byte("{not json")
			if _, err := c.js.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
		},
		"missing chunk": func(t *testing.T, f fixture) {
			if err := f.b.stream.DeleteMsg(ctx, chunkSeqs(t, f)[1]); err != nil {
				t.Fatal(err)
			}
		},
		"missing last chunk": func(t *testing.T, f fixture) {
			seqs := chunkSeqs(t, f)
			if err := f.b.stream.DeleteMsg(ctx, seqs[len(seqs)-1]); err != nil {
				t.Fatal(err)
			}
		},
		"extra chunk": func(t *testing.T, f fixture) {
			if _, err := c.js.Publish(ctx, f.b.chunkPfx+f.cur.info.NUID, []byte("extra")); err != nil {
				t.Fatal(err)
			}
		},
		"altered chunk": func(t *testing.T, f fixture) {
			// Chunk 1 moves to the end, with one bit flipped: same length.
			seq := chunkSeqs(t, f)[1]
			m, err := f.b.stream.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.b.stream.DeleteMsg(ctx, seq); err != nil {
				t.Fatal(err)
			}
			m.Data[0] ^= 1
			if _, err := c.js.Publish(ctx, f.b.chunkPfx+f.cur.info.NUID, m.Data); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, tamper := range cases {
		t.Run(name, func(t *testing.T) {
			f := setUp(t)
			tamper(t, f)
			got, err := f.b.GetBlob(ctx, "bkp_4/1", "a")
			if !domain.IsCorruption(err) {
				t.Fatalf("GetBlob = %d bytes, %v; want ErrCorrupt", len(got), err)
			}
			if got != nil {
				t.Fatalf("GetBlob returned %d bytes with its error", len(got))
			}
		})
	}
	t.Run("put over unreadable meta", func(t *testing.T) {
		f := setUp(t)
		cases["unreadable meta"](t, f)
		if err := f.b.PutBlob(ctx, "bkp_4/1", "a", data); !domain.IsCorruption(err) {
			t.Fatalf("PutBlob = %v, want ErrCorrupt", err)
		}
		// DestroyBlobs still removes it.
		if err := f.b.DestroyBlobs(ctx, "bkp_4/1"); err != nil {
			t.Fatalf("DestroyBlobs: %v", err)
		}
		if _, err := f.b.GetBlob(ctx, "bkp_4/1", "a"); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("GetBlob after DestroyBlobs = %v, want ErrNotFound", err)
		}
	})
}

// TestPutBlobLosersCleanUp: of racing puts of different bytes, the losers
// purge their chunks: only the winner's are left.
func TestPutBlobLosersCleanUp(t *testing.T) {
	url, _ := natsserver.Start(t)
	c := MustConnect(t, url)
	// Two stores on two connections: two nodes.
	b1 := MustOpenBlobs(t, c)
	b2, err := OpenBlobs(t.Context(), MustConnect(t, url), BlobsOptions{Bucket: b1.bucket})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const workers = 6
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		b := b1
		if w%2 == 1 {
			b = b2
		}
		wg.Go(func() { errs[w] = b.PutBlob(ctx, "bkp_5/1", "race", pattern(2*blobChunkSize+w, byte(w))) })
	}
	wg.Wait()
	winner := -1
	for w, err := range errs {
		switch {
		case err == nil && winner < 0:
			winner = w
		case err == nil || !errors.Is(err, domain.ErrAlreadyExists):
			t.Fatalf("put #%d: %v (winner %d)", w, err, winner)
		}
	}
	if winner < 0 {
		t.Fatal("no put won")
	}
	info, err := objectStore(t, b1).GetInfo(ctx, objectName("bkp_5/1", "race"))
	if err != nil {
		t.Fatal(err)
	}
	got := subjects(t, b1, b1.chunkPfx+">")
	chunks := uint64(3) // 2 chunks and w bytes
	if winner == 0 {
		chunks = 2
	}
	if want := map[string]uint64{b1.chunkPfx + info.NUID: chunks}; !mapsEqual(got, want) {
		t.Fatalf("chunk subjects = %v, want only the winner's %v", got, want)
	}
	if data, err := b2.GetBlob(ctx, "bkp_5/1", "race"); err != nil || !bytes.Equal(data, pattern(2*blobChunkSize+winner, byte(winner))) {
		t.Fatalf("GetBlob from the other node: %d bytes, %v", len(data), err)
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestObjectName: names are readable, and escaping keeps refs apart.
func TestObjectName(t *testing.T) {
	for _, c := range []struct{ ref, name, want string }{
		{"bkp_01J/3", "slice-1-01K", "bkp_01J%2F3/slice-1-01K"},
		{"bkp_01J/30", "a/b", "bkp_01J%2F30/a%2Fb"},
		{"r%2F", "日本", "r%252F/日本"},
		{"r", "\xff\x00\x7f\n", "r/%FF%00%7F%0A"},
		{"r.*>", " x ", "r.*>/ x "},
	} {
		if got := objectName(c.ref, c.name); got != c.want {
			t.Errorf("objectName(%q, %q) = %q, want %q", c.ref, c.name, got, c.want)
		}
	}
	if strings.HasPrefix(objectName("bkp_1/10", "x"), refPrefix("bkp_1/1")) {
		t.Error("the objects of bkp_1/10 are under the prefix of bkp_1/1")
	}
}

func TestBlobsLimitsAndOptions(t *testing.T) {
	for _, o := range []BlobsOptions{{Bucket: "a.b"}, {Bucket: strings.Repeat("b", maxBucketLen+1)}, {Replicas: 9}} {
		if err := o.Validate(); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidArgument", o, err)
		}
	}
	url, _ := natsserver.Start(t)
	b := MustOpenBlobs(t, MustConnect(t, url))
	ctx := t.Context()
	// A name of the longest length, all of it escaped, makes too long a
	// subject: refused, not sent.
	long := strings.Repeat("/", maxBlobNameLen)
	if err := b.PutBlob(ctx, strings.Repeat("r", maxBlobRefLen), long, []byte{1}); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("PutBlob with a name that escapes to %d bytes = %v, want ErrInvalidArgument", 3*len(long), err)
	}
	mustPutBlob(t, b, "bkp_6/1", "empty", nil)
	// The meta published is the object store's own, readable as JSON.
	cur, _, err := b.readMeta(ctx, "test", b.metaPrefix+metaToken(objectName("bkp_6/1", "empty")))
	if err != nil || cur.bad != nil {
		t.Fatalf("readMeta: %v, %v", err, cur.bad)
	}
	raw, _ := json.Marshal(cur.info)
	if !strings.Contains(string(raw), `"digest":"SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="`) {
		t.Fatalf("meta of the empty blob = %s", raw)
	}
	if err := b.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
