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
		Action: "restore-key", Actor: "acct_1", Backup: "bkp_1", Day: "2026-04-30", Target: "kms_1", Item: "key_1",
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
