package blobformat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/kmsbackup/kmsbackup/test/fuzzcorpus"
)

// FuzzDecode checks that Decode never panics, that whatever it refuses is
// ErrHeader, and that whatever it accepts, with any Legacy, agrees with
// itself (the checks the stores rely on before they read a chunk) and is
// the same header once written in version 2.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, legacy := range legacies {
			h, err := Decode(b, legacy)
			if err != nil {
				if !errors.Is(err, ErrHeader) {
					t.Fatalf("legacy %d: %v, not ErrHeader", legacy, err)
				}
				continue
			}
			if h.Size > MaxSize || h.ChunkSize == 0 || h.ChunkSize > MaxChunkSize || h.Flags&^knownFlags != 0 {
				t.Fatalf("legacy %d: accepted %+v", legacy, h)
			}
			if h.Chunks == 0 {
				if h.Size != 0 {
					t.Fatalf("legacy %d: %d bytes in no chunk", legacy, h.Size)
				}
			} else if last := h.ChunkLen(h.Chunks - 1); last < 1 || last > int(h.ChunkSize) ||
				uint64(h.Chunks-1)*uint64(h.ChunkSize)+uint64(last) != h.Size {
				t.Fatalf("legacy %d: %d chunks of %d, the last of %d, for %d bytes", legacy, h.Chunks, h.ChunkSize, last, h.Size)
			}
			enc := h.Encode()
			var same bool
			switch {
			case b[0] == Version:
				same = bytes.Equal(enc, b)
			case legacy == V1Flags:
				same = bytes.Equal(enc[1:], b[1:])
			case legacy == V1NoFlags:
				same = enc[1] == 0 && bytes.Equal(enc[2:], b[1:])
			}
			if !same {
				t.Fatalf("legacy %d: %x decodes as %+v, which encodes as %x", legacy, b, h, enc)
			}
			if again, err := Decode(enc, NoLegacy); err != nil || again != h {
				t.Fatalf("legacy %d: %+v in version 2 decodes as %+v, %v", legacy, h, again, err)
			}
		}
	})
}

// fuzzSeeds are the committed corpus of FuzzDecode: headers of each
// layout, valid and each broken in one field.
func fuzzSeeds(tb testing.TB) []fuzzcorpus.Seed {
	tb.Helper()
	atomic := New(pattern(1000), 300)
	atomic.Flags = FlagAtomic
	v2 := atomic.Encode()
	with := func(off int, f func(b []byte)) []byte {
		b := bytes.Clone(v2)
		f(b[off:])
		return b
	}
	seeds := []fuzzcorpus.Seed{
		{Name: "v2-atomic", Data: v2},
		{Name: "v2-empty", Data: New(nil, 1<<20).Encode()},
		{Name: "v2-four-chunks", Data: New(pattern(3<<20+5), 1<<20).Encode()},
		{Name: "v2-unknown-flag", Data: with(1, func(b []byte) { b[0] |= 2 })},
		{Name: "v2-chunk-count-off", Data: with(2+12, func(b []byte) { b[3]++ })},
		{Name: "v2-size-over-max", Data: with(2, func(b []byte) { binary.BigEndian.PutUint64(b, MaxSize+1) })},
		{Name: "v2-chunk-size-0", Data: with(2+8, func(b []byte) { binary.BigEndian.PutUint32(b, 0) })},
		{Name: "v2-truncated", Data: v2[:HeaderLen-1]},
		{Name: "version-3", Data: with(0, func(b []byte) { b[0] = 3 })},
	}
	for _, g := range legacyGolden {
		name := "v1-" + strings.NewReplacer(", ", "-", " ", "-", "+", "plus").Replace(g.name)
		seeds = append(seeds, fuzzcorpus.Seed{Name: name, Data: unhex(tb, g.hex)})
	}
	return seeds
}

const (
	corpusDir = "testdata/fuzz/FuzzDecode"
	corpusEnv = "BLOBFORMAT_WRITE_CORPUS"
)

// TestWriteFuzzCorpus writes the seed corpus of FuzzDecode when
// BLOBFORMAT_WRITE_CORPUS=1. Run it after a change of format, and commit
// the files.
func TestWriteFuzzCorpus(t *testing.T) {
	fuzzcorpus.Write(t, corpusEnv, corpusDir, fuzzSeeds(t))
}

// TestFuzzCorpusIsCurrent: the committed corpus is the one fuzzSeeds
// makes, so a change of format that forgets it fails here.
func TestFuzzCorpusIsCurrent(t *testing.T) {
	fuzzcorpus.Check(t, corpusEnv, "TestWriteFuzzCorpus", corpusDir, fuzzSeeds(t))
}
