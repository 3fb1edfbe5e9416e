package audit

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

// TestRecordRoundTrip fills every field of Record, so a field added there
// and forgotten in the codec fails here.
func TestRecordRoundTrip(t *testing.T) {
	rec := Record{
		Position: 42, Event: domain.EventID{1, 2, 3}, At: time.Date(2026, 5, 1, 2, 3, 4, 5, time.UTC),
		Action: "restore", Actor: "acct_1", Backup: "bkp_1", Day: "2026-04-30", Target: "kms_1", Item: "key_1",
		Keys: []string{"key_1", "key_2"}, Secrets: []string{"db"},
	}
	v := reflect.ValueOf(rec)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("test fixture leaves %s zero", v.Type().Field(i).Name)
		}
	}
	enc := encodeRecord(&rec)
	got, err := decodeRecord(42, enc)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rec, got); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	for _, bad := range [][]byte{nil, enc[:len(enc)-1], append(enc, 0), append([]byte{9}, enc[1:]...)} {
		if _, err := decodeRecord(42, bad); !errors.Is(err, domain.ErrCorrupt) {
			t.Fatalf("decode of a damaged record: %v, want ErrCorrupt", err)
		}
	}
}

// TestOlderRecordRoundTrip: a record without a batch's items (as every
// record was before batches) keeps its encoding, and decodes without them.
func TestOlderRecordRoundTrip(t *testing.T) {
	rec := Record{Position: 7, Event: domain.EventID{4}, At: time.Date(2026, 5, 1, 2, 3, 4, 5, time.UTC),
		Action: "restore-key", Actor: "acct_1", Backup: "bkp_1", Day: "2026-04-30", Target: "kms_1", Item: "key_1"}
	enc := encodeRecord(&rec)
	with := rec
	with.Keys = []string{"key_1"}
	if n := len(encodeRecord(&with)); n <= len(enc) {
		t.Fatalf("a record with items encodes in %d bytes, one without in %d", n, len(enc))
	}
	got, err := decodeRecord(7, enc)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rec, got); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
}
