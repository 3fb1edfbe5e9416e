package backupfile

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"io"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
)

// The benchmarks move a 64 MiB payload of 1 KiB records through the writer
// and the reader, against the baseline of sealing the same bytes in 64 KiB
// chunks with the same cipher (AES-256-GCM) and nothing else:
//
//	go test -run '^$' -bench . -benchtime 20x ./adapters/backupfile

const (
	benchPayload = 64 << 20
	benchRecord  = 1 << 10
)

func benchRecords() [][]byte {
	recs := make([][]byte, benchPayload/benchRecord)
	rec := bytes.Repeat([]byte{0x42}, benchRecord)
	for i := range recs {
		recs[i] = rec
	}
	return recs
}

func BenchmarkWrite(b *testing.B) {
	recs := benchRecords()
	h := testHeader(uint64(len(recs)))
	f := New()
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		fw, key, err := f.Create(io.Discard, h)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			if err := fw.WriteRecord(r); err != nil {
				b.Fatal(err)
			}
		}
		if err := fw.Close(); err != nil {
			b.Fatal(err)
		}
		key.Wipe()
	}
}

func BenchmarkRead(b *testing.B) {
	file, key := MustWrite(b, New(), testHeader(0), benchRecords())
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		fr, err := New().Open(bytes.NewReader(file), key)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			rec, err := fr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n += len(rec)
		}
		if n != benchPayload {
			b.Fatalf("read %d bytes", n)
		}
	}
}

// BenchmarkRawAESGCM is the baseline: the same cipher sealing the same
// amount of data in 64 KiB chunks in place, with no framing and no I/O.
func BenchmarkRawAESGCM(b *testing.B) {
	key := make(domain.Plaintext, domain.DataKeySize)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, chunkSize, sealedSize)
	ad := make([]byte, macSize)
	var n [nonceSize]byte
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		for i := range benchPayload / chunkSize {
			nonce(&n, uint64(i), false)
			aead.Seal(buf[:0], n[:], buf[:chunkSize], ad)
		}
	}
}
