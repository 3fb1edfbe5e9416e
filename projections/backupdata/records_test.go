package backupdata

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

func TestRecordsRoundTrip(t *testing.T) {
	at := time.Date(2026, 5, 1, 2, 3, 4, 5, time.UTC)
	m := &meta{Generation: 3, TimeZone: "Asia/Shanghai", NextRevision: 12, LastSeq: 9, LiveKeys: 4, LiveSecrets: 5,
		Digest: sum256{1, 2, 3, 4}}
	x := &row{To: open, Versions: 3, CreatedAt: at, ChangedAt: at.Add(time.Minute), Text: "payments", CreateSeq: 7}
	s := Summary{Seq: 9, Full: true, At: at, Day: "2026-05-01", From: 3, Next: 8, LiveKeys: 4, LiveSecrets: 5,
		Parts:       []domain.SlicePart{{Name: "slice-9-x", Digest: [32]byte{7}, Events: 2, From: 3, Next: 5}, {Name: "slice-9-y", Events: 3, From: 5, Next: 8}},
		StateDigest: [32]byte{9, 8, 7}, InBase: true, Digest: [32]byte{6}}
	d := DayInfo{Day: "2026-05-01", FullSeq: 1, LastSeq: 5}

	type codec struct {
		name   string
		enc    []byte
		decode func([]byte) (any, error)
		want   any
	}
	codecs := []codec{
		{"meta", encodeMeta(m), func(b []byte) (any, error) { return decodeMeta(b) }, m},
		{"row", encodeRow(x), func(b []byte) (any, error) { return decodeRow(b) }, x},
		{"summary", encodeSummary(&s), func(b []byte) (any, error) { return decodeSummary(b) }, s},
		{"day", encodeDay(&d), func(b []byte) (any, error) { return decodeDay(d.Day, b) }, d},
	}
	for _, c := range codecs {
		got, err := c.decode(c.enc)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(meta{}, row{})); diff != "" {
			t.Fatalf("%s round trip (-want +got):\n%s", c.name, diff)
		}
		for _, bad := range [][]byte{c.enc[:len(c.enc)-1], append(append([]byte(nil), c.enc...), 0), append([]byte{2}, c.enc[1:]...)} {
			if _, err := c.decode(bad); !errors.Is(err, domain.ErrCorrupt) {
				t.Fatalf("%s: decoding damaged bytes gave %v, want ErrCorrupt", c.name, err)
			}
		}
	}
	if to, err := rowTo(encodeRow(x)); err != nil || to != open {
		t.Fatalf("rowTo = %d, %v", to, err)
	}
}

func TestKeys(t *testing.T) {
	ref := domain.DataRef("bkp_1", 1)
	kind, id, from, ok := parseRowKey(rowKey(ref, kindSecret, "db", 42)[len(rowsPrefix(ref)):])
	if !ok || kind != kindSecret || id != "db" || from != 42 {
		t.Fatalf("parseRowKey = %c %q %d %v", kind, id, from, ok)
	}
	dk := dayKey(ref, "2026-05-01", Deleted, kindKey, "key_1")
	kind, id, ok = parseDayKey(dk[len(dayTabPrefix(ref, "2026-05-01", Deleted)):])
	if !ok || kind != kindKey || id != "key_1" {
		t.Fatalf("parseDayKey = %c %q %v", kind, id, ok)
	}
	// Generation 1's prefix does not cover generation 10's keys, nor the meta record.
	for _, k := range [][]byte{rowKey(domain.DataRef("bkp_1", 10), kindKey, "k", 1), metaKey("bkp_1")} {
		if string(k[:len(base(ref))]) == string(base(ref)) {
			t.Fatalf("%q is under the prefix of %s", k, ref)
		}
	}
	// Item order: an ID sorts before its extensions, whatever follows it in the key.
	a, b := rowKey(ref, kindKey, "ab", ^uint64(0)), rowKey(ref, kindKey, "abc", 0)
	if string(a) >= string(b) || string(after(rowKindPrefix(ref, kindKey), "ab")) > string(b) {
		t.Fatal("row keys do not sort by item ID")
	}
}
