package blobstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Limits every implementation accepts (and pebblestore enforces): refs of
// 1 to MaxRefLen bytes, names of 1 to MaxNameLen bytes, neither with a NUL
// byte.
const (
	MaxRefLen  = 256
	MaxNameLen = 1024
)

// Run runs the suite. newStore must return a working store and release it
// when its test ends (t.Cleanup); it is called once per subtest. The store
// need not be empty: refs are unique to each run, drawn from a seed that is
// logged so that a failing run can be reproduced.
func Run(t *testing.T, newStore func(t *testing.T) commands.BlobStore) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("blobstore conformance: seed %d", seed)
	s := &suite{newStore: newStore, seed: seed, run: fmt.Sprintf("%x", seed&0xffffffff)}
	t.Run("RoundTrip", s.roundTrip)
	t.Run("OwnedSlices", s.ownedSlices)
	t.Run("IdempotentPut", s.idempotentPut)
	t.Run("OtherBytes", s.otherBytes)
	t.Run("NotFound", s.notFound)
	t.Run("DistinctNames", s.distinctNames)
	t.Run("Destroy", s.destroy)
	t.Run("DestroyIdempotent", s.destroyIdempotent)
	t.Run("ConcurrentPuts", s.concurrentPuts)
	t.Run("ConcurrentSameBlob", s.concurrentSameBlob)
	t.Run("InvalidArgument", s.invalidArgument)
	t.Run("CanceledContext", s.canceledContext)
	t.Run("Stream", s.stream)
	t.Run("DeleteBlob", s.deleteBlob)
}

type suite struct {
	newStore func(t *testing.T) commands.BlobStore
	seed     uint64
	run      string

	mu  sync.Mutex
	nth uint64
}

func (s *suite) open(t *testing.T) (commands.BlobStore, context.Context) {
	t.Helper()
	st := s.newStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return st, ctx
}

// ref returns a ref unique to this run, shaped like domain.DataRef.
func (s *suite) ref(what string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nth++
	return fmt.Sprintf("bkp_conf%s%s%d/1", s.run, what, s.nth)
}

// data returns n reproducible bytes, different for each (seed, tag).
func (s *suite) data(tag string, n int) []byte {
	key := sha256.Sum256(fmt.Appendf(nil, "%d\x00%s", s.seed, tag))
	b := make([]byte, n)
	r := rand.NewChaCha8(key)
	_, _ = r.Read(b)
	return b
}

// describe names data in failures without printing it.
func describe(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d bytes, sha256 %x", len(b), sum[:6])
}

func mustPut(t *testing.T, ctx context.Context, st commands.BlobStore, ref, name string, data []byte) {
	t.Helper()
	if err := st.PutBlob(ctx, ref, name, data); err != nil {
		t.Fatalf("PutBlob(%q, %q, %s): %v", ref, name, describe(data), err)
	}
}

// mustGet checks that GetBlob, and a streaming read through OpenBlob,
// both give want.
func mustGet(t *testing.T, ctx context.Context, st commands.BlobStore, ref, name string, want []byte) {
	t.Helper()
	got, err := st.GetBlob(ctx, ref, name)
	if err != nil {
		t.Fatalf("GetBlob(%q, %q): %v", ref, name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("GetBlob(%q, %q) = %s, want %s", ref, name, describe(got), describe(want))
	}
	streamed, err := readStream(ctx, st, ref, name, 64<<10+3)
	if err != nil {
		t.Fatalf("OpenBlob(%q, %q), read: %v", ref, name, err)
	}
	if !bytes.Equal(streamed, want) {
		t.Fatalf("OpenBlob(%q, %q) reads %s, want %s", ref, name, describe(streamed), describe(want))
	}
}

// readStream reads a blob through OpenBlob, bufSize bytes a Read, until
// io.EOF, and closes the reader. A reader that is a commands.BlobDigester
// must tell no digest before io.EOF and the SHA-256 of what it read at it.
func readStream(ctx context.Context, st commands.BlobStore, ref, name string, bufSize int) ([]byte, error) {
	r, err := st.OpenBlob(ctx, ref, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	d, digests := r.(commands.BlobDigester)
	var out []byte
	buf := make([]byte, bufSize)
	for {
		if digests {
			if _, ok := d.Digest(); ok {
				return out, fmt.Errorf("a digest before the end of the blob (%d bytes read)", len(out))
			}
		}
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) {
			if digests {
				if sum, ok := d.Digest(); !ok || sum != sha256.Sum256(out) {
					return out, fmt.Errorf("at the end, Digest = %x, %v; want the SHA-256 of the blob", sum, ok)
				}
			}
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func mustNotFound(t *testing.T, ctx context.Context, st commands.BlobStore, ref, name string) {
	t.Helper()
	got, err := st.GetBlob(ctx, ref, name)
	if !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("GetBlob(%q, %q) = %s, %v; want ErrNotFound", ref, name, describe(got), err)
	}
	if got, err := readStream(ctx, st, ref, name, 4096); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("OpenBlob(%q, %q) reads %s, %v; want ErrNotFound", ref, name, describe(got), err)
	}
}

// roundTrip: blobs of many sizes (around the chunk sizes implementations
// use) and names with any byte but NUL come back as they went in.
func (s *suite) roundTrip(t *testing.T) {
	st, ctx := s.open(t)
	ref := s.ref("rt")
	sizes := []int{0, 1, 1000, 128<<10 - 1, 128 << 10, 128<<10 + 1, 1<<20 - 1, 1 << 20, 1<<20 + 1, 3<<20 + 7}
	for _, n := range sizes {
		name := fmt.Sprintf("slice-%d", n)
		data := s.data(name, n)
		mustPut(t, ctx, st, ref, name, data)
		mustGet(t, ctx, st, ref, name, data)
	}
	names := []string{
		"a/b", "a%2Fb", "%", "%%", "a.b", "a..b", ".", "*", ">", "a.*.>", " spaced name ",
		"tab\there", "new\nline", "=3D", "~7E", "日本語", "\xff\xfe invalid UTF-8", "\x01\x7f",
		strings.Repeat("n", MaxNameLen),
	}
	for i, name := range names {
		data := s.data(fmt.Sprintf("name-%d", i), 10+i)
		mustPut(t, ctx, st, ref, name, data)
		mustGet(t, ctx, st, ref, name, data)
	}
	refs := []string{
		"r.with.dots/1", "r*/1", "r>/1", "r with spaces", "ü/1", "\x01/1", "r%2F1", "r=2F1",
		strings.Repeat("r", MaxRefLen),
	}
	for i, r := range refs {
		r = s.run + r // unique to the run, and still at most MaxRefLen for the long one below
		if len(r) > MaxRefLen {
			r = r[:MaxRefLen]
		}
		data := s.data(fmt.Sprintf("ref-%d", i), 100+i)
		mustPut(t, ctx, st, r, "x", data)
		mustGet(t, ctx, st, r, "x", data)
	}
}

// ownedSlices: the store keeps no reference to the slice it was given, and
// the slice it returns is the caller's.
func (s *suite) ownedSlices(t *testing.T) {
	st, ctx := s.open(t)
	ref := s.ref("own")
	data := s.data("own", 300<<10)
	in := bytes.Clone(data)
	mustPut(t, ctx, st, ref, "b", in)
	for i := range in {
		in[i] ^= 0xff
	}
	got, err := st.GetBlob(ctx, ref, "b")
	if err != nil {
		t.Fatalf("GetBlob: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("GetBlob after the caller changed its slice = %s, want %s", describe(got), describe(data))
	}
	for i := range got {
		got[i] = 0
	}
	mustGet(t, ctx, st, ref, "b", data)
}

// idempotentPut: putting the same bytes again succeeds and changes nothing,
// whatever slice holds them.
func (s *suite) idempotentPut(t *testing.T) {
	st, ctx := s.open(t)
	ref := s.ref("idem")
	for _, n := range []int{0, 5, 1<<20 + 3} {
		name := fmt.Sprintf("b%d", n)
		data := s.data(name, n)
		mustPut(t, ctx, st, ref, name, data)
		mustPut(t, ctx, st, ref, name, data)
		mustPut(t, ctx, st, ref, name, bytes.Clone(data))
		mustGet(t, ctx, st, ref, name, data)
	}
}

// otherBytes: a name holds one content for good; other bytes, of the same
// length or not, are refused with ErrAlreadyExists and change nothing.
func (s *suite) otherBytes(t *testing.T) {
	st, ctx := s.open(t)
	ref := s.ref("other")
	data := s.data("first", 4096)
	mustPut(t, ctx, st, ref, "b", data)
	same := bytes.Clone(data)
	same[4095] ^= 1
	for _, other := range [][]byte{same, data[:4095], append(bytes.Clone(data), 0), nil, s.data("second", 1<<20)} {
		if err := st.PutBlob(ctx, ref, "b", other); !errors.Is(err, domain.ErrAlreadyExists) {
			t.Errorf("PutBlob of other bytes (%s) = %v, want ErrAlreadyExists", describe(other), err)
		}
	}
	mustGet(t, ctx, st, ref, "b", data)

	// An empty blob is a content like any other.
	mustPut(t, ctx, st, ref, "empty", nil)
	if err := st.PutBlob(ctx, ref, "empty", []byte{0}); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Errorf("PutBlob of one byte over an empty blob = %v, want ErrAlreadyExists", err)
	}
	mustPut(t, ctx, st, ref, "empty", []byte{})
	mustGet(t, ctx, st, ref, "empty", nil)
}

// notFound: a missing name in a ref that has blobs, and any name of a ref
// that has none.
func (s *suite) notFound(t *testing.T) {
	st, ctx := s.open(t)
	ref := s.ref("nf")
	mustPut(t, ctx, st, ref, "present", []byte("x"))
	mustNotFound(t, ctx, st, ref, "absent")
	mustNotFound(t, ctx, st, ref, "presen")
	mustNotFound(t, ctx, st, ref, "present2")
	mustNotFound(t, ctx, st, s.ref("nf-missing"), "present")
	mustNotFound(t, ctx, st, ref+"0", "present")
	mustNotFound(t, ctx, st, ref[:len(ref)-1], "present")
}

// distinctNames: (ref, name) pairs that a naive "ref/name" or escaping
// scheme would merge are distinct blobs.
func (s *suite) distinctNames(t *testing.T) {
	st, ctx := s.open(t)
	base := s.ref("dn")
	pairs := [][2]string{
		{base + "/a/b", "c"},
		{base + "/a", "b/c"},
		{base + "/a%2Fb", "c"},
		{base + "/a", "b%2Fc"},
		{base + "/a=2Fb", "c"},
		{base + "/a~2Fb", "c"},
		{base + "/a", "b"},
		{base + "/a/", "b"},
		{base + "/a", "/b"},
		{base + "/a.b", "c"},
		{base + "/a", "b.c"},
		{base + "/a", "bc"},
		{base + "/ab", "c"},
	}
	for i, p := range pairs {
		mustPut(t, ctx, st, p[0], p[1], s.data(fmt.Sprintf("dn-%d", i), 64+i))
	}
	for i, p := range pairs {
		mustGet(t, ctx, st, p[0], p[1], s.data(fmt.Sprintf("dn-%d", i), 64+i))
	}
}

// destroy removes every blob of one ref and nothing else, even in refs
// whose text extends it or that it extends; the ref can be used again.
func (s *suite) destroy(t *testing.T) {
	st, ctx := s.open(t)
	base := strings.TrimSuffix(s.ref("destroy"), "/1")
	target := base + "/1"
	others := []string{base + "/10", base + "/1/x", base + "/1%2Fx", base + "/2", base, base + "/", base + "/1 "}
	names := map[string]int{"a": 10, "b": 1<<20 + 1, "empty": 0, "x": 5, "slice-1-01JABCDEFGHJKMNPQRSTVWXYZ0": 4000}
	for _, ref := range append([]string{target}, others...) {
		for name, n := range names {
			mustPut(t, ctx, st, ref, name, s.data(ref+"\x00"+name, n))
		}
	}
	if err := st.DestroyBlobs(ctx, target); err != nil {
		t.Fatalf("DestroyBlobs(%q): %v", target, err)
	}
	for name := range names {
		mustNotFound(t, ctx, st, target, name)
	}
	for _, ref := range others {
		for name, n := range names {
			mustGet(t, ctx, st, ref, name, s.data(ref+"\x00"+name, n))
		}
	}
	// The ref can be used again, with other bytes under the same names.
	for name, n := range names {
		data := s.data("again"+name, n+1)
		mustPut(t, ctx, st, target, name, data)
		mustGet(t, ctx, st, target, name, data)
	}
}

// destroyIdempotent: destroying twice, or a ref that never had a blob,
// succeeds.
func (s *suite) destroyIdempotent(t *testing.T) {
	st, ctx := s.open(t)
	ref := s.ref("di")
	mustPut(t, ctx, st, ref, "a", []byte("a"))
	for i := range 2 {
		if err := st.DestroyBlobs(ctx, ref); err != nil {
			t.Fatalf("DestroyBlobs #%d: %v", i+1, err)
		}
		mustNotFound(t, ctx, st, ref, "a")
	}
	if err := st.DestroyBlobs(ctx, s.ref("di-never")); err != nil {
		t.Fatalf("DestroyBlobs of a ref without blobs: %v", err)
	}
}

// concurrentPuts: puts of different blobs, in two refs, from many
// goroutines, all land.
func (s *suite) concurrentPuts(t *testing.T) {
	st, ctx := s.open(t)
	refs := []string{s.ref("cp"), s.ref("cp")}
	const workers, each = 8, 4
	size := func(w, i int) int { return (w*each + i) * 37 << 10 } // 0 to ~1.1 MiB
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				name := fmt.Sprintf("w%d-%d", w, i)
				if err := st.PutBlob(ctx, refs[(w+i)%2], name, s.data(name, size(w, i))); err != nil {
					errs <- fmt.Errorf("PutBlob(%s): %w", name, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for w := range workers {
		for i := range each {
			name := fmt.Sprintf("w%d-%d", w, i)
			mustGet(t, ctx, st, refs[(w+i)%2], name, s.data(name, size(w, i)))
		}
	}
}

// concurrentSameBlob: concurrent puts of the same bytes all succeed; of
// concurrent puts of different bytes under one name exactly one succeeds,
// the others get ErrAlreadyExists, and the blob holds the winner's bytes.
func (s *suite) concurrentSameBlob(t *testing.T) {
	st, ctx := s.open(t)
	ref := s.ref("cs")
	const workers = 8
	same := s.data("same", 200<<10)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() { errs[w] = st.PutBlob(ctx, ref, "same", same) })
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Errorf("put #%d of the same bytes: %v", w, err)
		}
	}
	mustGet(t, ctx, st, ref, "same", same)

	for w := range workers {
		wg.Go(func() { errs[w] = st.PutBlob(ctx, ref, "race", s.data(fmt.Sprintf("race-%d", w), 150<<10+w)) })
	}
	wg.Wait()
	winner := -1
	for w, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("puts #%d and #%d of different bytes both succeeded", winner, w)
		case err == nil:
			winner = w
		case !errors.Is(err, domain.ErrAlreadyExists):
			t.Errorf("put #%d of different bytes: %v, want nil or ErrAlreadyExists", w, err)
		}
	}
	if winner < 0 {
		t.Fatal("no put of different bytes succeeded")
	}
	mustGet(t, ctx, st, ref, "race", s.data(fmt.Sprintf("race-%d", winner), 150<<10+winner))
}

// invalidArgument: empty, over-long and NUL-bearing refs and names are
// refused with ErrInvalidArgument by every method, and write nothing.
func (s *suite) invalidArgument(t *testing.T) {
	st, ctx := s.open(t)
	ref := s.ref("inv")
	badRefs := map[string]string{
		"empty ref":     "",
		"NUL in ref":    ref + "\x00x",
		"ref too long":  strings.Repeat("r", MaxRefLen+1),
		"only NUL ref":  "\x00",
		"NUL first ref": "\x00" + ref,
	}
	badNames := map[string]string{
		"empty name":    "",
		"NUL in name":   "a\x00b",
		"name too long": strings.Repeat("n", MaxNameLen+1),
	}
	for what, r := range badRefs {
		if err := st.PutBlob(ctx, r, "x", []byte("x")); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("PutBlob with %s = %v, want ErrInvalidArgument", what, err)
		}
		if _, err := st.GetBlob(ctx, r, "x"); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("GetBlob with %s = %v, want ErrInvalidArgument", what, err)
		}
		if err := st.DestroyBlobs(ctx, r); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("DestroyBlobs with %s = %v, want ErrInvalidArgument", what, err)
		}
		if _, err := st.OpenBlob(ctx, r, "x"); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("OpenBlob with %s = %v, want ErrInvalidArgument", what, err)
		}
		if err := st.DeleteBlob(ctx, r, "x"); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("DeleteBlob with %s = %v, want ErrInvalidArgument", what, err)
		}
	}
	for what, n := range badNames {
		if err := st.PutBlob(ctx, ref, n, []byte("x")); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("PutBlob with %s = %v, want ErrInvalidArgument", what, err)
		}
		if _, err := st.GetBlob(ctx, ref, n); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("GetBlob with %s = %v, want ErrInvalidArgument", what, err)
		}
		if _, err := st.OpenBlob(ctx, ref, n); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("OpenBlob with %s = %v, want ErrInvalidArgument", what, err)
		}
		if err := st.DeleteBlob(ctx, ref, n); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("DeleteBlob with %s = %v, want ErrInvalidArgument", what, err)
		}
	}
	// The names on either side of a NUL were not written either.
	mustNotFound(t, ctx, st, ref, "a")
	mustNotFound(t, ctx, st, ref, "x")
}

// canceledContext: a call whose context has ended fails with the context's
// error and writes nothing.
func (s *suite) canceledContext(t *testing.T) {
	st, ctx := s.open(t)
	ref := s.ref("ctx")
	mustPut(t, ctx, st, ref, "kept", []byte("kept"))
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if err := st.PutBlob(dead, ref, "new", []byte("new")); !errors.Is(err, context.Canceled) {
		t.Errorf("PutBlob with a canceled context = %v, want context.Canceled", err)
	}
	if _, err := st.GetBlob(dead, ref, "kept"); !errors.Is(err, context.Canceled) {
		t.Errorf("GetBlob with a canceled context = %v, want context.Canceled", err)
	}
	if err := st.DestroyBlobs(dead, ref); !errors.Is(err, context.Canceled) {
		t.Errorf("DestroyBlobs with a canceled context = %v, want context.Canceled", err)
	}
	if _, err := st.OpenBlob(dead, ref, "kept"); !errors.Is(err, context.Canceled) {
		t.Errorf("OpenBlob with a canceled context = %v, want context.Canceled", err)
	}
	if err := st.DeleteBlob(dead, ref, "kept"); !errors.Is(err, context.Canceled) {
		t.Errorf("DeleteBlob with a canceled context = %v, want context.Canceled", err)
	}
	mustNotFound(t, ctx, st, ref, "new")
	mustGet(t, ctx, st, ref, "kept", []byte("kept"))
}

// stream: a streaming read gives the blob whatever the size of the reads,
// keeps the context it was opened with, and Close is idempotent; a read
// after Close fails.
func (s *suite) stream(t *testing.T) {
	st, ctx := s.open(t)
	ref := s.ref("stream")
	data := s.data("stream", 5<<20+11)
	mustPut(t, ctx, st, ref, "b", data)
	for _, size := range []int{1 << 20, 3<<20 + 1, 8 << 20} {
		got, err := readStream(ctx, st, ref, "b", size)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("reads of %d bytes: %s, %v; want %s", size, describe(got), err, describe(data))
		}
	}
	small := s.data("small", 1<<20+9)
	mustPut(t, ctx, st, ref, "small", small)
	if got, err := readStream(ctx, st, ref, "small", 7); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("reads of 7 bytes: %s, %v; want %s", describe(got), err, describe(small))
	}
	r, err := st.OpenBlob(ctx, ref, "b")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if n, err := io.ReadFull(r, buf); err != nil || !bytes.Equal(buf[:n], data[:100]) {
		t.Fatalf("first 100 bytes: %d, %v", n, err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.Read(buf); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Read after Close = %v, want an error", err)
	}
	// The reader keeps its context: once it ends, reads fail with it.
	rctx, cancel := context.WithCancel(ctx)
	r, err = st.OpenBlob(rctx, ref, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cancel()
	if _, err := io.Copy(io.Discard, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("a read after its context ended = %v, want context.Canceled", err)
	}
}

// deleteBlob: DeleteBlob removes one blob and no other (of the ref, or of
// a ref or name extending it); it is idempotent; a reader opened before
// gets the whole blob or ErrNotFound.
func (s *suite) deleteBlob(t *testing.T) {
	st, ctx := s.open(t)
	ref := s.ref("del")
	for _, name := range []string{"part-1", "part-10", "part-2"} {
		mustPut(t, ctx, st, ref, name, s.data(name, 2<<20+5))
	}
	mustPut(t, ctx, st, ref+"0", "part-1", []byte("other ref"))
	early, err := st.OpenBlob(ctx, ref, "part-1")
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if err := st.DeleteBlob(ctx, ref, "part-1"); err != nil {
		t.Fatalf("DeleteBlob: %v", err)
	}
	if err := st.DeleteBlob(ctx, ref, "part-1"); err != nil {
		t.Fatalf("DeleteBlob again: %v", err)
	}
	if err := st.DeleteBlob(ctx, ref, "never"); err != nil {
		t.Fatalf("DeleteBlob of a blob never put: %v", err)
	}
	mustNotFound(t, ctx, st, ref, "part-1")
	mustGet(t, ctx, st, ref, "part-10", s.data("part-10", 2<<20+5))
	mustGet(t, ctx, st, ref, "part-2", s.data("part-2", 2<<20+5))
	mustGet(t, ctx, st, ref+"0", "part-1", []byte("other ref"))
	got, err := io.ReadAll(early)
	if err != nil && !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("a reader opened before the deletion: %v, want the whole blob or ErrNotFound", err)
	}
	if err == nil && !bytes.Equal(got, s.data("part-1", 2<<20+5)) {
		t.Fatalf("a reader opened before the deletion read %s", describe(got))
	}
}
