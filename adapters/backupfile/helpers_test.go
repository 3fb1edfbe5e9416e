package backupfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// testHeader is a realistic header promising records records.
func testHeader(records uint64) domain.FileHeader {
	return domain.FileHeader{
		FileID:      "01JQ5Z8Y3V7K2M4N6P8R0S2T4V",
		Account:     "acct_01JQ5Z8Y3V7K2M4N6P8R0S2T4A",
		Source:      "bkp_01JQ5Z8Y3V7K2M4N6P8R0S2T4B",
		KMSInstance: "kms_01JQ5Z8Y3V7K2M4N6P8R0S2T4C",
		Region:      "eu-west-1",
		Day:         "2025-03-14",
		TimeZone:    "Europe/Paris",
		CreatedAt:   time.Date(2025, 3, 15, 1, 2, 3, 456789, time.UTC),
		Keys:        3,
		Secrets:     5,
		Checkpoints: 1,
		Records:     records,
	}
}

// fixedRand yields key, then salt, then zeros: Files drawing from it make
// files under a known key, for forgeries and fixtures.
func fixedRand(key, salt []byte) io.Reader {
	return io.MultiReader(bytes.NewReader(key), bytes.NewReader(salt), zeros{})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// fuzzKey is the public data key of the fixtures and the fuzz corpus.
func fuzzKey() domain.Plaintext {
	k := make(domain.Plaintext, domain.DataKeySize)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

// fuzzSalt is the salt of the fixtures and the fuzz corpus.
func fuzzSalt() []byte { return bytes.Repeat([]byte{0x5a}, saltSize) }

// MustWrite writes recs under h (whose Records it sets) with f and returns
// the file and its key.
func MustWrite(tb testing.TB, f *Files, h domain.FileHeader, recs [][]byte) ([]byte, domain.Plaintext) {
	tb.Helper()
	h.Records = uint64(len(recs))
	var out bytes.Buffer
	fw, key, err := f.Create(&out, h)
	if err != nil {
		tb.Fatalf("Create: %v", err)
	}
	for i, r := range recs {
		if err := fw.WriteRecord(r); err != nil {
			tb.Fatalf("WriteRecord %d: %v", i, err)
		}
	}
	if err := fw.Close(); err != nil {
		tb.Fatalf("Close: %v", err)
	}
	return out.Bytes(), key
}

// readFile opens file with key and reads it to the end, copying each
// record. It returns the first error other than io.EOF.
func readFile(file []byte, key domain.Plaintext) (domain.FileHeader, [][]byte, error) {
	return readFrom(bytes.NewReader(file), key)
}

func readFrom(src io.Reader, key domain.Plaintext) (domain.FileHeader, [][]byte, error) {
	fr, err := New().Open(src, key)
	if err != nil {
		return domain.FileHeader{}, nil, err
	}
	var recs [][]byte
	for {
		rec, err := fr.Next()
		if errors.Is(err, io.EOF) {
			return fr.Header(), recs, nil
		}
		if err != nil {
			return fr.Header(), recs, err
		}
		recs = append(recs, bytes.Clone(rec))
	}
}

// MustBad asserts that err is the one bad-file error, word for word.
func MustBad(tb testing.TB, err error) {
	tb.Helper()
	if !domain.IsBadBackupFile(err) {
		tb.Fatalf("got %v, want domain.BadBackupFile", err)
	}
	if got, want := err.Error(), domain.BadBackupFile().Error(); got != want {
		tb.Fatalf("bad-file error reads %q, want the one message %q", got, want)
	}
}

// randomRecords makes n records of random sizes and content from rng.
func randomRecords(rng *rand.Rand, n, maxSize int) [][]byte {
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = randomBytes(rng, rng.IntN(maxSize+1))
	}
	return recs
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// frame is the payload stream of recs: each one's uvarint length, then it.
func frame(recs [][]byte) []byte {
	var p []byte
	for _, r := range recs {
		p = binary.AppendUvarint(p, uint64(len(r)))
		p = append(p, r...)
	}
	return p
}

// chunk is one chunk of a forged file: its plaintext, the counter and
// flag it is sealed with.
type chunk struct {
	pt      []byte
	counter uint64
	last    bool
}

// cut cuts a payload into the chunks a writer makes.
func cut(payload []byte) []chunk {
	var cs []chunk
	for i := 0; ; i++ {
		n := min(len(payload), chunkSize)
		// A full chunk is the last only when nothing follows it.
		cs = append(cs, chunk{pt: payload[:n], counter: uint64(i), last: n == len(payload)})
		payload = payload[n:]
		if len(payload) == 0 && cs[len(cs)-1].last {
			return cs
		}
	}
}

// forge builds a file from its parts with the package's own primitives,
// under key and salt: the only way to make a file whose header and chunks
// authenticate but which breaks a rule the writer would never break. h is
// encoded as given (Version included); body, when not nil, replaces the
// header body.
func forge(tb testing.TB, key domain.Plaintext, salt []byte, h domain.FileHeader, body []byte, chunks []chunk) []byte {
	tb.Helper()
	head := encodeHeader(h, salt)
	if body != nil {
		head = binary.BigEndian.AppendUint32([]byte(magic), uint32(len(body)))
		head = append(head, body...)
	}
	ks, err := deriveKeys(key, salt)
	if err != nil {
		tb.Fatal(err)
	}
	mac := headerMAC(ks.mac, head)
	file := append(head, mac...)
	var n [nonceSize]byte
	for _, c := range chunks {
		nonce(&n, c.counter, c.last)
		file = ks.payload.Seal(file, n[:], c.pt, mac)
	}
	return file
}

// chunkBounds returns the offsets where each sealed chunk of a file starts,
// and the file's length last.
func chunkBounds(tb testing.TB, file []byte) []int {
	tb.Helper()
	if len(file) < prefixSize {
		tb.Fatal("no header")
	}
	off := prefixSize + int(binary.BigEndian.Uint32(file[len(magic):])) + macSize
	var bounds []int
	for off < len(file) {
		bounds = append(bounds, off)
		off = min(off+sealedSize, len(file))
	}
	return append(bounds, len(file))
}

// failingReader returns its bytes, then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, f.err
	}
	return n, err
}

var _ commands.BackupFiles = New()
