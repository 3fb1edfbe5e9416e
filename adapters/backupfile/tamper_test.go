package backupfile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// The tamper tests flip one bit of a byte and require the one bad-file
// error from Open or from a later Next. Every byte of a one-chunk file is
// flipped; of a three-chunk file, the header, every 97th byte, and the
// first and last 64 bytes of each chunk (where the framing and the tag
// are).

func TestTamperEveryByteOfSmallFile(t *testing.T) {
	t.Parallel()
	recs := [][]byte{[]byte("checkpoint"), {}, []byte("event one"), []byte("event two")}
	file, key := MustWrite(t, New(), testHeader(0), recs)
	if b := chunkBounds(t, file); len(b) != 2 {
		t.Fatalf("want a one-chunk file, got %d chunks", len(b)-1)
	}
	offsets := make([]int, len(file))
	for i := range offsets {
		offsets[i] = i
	}
	mustFlipsFail(t, file, key, offsets)
}

func TestTamperThreeChunkFile(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	recs := randomRecords(rng, 24, 10000)
	recs = append(recs, randomBytes(rng, 2*chunkSize-len(frame(recs))+100))
	file, key := MustWrite(t, New(), testHeader(0), recs)
	b := chunkBounds(t, file)
	if len(b) != 4 {
		t.Fatalf("want a three-chunk file, got %d chunks", len(b)-1)
	}
	var offsets []int
	for i := range b[0] { // the header
		offsets = append(offsets, i)
	}
	for i := b[0]; i < len(file); i += 97 {
		offsets = append(offsets, i)
	}
	for c := range len(b) - 1 {
		for i := range 64 {
			offsets = append(offsets, b[c]+i, b[c+1]-1-i)
		}
	}
	slices.Sort(offsets)
	mustFlipsFail(t, file, key, slices.Compact(offsets))
}

func mustFlipsFail(t *testing.T, file []byte, key domain.Plaintext, offsets []int) {
	t.Helper()
	for _, off := range offsets {
		t.Run(fmt.Sprint(off), func(t *testing.T) {
			t.Parallel()
			bad := bytes.Clone(file)
			bad[off] ^= 1 << (off % 8)
			_, _, err := readFile(bad, key)
			MustBad(t, err)
		})
	}
}

// badCase is a file that must not open: Open or a later Next must give the
// one bad-file error.
type badCase struct {
	name string
	file []byte
	key  domain.Plaintext
}

// TestBadFiles runs every other way a file can be wrong and checks that each
// gets the same error, word for word.
func TestBadFiles(t *testing.T) {
	t.Parallel()
	var cases []badCase
	add := func(name string, file []byte, key domain.Plaintext) {
		cases = append(cases, badCase{name, file, key})
	}
	rng := rand.New(rand.NewPCG(7, 8))

	// A file of three chunks, the last short, and one of two full chunks.
	recs := randomRecords(rng, 30, 9000)
	recs = append(recs, randomBytes(rng, 2*chunkSize-len(frame(recs))+500))
	file, key := MustWrite(t, New(), testHeader(0), recs)
	b := chunkBounds(t, file)
	if len(b) != 4 {
		t.Fatalf("want three chunks, got %d", len(b)-1)
	}
	full, fullKey := MustWrite(t, New(), testHeader(0), [][]byte{randomBytes(rng, 2*chunkSize-3)})
	fb := chunkBounds(t, full)
	if len(fb) != 3 || fb[2]-fb[1] != sealedSize {
		t.Fatalf("want two full chunks, got bounds %v", fb)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	chunkOf := func(f []byte, bounds []int, i int) []byte { return f[bounds[i]:bounds[i+1]] }
	head, c0, c1, c2 := file[:b[0]], chunkOf(file, b, 0), chunkOf(file, b, 1), chunkOf(file, b, 2)

	// Truncation: in the header, at every chunk boundary, inside chunks.
	for _, n := range []int{0, 1, 7, 8, 11, prefixSize, prefixSize + 1, prefixSize + 16, b[0] - macSize - 1,
		b[0] - macSize, b[0] - 1, b[0], b[0] + 1, b[0] + tagSize, b[0] + chunkSize/2, b[1] - 1, b[1], b[1] + 1,
		b[2] - tagSize, b[2] - 1, b[2], b[2] + 1, b[2] + 15, b[3] - tagSize, b[3] - 1} {
		add(fmt.Sprintf("truncated to %d bytes", n), file[:n], key)
	}
	for _, n := range []int{fb[1], fb[2] - 1, fb[2] - tagSize, fb[1] + 1} {
		add(fmt.Sprintf("full-chunk file truncated to %d bytes", n), full[:n], fullKey)
	}

	// Bytes after the last chunk.
	for _, extra := range [][]byte{{0}, make([]byte, tagSize), make([]byte, sealedSize), c2, c0} {
		add(fmt.Sprintf("%d bytes appended", len(extra)), cat(file, extra), key)
		add(fmt.Sprintf("%d bytes appended to full-chunk file", len(extra)), cat(full, extra), fullKey)
	}

	// Chunks swapped, dropped or repeated.
	add("first two chunks swapped", cat(head, c1, c0, c2), key)
	add("full chunks swapped", cat(full[:fb[0]], chunkOf(full, fb, 1), chunkOf(full, fb, 0)), fullKey)
	add("middle chunk dropped", cat(head, c0, c2), key)
	add("first chunk dropped", cat(head, c1, c2), key)
	add("last chunk dropped", cat(head, c0, c1), key)
	add("last full chunk dropped", full[:fb[1]], fullKey)
	add("only the header", head, key)
	add("first chunk twice", cat(head, c0, c0, c1, c2), key)
	add("middle chunk twice", cat(head, c0, c1, c1, c2), key)
	add("last chunk twice", cat(head, c0, c1, c2, c2), key)

	// Splicing: A's header on B's chunks. With the same key and salt, the
	// two files share their payload key; only the header MAC in the
	// associated data tells their chunks apart.
	same := NewWithRand(fixedRand(fuzzKey(), fuzzSalt()))
	a, ka := MustWrite(t, same, testHeader(0), recs)
	hb := testHeader(0)
	hb.FileID = "01JQ5Z8Y3V7K2M4N6P8R0S2T4W"
	sameB, _ := MustWrite(t, NewWithRand(fixedRand(fuzzKey(), fuzzSalt())), hb, recs)
	ab, bb := chunkBounds(t, a), chunkBounds(t, sameB)
	add("header of A on chunks of B, same key and salt", cat(a[:ab[0]], sameB[bb[0]:]), ka)
	add("header of B on chunks of A, same key and salt", cat(sameB[:bb[0]], a[ab[0]:]), ka)
	add("chunk of B among chunks of A, same key and salt", cat(a[:ab[1]], sameB[bb[1]:bb[2]], a[ab[2]:]), ka)
	otherSalt := bytes.Repeat([]byte{0xa5}, saltSize)
	saltB, _ := MustWrite(t, NewWithRand(fixedRand(fuzzKey(), otherSalt)), hb, recs)
	sb := chunkBounds(t, saltB)
	add("header of A on chunks of B, same key, other salt", cat(a[:ab[0]], saltB[sb[0]:]), ka)
	add("header of B on chunks of A, same key, other salt", cat(saltB[:sb[0]], a[ab[0]:]), ka)
	otherKey, _ := MustWrite(t, New(), testHeader(0), recs)
	ob := chunkBounds(t, otherKey)
	add("header of A on chunks of B, other key, A's key", cat(a[:ab[0]], otherKey[ob[0]:]), ka)
	add("header of B on chunks of A, other key, A's key", cat(otherKey[:ob[0]], a[ab[0]:]), ka)

	// Wrong keys.
	flipped := bytes.Clone(key)
	flipped[31] ^= 0x80
	add("wrong key", file, randomBytes(rng, domain.DataKeySize))
	add("key with one bit flipped", file, flipped)
	add("short key", file, key[:31])
	add("long key", file, append(bytes.Clone(key), 0))
	add("no key", file, nil)
	add("not a file", []byte(strings.Repeat("not a backup file ", 100)), key)

	// Forgeries: the header and every chunk authenticate under the key,
	// but the file breaks a rule of the format.
	fk, salt := fuzzKey(), fuzzSalt()
	h := testHeader(2)
	h.Version = domain.FileFormatVersion
	two := [][]byte{[]byte("one"), []byte("two")}
	p := frame(two)
	forged := func(name string, h domain.FileHeader, body []byte, chunks ...chunk) {
		add("forged: "+name, forge(t, fk, salt, h, body, chunks), fk)
	}
	big := frame([][]byte{make([]byte, chunkSize+100), []byte("x")})
	bh := h
	bh.Records = 2
	forged("last flag on the first of two chunks", bh, nil, chunk{big[:chunkSize], 0, true}, chunk{big[chunkSize:], 1, true})
	forged("no last flag on the last chunk", bh, nil, chunk{big[:chunkSize], 0, false}, chunk{big[chunkSize:], 1, false})
	forged("no last flag on the only chunk", h, nil, chunk{p, 0, false})
	forged("counter skips one", bh, nil, chunk{big[:chunkSize], 0, false}, chunk{big[chunkSize:], 2, true})
	forged("counter starts at 1", h, nil, chunk{p, 1, true})
	forged("short middle chunk", bh, nil, chunk{big[:100], 0, false}, chunk{big[100:], 1, true})
	exact := frame([][]byte{make([]byte, chunkSize-3)})
	eh := h
	eh.Records = 1
	forged("empty last chunk after a full one", eh, nil, chunk{exact, 0, false}, chunk{nil, 1, true})
	forged("fewer records than the header's", h, nil, chunk{frame(two[:1]), 0, true})
	forged("more records than the header's", h, nil, chunk{frame(append(two, nil)), 0, true})
	forged("no records, header says 2", h, nil, chunk{nil, 0, true})
	forged("payload ends inside a record", h, nil, chunk{p[:len(p)-1], 0, true})
	forged("payload ends inside a record length", h, nil, chunk{append(frame(two[:1]), 0x80), 0, true})
	forged("payload ends inside a record spanning chunks", bh, nil, chunk{big[:chunkSize], 0, false}, chunk{big[chunkSize : len(big)-3], 1, true})
	lenEnd := append(frame([][]byte{make([]byte, chunkSize-8)}), bytes.Repeat([]byte{0xff}, 5)...) // a full chunk
	forged("record length over 64 bits across chunks", bh, nil, chunk{lenEnd, 0, false}, chunk{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 2}, 1, true})
	forged("payload ends inside a record length across chunks", bh, nil, chunk{lenEnd, 0, false}, chunk{[]byte{0xff}, 1, true})
	forged("record length not in its shortest encoding", h, nil, chunk{append(bytes.Clone(p[:4]), 0x83, 0x00, 't', 'w', 'o'), 0, true})
	forged("record length not in its shortest encoding across chunks", bh, nil,
		chunk{append(frame([][]byte{make([]byte, chunkSize-4)}), 0x81), 0, false}, chunk{[]byte{0x00, 'x'}, 1, true})
	forged("record length over 64 bits", h, nil, chunk{append(bytes.Repeat([]byte{0xff}, 10), 1), 0, true})
	forged("record length over the maximum", h, nil,
		chunk{binary.AppendUvarint(nil, commands.MaxRecordSize+1), 0, true})
	forged("record length 2^62", h, nil, chunk{binary.AppendUvarint(nil, 1<<62), 0, true})
	vh := h
	vh.Version = domain.FileFormatVersion + 1
	forged("version 2", vh, nil, chunk{p, 0, true})
	vh.Version = 0
	forged("version 0", vh, nil, chunk{p, 0, true})
	lh := h
	lh.Region = strings.Repeat("r", maxStringLen+1)
	forged("region of 257 bytes", lh, nil, chunk{p, 0, true})
	body := encodeHeader(h, salt)[prefixSize:]
	forged("header body with a trailing byte", h, append(bytes.Clone(body), 0), chunk{p, 0, true})
	forged("header body cut short", h, body[:len(body)-1], chunk{p, 0, true})
	forged("header body of salt only", h, append([]byte{1}, salt...), chunk{p, 0, true})
	forged("empty header body", h, []byte{}, chunk{p, 0, true})
	forged("header body over 64 KiB", h, append(bytes.Clone(body), make([]byte, maxHeaderLen)...), chunk{p, 0, true})
	wrongMagic := forge(t, fk, salt, h, nil, []chunk{{p, 0, true}})
	wrongMagic[7] = 0 // recomputing the MAC would not help: the magic is checked first
	add("forged: another magic", wrongMagic, fk)

	// The genuine forgery opens: the cases above fail for their one flaw.
	if _, got, err := readFile(forge(t, fk, salt, h, nil, []chunk{{p, 0, true}}), fk); err != nil || len(got) != 2 {
		t.Fatalf("the unflawed forgery reads as %q, %v", got, err)
	}
	if _, got, err := readFile(forge(t, fk, salt, bh, nil, []chunk{{big[:chunkSize], 0, false}, {big[chunkSize:], 1, true}}), fk); err != nil || len(got) != 2 {
		t.Fatalf("the unflawed two-chunk forgery reads as %d records, %v", len(got), err)
	}

	msgs := map[string][]string{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := readFile(c.file, c.key)
			MustBad(t, err)
			msgs[err.Error()] = append(msgs[err.Error()], c.name)
		})
	}
	if len(msgs) != 1 {
		t.Errorf("bad files got %d different messages, want one: %v", len(msgs), msgs)
	}
}
