package backupfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// allocated returns the bytes f allocates. The test calling it must not run
// in parallel with others.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Lengths read from the file are checked before anything is allocated for
// them: a hostile header length or record length costs nothing.
func TestHostileLengthsAllocateNothing(t *testing.T) {
	// Not parallel: allocated measures the whole process.
	head := binary.BigEndian.AppendUint32([]byte(magic), 0xFFFFFFFF)
	hostile := append(head, make([]byte, 100)...)
	var err error
	n := allocated(func() { _, err = New().Open(bytes.NewReader(hostile), fuzzKey()) })
	MustBad(t, err)
	if n > 16<<10 {
		t.Errorf("Open of a header length of 0xFFFFFFFF allocated %d bytes", n)
	}

	h := testHeader(1)
	h.Version = domain.FileFormatVersion
	for name, payload := range map[string][]byte{
		"2^62":                  binary.AppendUvarint(nil, 1<<62),
		"2^64-1":                binary.AppendUvarint(nil, 1<<64-1),
		"MaxRecordSize+1":       append(binary.AppendUvarint(nil, commands.MaxRecordSize+1), make([]byte, 100)...),
		"MaxRecordSize+1 whole": frame([][]byte{make([]byte, commands.MaxRecordSize+1)}),
	} {
		file := forge(t, fuzzKey(), fuzzSalt(), h, nil, cut(payload))
		fr, err := New().Open(bytes.NewReader(file), fuzzKey())
		if err != nil {
			t.Fatal(err)
		}
		var rec []byte
		n := allocated(func() { rec, err = fr.Next() })
		MustBad(t, err)
		if rec != nil || n > 16<<10 {
			t.Errorf("record length %s: Next allocated %d bytes and returned %d", name, n, len(rec))
		}
	}
}

// Reading a file keeps memory flat: one chunk and one record, whatever the
// file's size.
func TestReaderMemoryIsFlat(t *testing.T) {
	// Not parallel: allocated measures the whole process.
	rec := make([]byte, commands.MaxRecordSize)
	recs := make([][]byte, 24) // 24 MiB
	for i := range recs {
		recs[i] = rec
	}
	file, key := MustWrite(t, New(), testHeader(0), recs)
	var err error
	n := allocated(func() {
		var fr commands.FileReader
		fr, err = New().Open(bytes.NewReader(file), key)
		for err == nil {
			_, err = fr.Next()
		}
	})
	if !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if limit := uint64(commands.MaxRecordSize + 2*sealedSize); n > limit {
		t.Errorf("reading %d MiB allocated %d bytes, want at most %d", len(file)>>20, n, limit)
	}
}

// Both sides stop at the last counter a nonce can take here: no chunk is
// ever sealed or opened under a nonce used before.
func TestCounterLimit(t *testing.T) {
	t.Parallel()
	fw, _, err := New().Create(io.Discard, testHeader(1))
	if err != nil {
		t.Fatal(err)
	}
	fw.(*writer).counter = maxCounter - 1
	err = fw.WriteRecord(make([]byte, 3*chunkSize))
	if !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("writing past the last counter: %v, want ErrFailedPrecondition", err)
	}

	h := testHeader(1)
	h.Version = domain.FileFormatVersion
	one := frame([][]byte{make([]byte, chunkSize)})
	for _, tt := range []struct {
		name   string
		chunks []chunk
		ok     bool
	}{
		{"last chunk at the last counter", []chunk{{one[:chunkSize], maxCounter - 1, false}, {one[chunkSize:], maxCounter, true}}, true},
		{"a chunk after the last counter", []chunk{{one[:chunkSize], maxCounter, false}, {one[chunkSize:], 0, true}}, false},
	} {
		fr, err := New().Open(bytes.NewReader(forge(t, fuzzKey(), fuzzSalt(), h, nil, tt.chunks)), fuzzKey())
		if err != nil {
			t.Fatal(err)
		}
		fr.(*reader).counter = tt.chunks[0].counter
		_, err = fr.Next()
		if tt.ok && err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if !tt.ok {
			MustBad(t, err)
		}
	}
}
