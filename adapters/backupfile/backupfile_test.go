package backupfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	const maxRec = commands.MaxRecordSize
	sizes := []int{0, 1, 2, 127, 128, 16383, 16384, chunkSize - 3, chunkSize - 2, chunkSize - 1, chunkSize,
		chunkSize + 1, 2*chunkSize - 1, 2 * chunkSize, 2*chunkSize + 1, maxRec - 1, maxRec}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	var boundaries [][]byte // every size above, in a random order, among small records
	for _, i := range rng.Perm(len(sizes)) {
		boundaries = append(boundaries, randomBytes(rng, sizes[i]), randomBytes(rng, rng.IntN(300)))
	}
	tests := []struct {
		name string
		recs [][]byte
	}{
		{"no records", nil},
		{"one empty record", [][]byte{{}}},
		{"empty records only", [][]byte{{}, {}, {}}},
		{"one byte", [][]byte{{42}}},
		{"payload of exactly one chunk", [][]byte{randomBytes(rng, chunkSize-3)}},
		{"payload of exactly two chunks", [][]byte{randomBytes(rng, 2*chunkSize-3)}},
		{"payload one byte over a chunk", [][]byte{randomBytes(rng, chunkSize-3), {}}},
		{"record length split across chunks", [][]byte{randomBytes(rng, chunkSize-4), randomBytes(rng, 200)}},
		{"record split across chunks", [][]byte{randomBytes(rng, chunkSize-100), randomBytes(rng, 200)}},
		{"largest record", [][]byte{randomBytes(rng, maxRec)}},
		{"boundary sizes", boundaries},
		{"many small records", randomRecords(rng, 5000, 100)},
		{"random sizes", randomRecords(rng, 40, 3*chunkSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := testHeader(0)
			file, key := MustWrite(t, New(), h, tt.recs)
			got, recs, err := readFile(file, key)
			if err != nil {
				t.Fatalf("read back: %v", err)
			}
			h.Version, h.Records = domain.FileFormatVersion, uint64(len(tt.recs))
			if diff := cmp.Diff(h, got); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			if len(recs) != len(tt.recs) {
				t.Fatalf("read %d records, wrote %d", len(recs), len(tt.recs))
			}
			for i := range recs {
				if !bytes.Equal(recs[i], tt.recs[i]) {
					t.Fatalf("record %d (%d bytes) reads back as %d other bytes", i, len(tt.recs[i]), len(recs[i]))
				}
			}
			// The layout: a sealed chunk per started 64 KiB of payload, at
			// least one.
			payload := len(frame(tt.recs))
			chunks := max(1, (payload+chunkSize-1)/chunkSize)
			if b := chunkBounds(t, file); len(b)-1 != chunks || len(file)-b[0] != payload+chunks*tagSize {
				t.Errorf("file of %d payload bytes has %d chunks and %d payload-side bytes, want %d and %d",
					payload, len(b)-1, len(file)-b[0], chunks, payload+chunks*tagSize)
			}
		})
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxStringLen)
	tests := []struct {
		name string
		h    domain.FileHeader
	}{
		{"realistic", testHeader(0)},
		{"zero", domain.FileHeader{}},
		{"longest strings", domain.FileHeader{FileID: long, Account: domain.AccountID(long), Source: domain.BackupID(long),
			KMSInstance: domain.InstanceID(long), Region: long, Day: domain.Day(long), TimeZone: long,
			CreatedAt: time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC), Keys: 1<<64 - 1, Secrets: 1<<64 - 1, Checkpoints: 1<<64 - 1}},
		{"before 1970", domain.FileHeader{CreatedAt: time.Date(1969, 7, 20, 20, 17, 40, 1, time.UTC)}},
		{"version is set by Create", domain.FileHeader{Version: 77, Region: "us-east-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file, key := MustWrite(t, New(), tt.h, nil)
			got, _, err := readFile(file, key)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.h
			want.Version = domain.FileFormatVersion
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCreateRefusesHeadersNoReaderAccepts(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", maxStringLen/2) + "x" // 257 bytes
	for name, h := range map[string]domain.FileHeader{
		"long file ID":      {FileID: long},
		"long account":      {Account: domain.AccountID(long)},
		"long source":       {Source: domain.BackupID(long)},
		"long KMS instance": {KMSInstance: domain.InstanceID(long)},
		"long region":       {Region: long},
		"long day":          {Day: domain.Day(long)},
		"long time zone":    {TimeZone: long},
		"year 2300":         {CreatedAt: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			_, key, err := New().Create(&out, h)
			if !errors.Is(err, domain.ErrInvalidArgument) || key != nil || out.Len() != 0 {
				t.Fatalf("Create = key %v, %d bytes written, %v; want ErrInvalidArgument and nothing written", key, out.Len(), err)
			}
		})
	}
}

func TestCreateDrawsAFreshKey(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 20 {
		_, key := MustWrite(t, New(), testHeader(0), nil)
		if len(key) != domain.DataKeySize || seen[string(key)] {
			t.Fatalf("key of %d bytes, seen before: %v", len(key), seen[string(key)])
		}
		seen[string(key)] = true
	}
	t.Run("broken random source", func(t *testing.T) {
		for name, r := range map[string]io.Reader{
			"zeros":   zeros{},
			"short":   bytes.NewReader(make([]byte, 31)),
			"no salt": bytes.NewReader(bytes.Repeat([]byte{1}, 40)),
		} {
			var out bytes.Buffer
			_, key, err := NewWithRand(r).Create(&out, testHeader(0))
			if !errors.Is(err, domain.ErrUnavailable) || key != nil || out.Len() != 0 {
				t.Errorf("%s: Create = key %v, %d bytes written, %v; want ErrUnavailable and nothing written", name, key, out.Len(), err)
			}
		}
	})
}

// The key and the records never show in the writer's errors.
func TestErrorsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte("SECRETVALUE"), commands.MaxRecordSize/11+1)
	fw, key, err := New().Create(io.Discard, testHeader(1))
	if err != nil {
		t.Fatal(err)
	}
	err = fw.WriteRecord(secret)
	if !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("oversized record: %v, want ErrInvalidArgument", err)
	}
	msgs := []string{err.Error(), fw.Close().Error()}
	for _, m := range msgs {
		if strings.Contains(m, "SECRET") || strings.Contains(m, domain.FormatDataKey(key)[5:]) {
			t.Errorf("error %q shows a record or the key", m)
		}
	}
}

func TestWriterRecordRules(t *testing.T) {
	t.Parallel()
	t.Run("too large a record is refused, nothing else changes", func(t *testing.T) {
		var out bytes.Buffer
		fw, key, err := New().Create(&out, testHeader(1))
		if err != nil {
			t.Fatal(err)
		}
		if err := fw.WriteRecord(make([]byte, commands.MaxRecordSize+1)); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Fatalf("WriteRecord(MaxRecordSize+1) = %v, want ErrInvalidArgument", err)
		}
		if err := fw.WriteRecord([]byte("ok")); err != nil {
			t.Fatal(err)
		}
		if err := fw.Close(); err != nil {
			t.Fatal(err)
		}
		if _, recs, err := readFile(out.Bytes(), key); err != nil || len(recs) != 1 || string(recs[0]) != "ok" {
			t.Fatalf("read back %q, %v", recs, err)
		}
	})
	t.Run("fewer records than promised", func(t *testing.T) {
		var out bytes.Buffer
		fw, key, err := New().Create(&out, testHeader(3))
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := fw.WriteRecord([]byte("r")); err != nil {
				t.Fatal(err)
			}
		}
		if err := fw.Close(); !errors.Is(err, domain.ErrFailedPrecondition) {
			t.Fatalf("Close = %v, want ErrFailedPrecondition", err)
		}
		if err2 := fw.Close(); err2 == nil || err2.Error() != fw.Close().Error() {
			t.Fatalf("second Close = %v", err2)
		}
		// What was written has no last chunk: no reader takes it.
		_, _, err = readFile(out.Bytes(), key)
		MustBad(t, err)
	})
	t.Run("more records than promised", func(t *testing.T) {
		fw, _, err := New().Create(io.Discard, testHeader(1))
		if err != nil {
			t.Fatal(err)
		}
		if err := fw.WriteRecord([]byte("r")); err != nil {
			t.Fatal(err)
		}
		if err := fw.WriteRecord([]byte("r")); !errors.Is(err, domain.ErrFailedPrecondition) {
			t.Fatalf("record beyond the promise: %v, want ErrFailedPrecondition", err)
		}
		if err := fw.Close(); !errors.Is(err, domain.ErrFailedPrecondition) {
			t.Fatalf("Close = %v, want ErrFailedPrecondition", err)
		}
	})
	t.Run("write after close", func(t *testing.T) {
		fw, _, err := New().Create(io.Discard, testHeader(0))
		if err != nil {
			t.Fatal(err)
		}
		if err := fw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := fw.Close(); err != nil {
			t.Fatalf("second Close = %v, want the first's nil", err)
		}
		if err := fw.WriteRecord(nil); !errors.Is(err, domain.ErrFailedPrecondition) {
			t.Fatalf("WriteRecord after Close = %v, want ErrFailedPrecondition", err)
		}
	})
}

// countingWriter records the size of each Write.
type countingWriter struct {
	bytes.Buffer
	writes []int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, len(p))
	return c.Buffer.Write(p)
}

func TestWriterStreamsChunks(t *testing.T) {
	t.Parallel()
	var out countingWriter
	fw, _, err := New().Create(&out, testHeader(4))
	if err != nil {
		t.Fatal(err)
	}
	header := out.Len()
	if header == 0 || len(out.writes) != 1 {
		t.Fatalf("Create wrote %d bytes in %d writes, want the header in one", header, len(out.writes))
	}
	rec := make([]byte, chunkSize-3) // with its 3-byte length, exactly one chunk
	if err := fw.WriteRecord(rec); err != nil {
		t.Fatal(err)
	}
	if out.Len() != header {
		t.Fatalf("a full chunk was sent before it was known not to be the last")
	}
	if err := fw.WriteRecord(rec); err != nil {
		t.Fatal(err)
	}
	if out.Len() != header+sealedSize {
		t.Fatalf("after two chunks' worth, %d bytes are out, want the header and one sealed chunk (%d)", out.Len(), header+sealedSize)
	}
	if err := fw.WriteRecord(make([]byte, 3*chunkSize)); err != nil {
		t.Fatal(err)
	}
	if out.Len() != header+5*sealedSize {
		t.Fatalf("after 5 chunks and 3 bytes' worth, %d bytes are out, want the header and 5 sealed chunks", out.Len())
	}
	if err := fw.WriteRecord(nil); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.Len(), header+5*sealedSize+4+tagSize; got != want {
		t.Fatalf("file is %d bytes, want %d", got, want)
	}
	for _, n := range out.writes[1:] {
		if n > sealedSize {
			t.Fatalf("a write of %d bytes: more than one chunk held", n)
		}
	}
}

func TestWriterCopiesRecords(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	fw, key, err := New().Create(&out, testHeader(2))
	if err != nil {
		t.Fatal(err)
	}
	rec := []byte("first")
	if err := fw.WriteRecord(rec); err != nil {
		t.Fatal(err)
	}
	copy(rec, "XXXXX")
	if err := fw.WriteRecord([]byte("second")); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	_, recs, err := readFile(out.Bytes(), key)
	if err != nil || len(recs) != 2 || string(recs[0]) != "first" {
		t.Fatalf("read back %q, %v", recs, err)
	}
}

// failingWriter fails once it has taken n bytes.
type failingWriter struct{ n int }

var errDisk = errors.New("disk on fire")

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errDisk
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriterReportsWriteErrors(t *testing.T) {
	t.Parallel()
	if _, _, err := New().Create(&failingWriter{}, testHeader(0)); !errors.Is(err, errDisk) {
		t.Fatalf("Create on a failing writer = %v, want it wrapped", err)
	}
	fw, _, err := New().Create(&failingWriter{n: 1000}, testHeader(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.WriteRecord(make([]byte, chunkSize-100)); err != nil { // still buffered
		t.Fatal(err)
	}
	if err := fw.WriteRecord(make([]byte, 200)); !errors.Is(err, errDisk) {
		t.Fatalf("WriteRecord = %v, want the write error wrapped", err)
	}
	if err := fw.WriteRecord(nil); !errors.Is(err, errDisk) {
		t.Fatalf("WriteRecord after a failed write = %v, want the write error again", err)
	}
	if err := fw.Close(); !errors.Is(err, errDisk) {
		t.Fatalf("Close after a failed write = %v, want the write error", err)
	}
	if err := fw.WriteRecord(nil); !errors.Is(err, errDisk) {
		t.Fatalf("WriteRecord after a failed Close = %v, want the write error again", err)
	}
}

func TestReaderReportsReadErrors(t *testing.T) {
	t.Parallel()
	errNet := errors.New("connection reset")
	rng := rand.New(rand.NewPCG(1, 2))
	recs := randomRecords(rng, 30, 10000)
	file, key := MustWrite(t, New(), testHeader(0), recs)
	b := chunkBounds(t, file)
	for _, cut := range []int{0, 5, prefixSize, b[0] - 1, b[0], b[0] + 100, b[1], b[2] - 1} {
		_, _, err := readFrom(&failingReader{r: bytes.NewReader(file[:cut]), err: errNet}, key)
		if !errors.Is(err, errNet) || domain.IsBadBackupFile(err) {
			t.Errorf("source failing after %d bytes: %v, want the source's error wrapped", cut, err)
		}
	}
	// The error sticks.
	fr, err := New().Open(&failingReader{r: bytes.NewReader(file[:b[0]+10]), err: errNet}, key)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := fr.Next(); !errors.Is(err, errNet) {
			t.Fatalf("Next = %v, want the source's error", err)
		}
	}
}

// Records come only from chunks already authenticated: with the second
// chunk damaged, every record of the first is returned, and none that
// reaches into the second.
func TestReaderAuthenticatesBeforeReturning(t *testing.T) {
	t.Parallel()
	recs := [][]byte{make([]byte, 40000), make([]byte, 20000), make([]byte, 20000), []byte("tail")}
	for i := range recs[2] {
		recs[2][i] = 7
	}
	file, key := MustWrite(t, New(), testHeader(0), recs)
	b := chunkBounds(t, file)
	file[b[1]+10] ^= 1
	fr, err := New().Open(bytes.NewReader(file), key)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if rec, err := fr.Next(); err != nil || len(rec) != len(recs[i]) {
			t.Fatalf("record %d: %d bytes, %v", i, len(rec), err)
		}
	}
	rec, err := fr.Next()
	if rec != nil {
		t.Fatalf("Next returned %d bytes of a record that ends in a damaged chunk", len(rec))
	}
	MustBad(t, err)
	_, err = fr.Next()
	MustBad(t, err)
}

// readLimit counts the bytes read from a source.
type readCounter struct {
	r io.Reader
	n int
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReaderReadsOneChunkAhead(t *testing.T) {
	t.Parallel()
	file, key := MustWrite(t, New(), testHeader(0), [][]byte{{1}, make([]byte, 5*chunkSize)})
	src := &readCounter{r: bytes.NewReader(file)}
	fr, err := New().Open(src, key)
	if err != nil {
		t.Fatal(err)
	}
	b := chunkBounds(t, file)
	if src.n != b[0] {
		t.Fatalf("Open read %d bytes, want the header's %d", src.n, b[0])
	}
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if src.n > b[1]+1 {
		t.Fatalf("the first record took %d bytes of the source, want at most one chunk and a byte (%d)", src.n, b[1]+1)
	}
}

func TestReaderWipesRecords(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte{0xAA}, 100)
	spanning := bytes.Repeat([]byte{0xBB}, chunkSize)
	file, key := MustWrite(t, New(), testHeader(0), [][]byte{secret, spanning, secret})
	fr, err := New().Open(bytes.NewReader(file), key)
	if err != nil {
		t.Fatal(err)
	}
	var held, copies [][]byte
	for {
		rec, err := fr.Next()
		for i, h := range held {
			if bytes.Equal(h, copies[i]) {
				t.Fatalf("record %d, of %d bytes, is still there after the next call", i, len(h))
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		held, copies = append(held, rec), append(copies, bytes.Clone(rec))
	}
	if len(held) != 3 {
		t.Fatalf("read %d records", len(held))
	}
	for i, h := range held { // at the end, the reader has wiped all it held
		if !bytes.Equal(h, make([]byte, len(h))) {
			t.Fatalf("record %d, of %d bytes, is not wiped at the end", i, len(h))
		}
	}
}

// A writer and the forge helper agree: forge builds files by the rules of
// the format, so that forged files differ from real ones only where a test
// says.
func TestForgeMatchesWriter(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, recs := range [][][]byte{nil, {{}}, {make([]byte, chunkSize-3)}, randomRecords(rng, 20, 20000)} {
		h := testHeader(uint64(len(recs)))
		file, _ := MustWrite(t, NewWithRand(fixedRand(fuzzKey(), fuzzSalt())), h, recs)
		h.Version = domain.FileFormatVersion
		if forged := forge(t, fuzzKey(), fuzzSalt(), h, nil, cut(frame(recs))); !bytes.Equal(file, forged) {
			t.Fatalf("%d records: the writer and forge differ", len(recs))
		}
	}
}

// TestFormatIsStable pins the bytes of one file: a change here is a change
// of format, which needs a new FileFormatVersion and docs/backup-file.md.
func TestFormatIsStable(t *testing.T) {
	t.Parallel()
	recs := [][]byte{[]byte("checkpoint"), {}, bytes.Repeat([]byte("event "), 20000)}
	file, _ := MustWrite(t, NewWithRand(fixedRand(fuzzKey(), fuzzSalt())), testHeader(0), recs)
	sum := sha256.Sum256(file)
	const want = "7aa6b8f439f22f90f31d7e6a7988980e0dc7e79bea29ae2c7beb03262e3cae5c"
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("the file's SHA-256 is %s, want %s", got, want)
	}
}
