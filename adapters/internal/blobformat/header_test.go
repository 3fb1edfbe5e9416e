package blobformat

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// pattern is the blob of n bytes the golden headers describe.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var legacies = []Legacy{NoLegacy, V1NoFlags, V1Flags}

func TestRoundTrip(t *testing.T) {
	for _, c := range []struct{ n, chunkSize int }{
		{0, 1}, {0, 1 << 20}, {1, 1}, {1000, 300}, {900, 300}, {901, 300},
		{3<<20 + 5, 1 << 20}, {3<<20 + 5, 512 << 10}, {5, MaxChunkSize},
	} {
		h := New(pattern(c.n), c.chunkSize)
		want := Header{Size: uint64(c.n), ChunkSize: uint32(c.chunkSize),
			Chunks: uint32((c.n + c.chunkSize - 1) / c.chunkSize), Digest: sha256.Sum256(pattern(c.n))}
		if diff := cmp.Diff(want, h); diff != "" {
			t.Fatalf("New(%d bytes, %d) (-want +got):\n%s", c.n, c.chunkSize, diff)
		}
		for _, flags := range []Flags{0, FlagAtomic} {
			h.Flags = flags
			enc := h.Encode()
			if len(enc) != HeaderLen || enc[0] != Version || Flags(enc[1]) != flags {
				t.Fatalf("Encode(%+v) = %x: not a version-2 header", h, enc)
			}
			for _, legacy := range legacies {
				got, err := Decode(enc, legacy)
				if err != nil {
					t.Fatalf("Decode(Encode(%+v), %d): %v", h, legacy, err)
				}
				if diff := cmp.Diff(h, got); diff != "" {
					t.Fatalf("round trip with legacy %d (-want +got):\n%s", legacy, diff)
				}
			}
			if got, _ := Decode(enc, NoLegacy); got.Atomic() != (flags == FlagAtomic) {
				t.Fatalf("Atomic() = %v with flags %d", got.Atomic(), flags)
			}
		}
	}
}

// TestEncodeLayout pins version 2 byte by byte.
func TestEncodeLayout(t *testing.T) {
	h := New(pattern(1000), 300)
	h.Flags = FlagAtomic
	want := unhex(t, "0201"+"00000000000003e8"+"0000012c"+"00000004"+
		"4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d")
	if got := h.Encode(); !bytes.Equal(got, want) {
		t.Fatalf("Encode = %x, want %x", got, want)
	}
}

func TestChunkLen(t *testing.T) {
	h := New(pattern(1000), 300)
	for i, want := range []int{300, 300, 300, 100, 0, 0} {
		if got := h.ChunkLen(uint32(i)); got != want {
			t.Errorf("ChunkLen(%d) = %d, want %d", i, got, want)
		}
	}
	if got := New(pattern(900), 300).ChunkLen(2); got != 300 {
		t.Errorf("the last of exactly full chunks: ChunkLen = %d, want 300", got)
	}
	if got := New(nil, 300).ChunkLen(0); got != 0 {
		t.Errorf("an empty blob's ChunkLen(0) = %d, want 0", got)
	}
	big := Header{Size: MaxSize, ChunkSize: 1, Chunks: MaxSize}
	if got := big.ChunkLen(MaxSize - 1); got != 1 {
		t.Errorf("the last of 2^30 chunks of 1 byte: ChunkLen = %d", got)
	}
}

func TestNewRefusesWhatItCannotDescribe(t *testing.T) {
	for name, f := range map[string]func(){
		"chunk size 0":             func() { New(nil, 0) },
		"negative chunk size":      func() { New(nil, -1) },
		"chunk size over the max":  func() { New(nil, MaxChunkSize+1) },
		"data larger than MaxSize": func() { New(make([]byte, MaxSize+1), 1<<20) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: New did not panic", name)
				}
			}()
			f()
		}()
	}
}

// TestDecodeRejects breaks each field a check covers, in version 2 and in
// each version-1 layout, and checks that Decode refuses it.
func TestDecodeRejects(t *testing.T) {
	good := New(pattern(1000), 300)
	good.Flags = FlagAtomic
	v2 := good.Encode()
	v1Flags := append([]byte{1}, v2[1:]...)
	v1NoFlags := append([]byte{1}, v2[2:]...)
	// edit returns b with fields (from size on, at off) changed by f.
	edit := func(b []byte, off int, f func(fields []byte)) []byte {
		b = bytes.Clone(b)
		f(b[off:])
		return b
	}
	type layout struct {
		name   string
		b      []byte
		off    int // of the size field
		legacy Legacy
	}
	for _, l := range []layout{
		{"version 2", v2, 2, NoLegacy},
		{"esdb version 1", v1Flags, 2, V1Flags},
		{"pebblestore version 1", v1NoFlags, 1, V1NoFlags},
	} {
		if _, err := Decode(l.b, l.legacy); err != nil {
			t.Fatalf("%s: the good header is refused: %v", l.name, err)
		}
		bad := map[string][]byte{
			"empty":               {},
			"version only":        l.b[:1],
			"one byte short":      l.b[:len(l.b)-1],
			"one byte long":       append(bytes.Clone(l.b), 0),
			"unknown version 0":   edit(l.b, 0, func(f []byte) { f[0] = 0 }),
			"unknown version 3":   edit(l.b, 0, func(f []byte) { f[0] = 3 }),
			"size over MaxSize":   edit(l.b, l.off, func(f []byte) { binary.BigEndian.PutUint64(f, MaxSize+1) }),
			"size 2^64-1":         edit(l.b, l.off, func(f []byte) { binary.BigEndian.PutUint64(f, ^uint64(0)) }),
			"chunk size 0":        edit(l.b, l.off, func(f []byte) { binary.BigEndian.PutUint32(f[8:], 0) }),
			"chunk size over max": edit(l.b, l.off, func(f []byte) { binary.BigEndian.PutUint32(f[8:], MaxChunkSize+1) }),
			"chunk count + 1":     edit(l.b, l.off, func(f []byte) { binary.BigEndian.PutUint32(f[12:], 5) }),
			"chunk count - 1":     edit(l.b, l.off, func(f []byte) { binary.BigEndian.PutUint32(f[12:], 3) }),
			"chunk count 0":       edit(l.b, l.off, func(f []byte) { binary.BigEndian.PutUint32(f[12:], 0) }),
			"size without chunk count": edit(l.b, l.off, func(f []byte) {
				binary.BigEndian.PutUint64(f, 1000+300) // 5 chunks of 300, the header says 4
			}),
		}
		if l.off == 2 {
			bad["unknown flag 0x02"] = edit(l.b, 1, func(f []byte) { f[0] |= 2 })
			bad["unknown flag 0x80"] = edit(l.b, 1, func(f []byte) { f[0] |= 0x80 })
		}
		for name, b := range bad {
			if h, err := Decode(b, l.legacy); !errors.Is(err, ErrHeader) {
				t.Errorf("%s, %s: Decode = %+v, %v; want ErrHeader", l.name, name, h, err)
			}
		}
	}
	// A chunk count of 0 is right for an empty blob only.
	empty := New(nil, 300).Encode()
	if _, err := Decode(empty, NoLegacy); err != nil {
		t.Errorf("empty blob: %v", err)
	}
	if _, err := Decode(edit(empty, 2+12, func(f []byte) { f[3] = 1 }), NoLegacy); !errors.Is(err, ErrHeader) {
		t.Errorf("an empty blob of 1 chunk: %v, want ErrHeader", err)
	}
}

// Headers written by the encoders of earlier releases, captured from them:
// pebblestore's (chunks of 1 MiB, no flags byte) and esdb's (a flags byte;
// atomic when the blob fit in one append).
var legacyGolden = []struct {
	name   string
	hex    string
	legacy Legacy
	want   Header // without the digest: that of pattern(Size)
}{
	{"pebblestore, empty", "01" + "0000000000000000" + "00100000" + "00000000" +
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		V1NoFlags, Header{Size: 0, ChunkSize: 1 << 20, Chunks: 0}},
	{"pebblestore, 1000 bytes", "01" + "00000000000003e8" + "00100000" + "00000001" +
		"4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d",
		V1NoFlags, Header{Size: 1000, ChunkSize: 1 << 20, Chunks: 1}},
	{"pebblestore, 3 MiB + 5", "01" + "0000000000300005" + "00100000" + "00000004" +
		"b01669d77761c4dfdfc8fb927821087bcf5c9ef1f917c4f1f8504e529f19edab",
		V1NoFlags, Header{Size: 3<<20 + 5, ChunkSize: 1 << 20, Chunks: 4}},
	{"esdb, empty, atomic", "01" + "01" + "0000000000000000" + "00080000" + "00000000" +
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		V1Flags, Header{Flags: FlagAtomic, Size: 0, ChunkSize: 512 << 10, Chunks: 0}},
	{"esdb, 1000 bytes, atomic", "01" + "01" + "00000000000003e8" + "0000012c" + "00000004" +
		"4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d",
		V1Flags, Header{Flags: FlagAtomic, Size: 1000, ChunkSize: 300, Chunks: 4}},
	{"esdb, 1000 bytes, several appends", "01" + "00" + "00000000000003e8" + "0000012c" + "00000004" +
		"4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d",
		V1Flags, Header{Size: 1000, ChunkSize: 300, Chunks: 4}},
	{"esdb, 3 MiB + 5, several appends", "01" + "00" + "0000000000300005" + "00080000" + "00000007" +
		"b01669d77761c4dfdfc8fb927821087bcf5c9ef1f917c4f1f8504e529f19edab",
		V1Flags, Header{Size: 3<<20 + 5, ChunkSize: 512 << 10, Chunks: 7}},
}

// TestDecodeLegacy reads each version-1 layout from the bytes the earlier
// encoders wrote, only with its own Legacy, and writes it back in version
// 2 unchanged.
func TestDecodeLegacy(t *testing.T) {
	for _, g := range legacyGolden {
		b := unhex(t, g.hex)
		want := g.want
		want.Digest = sha256.Sum256(pattern(int(want.Size)))
		for _, legacy := range legacies {
			got, err := Decode(b, legacy)
			if legacy != g.legacy {
				if !errors.Is(err, ErrHeader) {
					t.Errorf("%s with legacy %d: %+v, %v; want ErrHeader", g.name, legacy, got, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", g.name, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("%s (-want +got):\n%s", g.name, diff)
			}
			again, err := Decode(got.Encode(), NoLegacy)
			if err != nil || again != got {
				t.Fatalf("%s in version 2: %+v, %v", g.name, again, err)
			}
		}
	}
}
