package backupfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/fuzzcorpus"
)

// The fuzz targets use the public fixture key fuzzKey and salt fuzzSalt, so
// that the committed corpus (testdata/fuzz/FuzzOpen) holds files that really
// open. None of this protects anything.

// FuzzOpen feeds whole files to Open and Next. Nothing may panic; whatever
// does not open is the one bad-file error; and a file that reads to the end
// is exactly the file a writer makes of its header and records, so nothing
// but genuine files opens.
func FuzzOpen(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.file)
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		h, recs, err := readFile(file, fuzzKey())
		if err != nil {
			MustBad(t, err)
			return
		}
		if uint64(len(recs)) != h.Records {
			t.Fatalf("read %d records of a file whose header says %d", len(recs), h.Records)
		}
		salt, _ := splitSalt(file[prefixSize:])
		again, _ := MustWrite(t, NewWithRand(fixedRand(fuzzKey(), salt)), h, recs)
		if !bytes.Equal(again, file) {
			t.Fatalf("a file that opens is not what the writer makes of its content")
		}
	})
}

// FuzzPayload seals arbitrary payload streams under the fixture key, as if
// their writer held the key but did not follow the format, and reads them:
// the record framing must never panic or allocate past its limit, and a
// payload that reads is exactly the framing of its records.
func FuzzPayload(f *testing.F) {
	f.Add([]byte{}, uint64(0))
	f.Add(frame([][]byte{[]byte("one"), {}, []byte("three")}), uint64(3))
	f.Add([]byte{0x80, 0x00}, uint64(1))
	f.Add(bytes.Repeat([]byte{0xff}, 11), uint64(1))
	f.Add(binary.AppendUvarint(nil, commands.MaxRecordSize+1), uint64(1))
	f.Add(frame([][]byte{make([]byte, chunkSize-4), []byte("spans")}), uint64(2))
	f.Fuzz(func(t *testing.T, payload []byte, records uint64) {
		h := testHeader(records)
		h.Version = domain.FileFormatVersion
		file := forge(t, fuzzKey(), fuzzSalt(), h, nil, cut(payload))
		_, recs, err := readFile(file, fuzzKey())
		if err != nil {
			MustBad(t, err)
			return
		}
		if uint64(len(recs)) != records || !bytes.Equal(frame(recs), payload) {
			t.Fatalf("payload of %d bytes reads as %d records (header: %d) framed in %d bytes",
				len(payload), len(recs), records, len(frame(recs)))
		}
	})
}

// fuzzSeed is a file of the seed corpus; valid ones open with fuzzKey.
type fuzzSeed struct {
	name  string
	file  []byte
	valid bool
}

// fuzzSeeds are the committed corpus of FuzzOpen, made deterministically.
func fuzzSeeds(tb testing.TB) []fuzzSeed {
	tb.Helper()
	write := func(h domain.FileHeader, recs [][]byte) []byte {
		file, _ := MustWrite(tb, NewWithRand(fixedRand(fuzzKey(), fuzzSalt())), h, recs)
		return file
	}
	small := [][]byte{[]byte("checkpoint"), {}, []byte("event 1"), bytes.Repeat([]byte("event 2 "), 20)}
	multi := [][]byte{[]byte("checkpoint"), bytes.Repeat([]byte{'e'}, chunkSize), []byte("last")}
	several := write(testHeader(0), small)
	flip := func(b []byte, off int) []byte {
		b = bytes.Clone(b)
		b[off] ^= 1
		return b
	}
	bounds := chunkBounds(tb, several)
	return []fuzzSeed{
		{"valid-no-records", write(testHeader(0), nil), true},
		{"valid-one-record", write(domain.FileHeader{Region: "r"}, [][]byte{[]byte("only")}), true},
		{"valid-several-records", several, true},
		{"valid-two-chunks", write(testHeader(0), multi), true},
		{"header-byte-flipped", flip(several, prefixSize+20), false},
		{"tag-byte-flipped", flip(several, len(several)-1), false},
		{"last-chunk-truncated", several[:len(several)-5], false},
		{"byte-appended", append(bytes.Clone(several), 0), false},
		{"header-only", several[:bounds[0]], false},
		{"header-length-max", binary.BigEndian.AppendUint32([]byte(magic), 0xFFFFFFFF), false},
	}
}

const (
	corpusDir = "testdata/fuzz/FuzzOpen"
	corpusEnv = "BACKUPFILE_WRITE_CORPUS"
)

// corpus is the seeds as fuzzcorpus takes them.
func corpus(seeds []fuzzSeed) []fuzzcorpus.Seed {
	out := make([]fuzzcorpus.Seed, len(seeds))
	for i, s := range seeds {
		out[i] = fuzzcorpus.Seed{Name: s.name, Data: s.file}
	}
	return out
}

// TestWriteFuzzCorpus writes the seed corpus of FuzzOpen when
// BACKUPFILE_WRITE_CORPUS=1. Run it after a change of format (and of
// FileFormatVersion), and commit the files.
func TestWriteFuzzCorpus(t *testing.T) {
	fuzzcorpus.Write(t, corpusEnv, corpusDir, corpus(fuzzSeeds(t)))
}

// The committed corpus is the one fuzzSeeds makes, and its valid files open
// under the fixture key: a format change that forgets the corpus fails
// here.
func TestFuzzCorpusIsCurrent(t *testing.T) {
	t.Parallel()
	seeds := fuzzSeeds(t)
	fuzzcorpus.Check(t, corpusEnv, "TestWriteFuzzCorpus", corpusDir, corpus(seeds))
	for _, s := range seeds {
		_, _, err := readFile(s.file, fuzzKey())
		if s.valid && err != nil {
			t.Errorf("%s does not open: %v", s.name, err)
		}
		if !s.valid && !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("%s opens: %v", s.name, err)
		}
	}
}
