package domain

import (
	"errors"
	"testing"
	"time"
	"unsafe"
)

func TestEventRecordRoundTrip(t *testing.T) {
	e := Event{ID: EventID{1, 2, 3}, Stream: "kms-kms_1", Type: TypeKeyDeleted, Schema: SchemaVersion,
		OccurredAt: time.Date(2026, 5, 1, 0, 0, 0, 42, time.UTC), Account: "acct_1", Region: "cn-hangzhou",
		Instance: "kms_1", Data: EncodeData(&KeyDeleted{Key: "key_1"})}
	rec := AppendEventRecord(nil, &e, 0)
	if len(rec) > EventRecordSize(&e) {
		t.Fatalf("record of %d bytes, EventRecordSize says at most %d", len(rec), EventRecordSize(&e))
	}
	SetEventRecordRevision(rec, 7)
	got, err := DecodeEventRecord(99, rec)
	if err != nil {
		t.Fatal(err)
	}
	want := e
	want.Revision, want.Position = 7, 99
	if got.ID != want.ID || got.Stream != want.Stream || got.Revision != 7 || got.Position != 99 || got.Type != want.Type ||
		!got.OccurredAt.Equal(want.OccurredAt) || got.Account != want.Account || got.Region != want.Region ||
		got.Instance != want.Instance || string(got.Data) != string(want.Data) || got.Schema != want.Schema {
		t.Fatalf("round trip: %+v, want %+v", got, want)
	}
	if rev, id, stream, err := EventRecordHeader(99, rec); err != nil || rev != 7 || id != e.ID || stream != e.Stream {
		t.Fatalf("header: %d %s %q %v", rev, id, stream, err)
	}
	for name, bad := range map[string][]byte{
		"short":          rec[:recordHeaderLen-1],
		"other version":  append([]byte{2}, rec[1:]...),
		"trailing bytes": append(append([]byte(nil), rec...), 0),
		"cut":            rec[:len(rec)-1],
	} {
		if _, err := DecodeEventRecord(99, bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// TestEventRecordAfterSharesRepeatedStrings: a record decoded after
// another shares the strings the two have alike, and decodes the ones
// that differ as they are.
func TestEventRecordAfterSharesRepeatedStrings(t *testing.T) {
	first := Event{ID: EventID{1}, Stream: "kms-kms_1", Type: TypeKeyDeleted, Schema: SchemaVersion,
		Account: "acct_1", Region: "cn-hangzhou", Instance: "kms_1", Data: EncodeData(&KeyDeleted{Key: "key_1"})}
	second := first
	second.ID, second.Stream, second.Type = EventID{2}, "name-acct_1-cn-hangzhou-key-key_2", TypeNameClaimed
	prev, err := DecodeEventRecord(1, AppendEventRecord(nil, &first, 1))
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEventRecordAfter(2, AppendEventRecord(nil, &second, 1), &prev)
	if err != nil {
		t.Fatal(err)
	}
	if got.Stream != second.Stream || got.Type != second.Type || got.Account != first.Account ||
		got.Region != first.Region || got.Instance != first.Instance || string(got.Data) != string(first.Data) {
		t.Fatalf("decoded %+v, want %+v", got, second)
	}
	same := func(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }
	if !same(string(got.Account), string(prev.Account)) || !same(got.Region, prev.Region) || !same(string(got.Instance), string(prev.Instance)) {
		t.Error("the account, region and instance alike were decoded apart, not shared")
	}
	if same(got.Type, prev.Type) || same(got.Stream, prev.Stream) {
		t.Error("a string that differs shares the previous event's")
	}
}
