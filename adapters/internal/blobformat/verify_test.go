package blobformat

import (
	"bytes"
	"errors"
	"testing"
)

// chunksOf cuts data as h says.
func chunksOf(h Header, data []byte) [][]byte {
	var out [][]byte
	off := 0
	for i := range h.Chunks {
		n := h.ChunkLen(i)
		out = append(out, data[off:off+n])
		off += n
	}
	return out
}

// verify feeds chunks to a Verifier of h and returns the first error.
func verify(h Header, chunks [][]byte) error {
	v := NewVerifier(h)
	for _, c := range chunks {
		if err := v.Add(c); err != nil {
			return err
		}
	}
	return v.Verify()
}

func TestVerifierAcceptsTheBlob(t *testing.T) {
	for _, n := range []int{0, 1, 299, 300, 301, 1000} {
		data := pattern(n)
		h := New(data, 300)
		chunks := chunksOf(h, data)
		if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: the chunks do not make the blob", n)
		}
		v := NewVerifier(h)
		for i, c := range chunks {
			if v.Next() != uint32(i) {
				t.Fatalf("%d bytes: Next = %d before chunk %d", n, v.Next(), i)
			}
			if err := v.Add(c); err != nil {
				t.Fatalf("%d bytes, chunk %d: %v", n, i, err)
			}
		}
		if v.Next() != h.Chunks {
			t.Fatalf("%d bytes: Next = %d at the end, want %d", n, v.Next(), h.Chunks)
		}
		if err := v.Verify(); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
	}
}

func TestVerifierRejects(t *testing.T) {
	data := pattern(1000)
	h := New(data, 300) // chunks of 300, 300, 300, 100
	good := chunksOf(h, data)
	with := func(i int, c []byte) [][]byte {
		out := append([][]byte(nil), good...)
		out[i] = c
		return out
	}
	flipped := bytes.Clone(good[2])
	flipped[17] ^= 1
	otherDigest := h
	otherDigest.Digest[0] ^= 1
	for name, c := range map[string]struct {
		h      Header
		chunks [][]byte
	}{
		"a flipped byte":        {h, with(2, flipped)},
		"a short chunk":         {h, with(1, good[1][1:])},
		"a long chunk":          {h, with(3, append(bytes.Clone(good[3]), 0))},
		"a short last chunk":    {h, with(3, good[3][:99])},
		"a missing last chunk":  {h, good[:3]},
		"no chunk":              {h, nil},
		"a chunk beyond":        {h, append(append([][]byte(nil), good...), []byte{})},
		"chunks swapped":        {h, [][]byte{good[1], good[0], good[2], good[3]}},
		"another digest":        {otherDigest, good},
		"a chunk of an empty":   {New(nil, 300), [][]byte{{}}},
		"empty, other digest":   {Header{ChunkSize: 300}, nil},
		"the last chunk as all": {h, [][]byte{data}},
	} {
		if err := verify(c.h, c.chunks); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: %v, want ErrMismatch", name, err)
		}
	}
}

// TestVerifierRefusalTakesNothing: a refused chunk leaves the Verifier as
// it was.
func TestVerifierRefusalTakesNothing(t *testing.T) {
	data := pattern(1000)
	h := New(data, 300)
	good := chunksOf(h, data)
	v := NewVerifier(h)
	if err := v.Add(good[0][:10]); err == nil {
		t.Fatal("a short chunk accepted")
	}
	for i, c := range good {
		if err := v.Add(c); err != nil {
			t.Fatalf("chunk %d after a refusal: %v", i, err)
		}
	}
	if err := v.Verify(); err != nil {
		t.Fatal(err)
	}
}
