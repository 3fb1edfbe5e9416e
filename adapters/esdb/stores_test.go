package esdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/adapters/internal/blobformat"
	"github.com/kmsbackup/kmsbackup/domain"
)

// validStreamPart reports whether s is made only of the characters
// encodeStreamPart emits.
func validStreamPart(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !streamSafe(c) && c != escapeChar && !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func TestEncodeStreamPart(t *testing.T) {
	for in, want := range map[string]string{
		"bkp_01JNAAAA/3":  "bkp_01JNAAAA~2f3",
		"kms_01JN":        "kms_01JN",
		"slice-1-01JNXYZ": "slice~2d1~2d01JNXYZ",
		"a~2db":           "a~7e2db",
		"$all":            "~24all",
		"é":               "~c3~a9",
		"a b\x00c":        "a~20b~00c",
		"file.v1":         "file.v1",
	} {
		if got := encodeStreamPart(in); got != want {
			t.Errorf("encodeStreamPart(%q) = %q, want %q", in, got, want)
		}
	}

	// Injective and valid: every encoding decodes back, has no '-', and no
	// two inputs share one.
	rng := rand.New(rand.NewPCG(7, 11))
	inputs := []string{"", "-", "~", "~2d", "a-b", "a", "b-c", "a-b-c", "a/b", "a~2fb", "A", "a", "..", "_", "$", "\xff", "é"}
	alphabet := []byte("ab-~/_.$2dfé\x00")
	for range 5000 {
		b := make([]byte, rng.IntN(8))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		inputs = append(inputs, string(b))
	}
	seen := map[string]string{}
	for _, in := range inputs {
		enc := encodeStreamPart(in)
		if strings.Contains(enc, "-") || !validStreamPart(enc) || strings.HasPrefix(enc, "$") || len(enc) > 3*len(in) {
			t.Fatalf("encodeStreamPart(%q) = %q: not a valid stream part", in, enc)
		}
		if dec, ok := decodeStreamPart(enc); !ok || dec != in {
			t.Fatalf("encodeStreamPart(%q) = %q decodes to %q, %v", in, enc, dec, ok)
		}
		if other, dup := seen[enc]; dup && other != in {
			t.Fatalf("%q and %q both encode to %q", in, other, enc)
		}
		seen[enc] = in
	}
}

func TestStoreStreamNames(t *testing.T) {
	pairs := [][2]string{
		{"a-b", "c"}, {"a", "b-c"}, {"a", "b"}, {"a~2db", "c"}, {"a/b", "c"}, {"a", "b/c"}, {"a", "b-1"}, {"a-1", "b"},
		{"bkp_01J/1", "slice-1-01JX"}, {"bkp_01J/10", "slice-1-01JX"}, {"bkp_01J", "1/slice"},
	}
	seen := map[string]string{}
	add := func(stream, what string) {
		t.Helper()
		if other, dup := seen[stream]; dup {
			t.Errorf("%s and %s share stream %q", what, other, stream)
		}
		seen[stream] = what
		if !isStoreStream(stream) || strings.HasPrefix(stream, "$") || !validStreamPart(strings.ReplaceAll(strings.TrimPrefix(stream, "blob"), "-", "")) {
			t.Errorf("%s: stream %q", what, stream)
		}
	}
	for _, gen := range []uint64{0, 1, 2, 10} {
		for _, p := range pairs {
			s := blobStream(p[0], p[1], gen)
			add(s, fmt.Sprintf("blob %q generation %d", p, gen))
			if want := 2 + min(gen, 1); uint64(strings.Count(s, "-")) != want {
				t.Errorf("blobStream(%q, %q, %d) = %q: %d dashes, want %d", p[0], p[1], gen, s, strings.Count(s, "-"), want)
			}
		}
		for _, ref := range []string{"kms_01J", "bkp_01J/1", "bkp_01J/10", "x", "s-1", "s"} {
			add(dataKeyStream(ref, gen), fmt.Sprintf("data key %q generation %d", ref, gen))
			add(blobIndexStream(ref, gen), fmt.Sprintf("index %q generation %d", ref, gen))
			if !strings.HasPrefix(dataKeyStream(ref, gen), "datakey-") || !strings.HasPrefix(blobIndexStream(ref, gen), "blobs-") {
				t.Errorf("ref %q: streams %q, %q", ref, dataKeyStream(ref, gen), blobIndexStream(ref, gen))
			}
		}
	}
	if got := blobStream("bkp_1/0", "slice-1", 0); got != "blob-bkp_1~2f0-slice~2d1" {
		t.Errorf("blob stream %q", got)
	}
	if got := dataKeyStream("kms_1", 3); got != "datakey-kms_1-3" {
		t.Errorf("data key stream of generation 3: %q", got)
	}
	// The three kinds never meet: an index stream is no blob stream.
	if strings.HasPrefix(blobIndexStream("a", 0), blobStreamPrefix) || strings.HasPrefix(blobStream("s", "x", 0), blobIndexStreamPrefix) {
		t.Error("blob and index streams overlap")
	}
}

// TestStoreStreamsStayOutOfTheLog: whatever the prefixes, the stores'
// streams are not the log's.
func TestStoreStreamsStayOutOfTheLog(t *testing.T) {
	if !slices.Contains(DefaultStreamPrefixes(), domain.DevClockStream) {
		t.Errorf("default prefixes %q lack %q", DefaultStreamPrefixes(), domain.DevClockStream)
	}
	stores := []string{dataKeyStream("kms_1", 0), blobStream("bkp_1/0", "slice-1", 0), blobIndexStream("bkp_1/0", 0), dataKeyStream("kms_1", 1)}
	for _, prefixes := range [][]string{nil, {""}, {"b", "d"}, {"blob", "data"}} {
		l := &Log{opts: Options{StreamPrefixes: prefixes}.withDefaults()}
		for _, s := range stores {
			if l.wanted(s, typeBlobChunk) {
				t.Errorf("prefixes %q: wanted(%q)", prefixes, s)
			}
			e := testEvent(s, 0)
			if _, err := l.prepareAppend(s, []domain.Event{e}); !errors.Is(err, domain.ErrInvalidArgument) {
				t.Errorf("prefixes %q: Append to %q: %v, want ErrInvalidArgument", prefixes, s, err)
			}
		}
	}
	l := &Log{opts: Options{}.withDefaults()}
	if !l.wanted(domain.DevClockStream, domain.TypeDevClockSet) {
		t.Error("the shared development clock is not in the default log")
	}
	if _, err := l.prepareAppend(domain.DevClockStream, []domain.Event{testEvent(domain.DevClockStream, 0)}); err != nil {
		t.Errorf("Append to %s: %v", domain.DevClockStream, err)
	}
	idle := idleLog(t, Options{})
	for _, s := range stores {
		if _, err := idle.ReadStream(context.Background(), s, 0, false, 1); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("ReadStream(%q): %v, want ErrInvalidArgument", s, err)
		}
	}
	for _, p := range []string{"blob-", "blobs-x", "datakey-"} {
		if err := (Options{StreamPrefixes: []string{"kms-", p}}).Validate(); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("prefix %q accepted: %v", p, err)
		}
	}
	for _, p := range []string{"", "b", "blob", "data", "devclock"} {
		if err := (Options{StreamPrefixes: []string{p}}).Validate(); err != nil {
			t.Errorf("prefix %q refused: %v", p, err)
		}
	}
}

func TestBlobHeader(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100)
	for _, maxAppend := range []int{1 << 20, 512} {
		h := newBlobHeader(data, 300, maxAppend)
		if h.Size != 1000 || h.ChunkSize != 300 || h.Chunks != 4 || h.Atomic() != (maxAppend == 1<<20) {
			t.Fatalf("header of 1000 bytes in chunks of 300, max append %d: %+v", maxAppend, h)
		}
		got, err := decodeBlobHeader(h.Encode())
		if err != nil || got != h {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, h)
		}
		if h.ChunkLen(0) != 300 || h.ChunkLen(3) != 100 {
			t.Errorf("chunk lengths %d, %d", h.ChunkLen(0), h.ChunkLen(3))
		}
	}
	empty := newBlobHeader(nil, 300, 1<<20)
	if empty.Chunks != 0 || !empty.Atomic() {
		t.Errorf("empty blob header: %+v", empty)
	}
	good := newBlobHeader(data, 300, 1<<20).Encode()
	bad := map[string][]byte{
		"short":           good[:len(good)-1],
		"long":            append(slices.Clone(good), 0),
		"version":         func() []byte { b := slices.Clone(good); b[0] = 3; return b }(),
		"unknown flag":    func() []byte { b := slices.Clone(good); b[1] |= 2; return b }(),
		"zero chunk size": func() []byte { b := slices.Clone(good); copy(b[10:14], []byte{0, 0, 0, 0}); return b }(),
		"chunk count":     func() []byte { b := slices.Clone(good); b[17]++; return b }(),
		"too long":        func() []byte { b := slices.Clone(good); b[2] = 1; return b }(),
	}
	for name, b := range bad {
		if _, err := decodeBlobHeader(b); err == nil {
			t.Errorf("%s header accepted", name)
		}
	}
}

func TestBlobChunkSize(t *testing.T) {
	for _, c := range []struct{ maxAppend, want int }{
		{DefaultMaxAppendSize, 512 << 10},
		{16 << 20, 512 << 10},
		{64 << 10, 63 << 10},
		{5 << 10, 4 << 10},
	} {
		if got, err := blobChunkSize(c.maxAppend); err != nil || got != c.want {
			t.Errorf("blobChunkSize(%d) = %d, %v; want %d", c.maxAppend, got, err, c.want)
		}
	}
	if _, err := blobChunkSize(4 << 10); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("blobChunkSize(4 KiB): %v", err)
	}
	if _, err := NewBlobs(idleLog(t, Options{MaxAppendSize: 2048})); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("NewBlobs with a 2 KiB append size: %v", err)
	}
}

// blobStreamOf is the header and the events PutBlob writes for data, from
// revision 0 on, and how it groups them into appends.
func blobStreamOf(data []byte, maxAppend int) (h blobformat.Header, events []esdbclient.EventData, appends [][]esdbclient.EventData) {
	cs, err := blobChunkSize(maxAppend)
	if err != nil {
		panic(err)
	}
	h = newBlobHeader(data, cs, appendBudget(maxAppend))
	events = blobEvents(h, h.Encode(), data)
	return h, events, groupAppends(events, appendBudget(maxAppend))
}

func testBlob(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestBlobChunkingAndAppends(t *testing.T) {
	const kib = 1 << 10
	for _, maxAppend := range []int{DefaultMaxAppendSize, 64 * kib, 4 << 20} {
		cs, _ := blobChunkSize(maxAppend)
		// fits is the largest blob written in one append.
		budget := appendBudget(maxAppend)
		fits := budget
		for oneAppendSize(fits, (fits+cs-1)/cs) > budget {
			fits--
		}
		for _, n := range []int{0, 1, cs - 1, cs, cs + 1, 2 * cs, fits - 1, fits, fits + 1, 3*cs + 17, 3 << 20} {
			data := testBlob(n, 1)
			h, events, appends := blobStreamOf(data, maxAppend)
			if events[0].EventType != typeBlobHeader || !bytes.Equal(events[0].Data, h.Encode()) {
				t.Fatalf("max %d, %d bytes: the stream does not start with the header", maxAppend, n)
			}
			var joined []byte
			for i, e := range events[1 : 1+h.Chunks] {
				if e.EventType != typeBlobChunk || len(e.Data) != h.ChunkLen(uint32(i)) || len(e.Data) > cs {
					t.Fatalf("max %d, %d bytes: chunk %d is a %q of %d bytes", maxAppend, n, i, e.EventType, len(e.Data))
				}
				joined = append(joined, e.Data...)
			}
			if !bytes.Equal(joined, data) {
				t.Fatalf("max %d, %d bytes: the chunks do not make the blob", maxAppend, n)
			}
			wantEvents := 1 + int(h.Chunks)
			if !h.Atomic() {
				wantEvents++
				if last := events[len(events)-1]; last.EventType != typeBlobCommit || !bytes.Equal(last.Data, events[0].Data) {
					t.Fatalf("max %d, %d bytes: no commit at the end", maxAppend, n)
				}
			}
			if len(events) != wantEvents {
				t.Fatalf("max %d, %d bytes: %d events, want %d", maxAppend, n, len(events), wantEvents)
			}
			size := 0
			for i := range events[:1+h.Chunks] {
				size += appendSize(&events[i])
			}
			if h.Atomic() != (size <= budget) {
				t.Fatalf("max %d, %d bytes: atomic %v for %d bytes of appends", maxAppend, n, h.Atomic(), size)
			}
			if h.Atomic() != (len(appends) == 1) {
				t.Fatalf("max %d, %d bytes: atomic %v in %d appends", maxAppend, n, h.Atomic(), len(appends))
			}
			var flat []esdbclient.EventData
			for _, a := range appends {
				s := 0
				for i := range a {
					s += appendSize(&a[i])
				}
				if len(a) == 0 || s > budget {
					t.Fatalf("max %d, %d bytes: an append of %d events, %d bytes", maxAppend, n, len(a), s)
				}
				flat = append(flat, a...)
			}
			if len(flat) != len(events) {
				t.Fatalf("max %d, %d bytes: appends hold %d events of %d", maxAppend, n, len(flat), len(events))
			}
		}
	}
	// An event larger than the maximum goes alone.
	big := []esdbclient.EventData{{EventType: "x", Data: make([]byte, 10)}, {EventType: "x", Data: make([]byte, 100)}, {EventType: "x", Data: make([]byte, 10)}}
	if g := groupAppends(big, 50); len(g) != 3 {
		t.Errorf("groupAppends with an oversized event: %d groups", len(g))
	}
	if g := groupAppends(nil, 50); len(g) != 0 {
		t.Errorf("groupAppends(nil) = %d groups", len(g))
	}
}

// assemble feeds events, as stored from revision 0, to an assembler.
func assemble(events []esdbclient.EventData) ([]byte, bool, error) {
	if len(events) == 0 {
		return nil, false, errors.New("no event")
	}
	a, err := startBlob(0, events[0].EventType, events[0].Data)
	if err != nil {
		return nil, false, err
	}
	for i, e := range events[1:] {
		if err := a.add(uint64(i+1), e.EventType, e.Data); err != nil {
			return nil, false, err
		}
	}
	return a.finish()
}

func TestBlobAssembly(t *testing.T) {
	const maxAppend = 64 << 10
	small := testBlob(10<<10, 2)  // one append
	large := testBlob(200<<10, 3) // several appends, with a commit
	for name, data := range map[string][]byte{"empty": nil, "small": small, "large": large} {
		h, events, _ := blobStreamOf(data, maxAppend)
		got, complete, err := assemble(events)
		if err != nil || !complete || !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes, complete %v, %v", name, len(got), complete, err)
		}
		if !h.Atomic() {
			// Every prefix of an unfinished put is absent, not corrupt.
			for n := 1; n < len(events); n++ {
				if _, complete, err := assemble(events[:n]); complete || err != nil {
					t.Fatalf("%s: %d of %d events: complete %v, %v; want unfinished", name, n, len(events), complete, err)
				}
			}
		}
	}

	hs, small1, _ := blobStreamOf(small, maxAppend)
	hl, large1, _ := blobStreamOf(large, maxAppend)
	if !hs.Atomic() || hl.Atomic() {
		t.Fatalf("atomic: small %v, large %v", hs.Atomic(), hl.Atomic())
	}
	clone := func(events []esdbclient.EventData) []esdbclient.EventData {
		out := slices.Clone(events)
		for i := range out {
			out[i].Data = bytes.Clone(out[i].Data)
		}
		return out
	}
	corrupt := map[string][]esdbclient.EventData{
		"atomic blob missing its last chunk": small1[:len(small1)-1],
		"flipped byte": func() []esdbclient.EventData {
			e := clone(large1)
			e[2].Data[7] ^= 1
			return e
		}(),
		"short chunk": func() []esdbclient.EventData {
			e := clone(large1)
			e[1].Data = e[1].Data[1:]
			return e
		}(),
		"chunks swapped": func() []esdbclient.EventData {
			e := clone(large1)
			e[1], e[2] = e[2], e[1]
			return e
		}(),
		"commit where a chunk should be": func() []esdbclient.EventData {
			e := clone(large1)
			e[2] = e[len(e)-1]
			return e
		}(),
		"commit disagreeing with the header": func() []esdbclient.EventData {
			e := clone(large1)
			e[len(e)-1].Data[len(e[len(e)-1].Data)-1] ^= 1
			return e
		}(),
		"event after the commit":     append(clone(large1), large1[1]),
		"event after an atomic blob": append(clone(small1), small1[1]),
		"no header":                  clone(large1)[1:],
		"unreadable header": func() []esdbclient.EventData {
			e := clone(small1)
			e[0].Data = e[0].Data[:10]
			return e
		}(),
	}
	for name, events := range corrupt {
		if got, complete, err := assemble(events); err == nil {
			t.Errorf("%s: accepted (%d bytes, complete %v)", name, len(got), complete)
		}
	}
	// Revisions must follow each other from 0.
	if _, err := startBlob(1, typeBlobHeader, small1[0].Data); err == nil {
		t.Error("a stream starting at revision 1 accepted")
	}
	a, _ := startBlob(0, typeBlobHeader, large1[0].Data)
	if err := a.add(2, typeBlobChunk, large1[2].Data); err == nil {
		t.Error("a gap in the revisions accepted")
	}
}

func TestBlobReadPaging(t *testing.T) {
	data := testBlob(3<<20, 4)
	h, events, _ := blobStreamOf(data, DefaultMaxAppendSize)
	a, err := startBlob(0, typeBlobHeader, events[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	// 3 MiB in 6 chunks and a commit: the first read after the header asks
	// for them all and one more.
	if got := a.nextRead(); got != uint64(h.Chunks)+2 {
		t.Errorf("nextRead after the header = %d, want %d", got, h.Chunks+2)
	}
	for i, e := range events[1:] {
		if err := a.add(uint64(i+1), e.EventType, e.Data); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.nextRead(); got != 1 {
		t.Errorf("nextRead once complete = %d, want 1 (to see what follows)", got)
	}
	// A header claiming chunks of 1 KiB pages by blobReadBytes.
	small, err := startBlob(0, typeBlobHeader, blobformat.Header{Size: 100 << 20, ChunkSize: 1 << 10, Chunks: 100 << 10}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got := small.nextRead(); got != blobReadBytes/(1<<10)+1 {
		t.Errorf("nextRead for 1 KiB chunks = %d", got)
	}
}

// TestStoreArguments checks what the stores refuse before asking the
// server.
func TestStoreArguments(t *testing.T) {
	l := idleLog(t, Options{MaxAppendSize: 8 << 10})
	k := NewKeyStore(l)
	b, err := NewBlobs(l)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	long := strings.Repeat("r", 257)
	put := func(ref string, wrapped []byte) error {
		_, err := k.PutWrapped(context.Background(), ref, wrapped, 0)
		return err
	}
	for name, err := range map[string]error{
		"GetWrapped empty ref":      func() error { _, _, err := k.GetWrapped(context.Background(), ""); return err }(),
		"GetWrapped long ref":       func() error { _, _, err := k.GetWrapped(context.Background(), long); return err }(),
		"PutWrapped empty ref":      put("", []byte("w")),
		"PutWrapped empty record":   put("kms_1", nil),
		"PutWrapped large record":   put("kms_1", make([]byte, 8<<10)),
		"DeleteWrapped empty ref":   k.DeleteWrapped(context.Background(), ""),
		"DeleteWrapped long ref":    k.DeleteWrapped(context.Background(), long),
		"PutBlob empty ref":         b.PutBlob(ctx, "", "n", []byte("x")),
		"PutBlob empty name":        b.PutBlob(ctx, "r", "", []byte("x")),
		"PutBlob long ref":          b.PutBlob(ctx, long, "n", []byte("x")),
		"PutBlob long name":         b.PutBlob(ctx, "r", strings.Repeat("n", 1025), []byte("x")),
		"PutBlob NUL in name":       b.PutBlob(ctx, "r", "a\x00b", []byte("x")),
		"GetBlob NUL in ref":        func() error { _, err := b.GetBlob(ctx, "r\x00", "n"); return err }(),
		"GetBlob empty name":        func() error { _, err := b.GetBlob(ctx, "r", ""); return err }(),
		"DestroyBlobs empty ref":    b.DestroyBlobs(ctx, ""),
		"DestroyBlobs NUL in ref":   b.DestroyBlobs(ctx, "\x00"),
		"DestroyBlobs long ref":     b.DestroyBlobs(ctx, long),
		"GetBlob long name":         func() error { _, err := b.GetBlob(ctx, "r", strings.Repeat("n", 1025)); return err }(),
		"PutBlob long ref and name": b.PutBlob(ctx, long, strings.Repeat("n", 1025), nil),
	} {
		if !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.PutBlob(cancelled, "r", "n", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("PutBlob with a cancelled context: %v", err)
	}
	if _, err := b.GetBlob(cancelled, "r", "n"); !errors.Is(err, context.Canceled) {
		t.Errorf("GetBlob with a cancelled context: %v", err)
	}
	if err := b.DestroyBlobs(cancelled, "r"); !errors.Is(err, context.Canceled) {
		t.Errorf("DestroyBlobs with a cancelled context: %v", err)
	}
}

// TestStoresUnreachableServer: the stores go through the log's call
// machinery, so a dead server is ErrUnavailable, never a hang or a panic,
// and a closed log closes them.
func TestStoresUnreachableServer(t *testing.T) {
	conf, err := parseURL(deadURL(t))
	if err != nil {
		t.Fatal(err)
	}
	l, err := newLog(conf, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	k := NewKeyStore(l)
	b, err := NewBlobs(l)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	check := func(when string) {
		t.Helper()
		for name, err := range map[string]error{
			"GetWrapped":    func() error { _, _, err := k.GetWrapped(context.Background(), "kms_1"); return err }(),
			"PutWrapped":    func() error { _, err := k.PutWrapped(context.Background(), "kms_1", []byte("wrapped"), 0); return err }(),
			"DeleteWrapped": k.DeleteWrapped(context.Background(), "kms_1"),
			"PutBlob":       b.PutBlob(ctx, "bkp_1/0", "slice-1", []byte("blob")),
			"GetBlob":       func() error { _, err := b.GetBlob(ctx, "bkp_1/0", "slice-1"); return err }(),
			"DestroyBlobs":  b.DestroyBlobs(ctx, "bkp_1/0"),
			"Ping":          b.Ping(ctx),
		} {
			if !errors.Is(err, domain.ErrUnavailable) {
				t.Errorf("%s %s: %v, want ErrUnavailable", name, when, err)
			}
		}
	}
	check("with the server down")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	check("after Close")
}

func TestStoreErrors(t *testing.T) {
	if isStreamDeleted(nil) || isStreamDeleted(errors.New("stream deleted")) || isStreamDeleted(errClientGone) {
		t.Error("isStreamDeleted takes other errors for a deleted stream")
	}
	if _, _, err := indexEntry("Other", nil); err == nil {
		t.Error("an unknown index entry accepted")
	}
	for _, data := range [][]byte{nil, []byte("a\x00b"), bytes.Repeat([]byte("n"), 1025)} {
		if _, _, err := indexEntry(typeBlobName, data); err == nil {
			t.Errorf("index entry %q accepted", data)
		}
	}
	if name, sealed, err := indexEntry(typeBlobName, []byte("slice-1")); name != "slice-1" || sealed || err != nil {
		t.Errorf("index entry: %q, %v, %v", name, sealed, err)
	}
	if name, sealed, err := indexEntry(typeBlobsSealed, nil); name != "" || !sealed || err != nil {
		t.Errorf("seal entry: %q, %v, %v", name, sealed, err)
	}
}

// TestDataKeyStreamRefs: AnyWrapped finds a record's ref from its stream
// name, in any generation, and never takes the key check's stream for a
// ref's.
func TestDataKeyStreamRefs(t *testing.T) {
	for _, ref := range []string{"kms_01J", "bkp_01J/3", "a-b", "ü~"} {
		for _, gen := range []uint64{0, 1, 12} {
			if got, ok := refOfDataKeyStream(dataKeyStream(ref, gen)); !ok || got != ref {
				t.Errorf("refOfDataKeyStream(%q) = %q, %v; want %q", dataKeyStream(ref, gen), got, ok, ref)
			}
		}
	}
	for _, stream := range []string{keyCheckStream, keyCheckStream + "-conf1-2", "blob-a-b", "kms-a", "datakey-"} {
		if ref, ok := refOfDataKeyStream(stream); ok {
			t.Errorf("refOfDataKeyStream(%q) = %q, a ref", stream, ref)
		}
	}
}
