package esdb

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

var testTime = time.Date(2025, 3, 1, 9, 30, 15, 123456789, time.FixedZone("CST", 8*3600))

func testEvent(stream string, n int) domain.Event {
	return domain.Event{
		ID:         ulid.MustNew(ulid.Timestamp(testTime)+uint64(n), bytes.NewReader(bytes.Repeat([]byte{byte(n + 1)}, 16))),
		Stream:     stream,
		Type:       "KeyCreated",
		Schema:     3,
		OccurredAt: testTime.Add(time.Duration(n) * time.Second),
		Account:    "acct_01JNAAAAAAAAAAAAAAAAAAAAAA",
		Region:     "cn-hangzhou",
		Instance:   "kms_01JNBBBBBBBBBBBBBBBBBBBBBB",
		Data:       []byte("payload"),
	}
}

// recorded is what the client would hand back for d, stored as event rev of
// stream at position pos.
func recorded(stream string, rev, pos uint64, d esdbclient.EventData) *esdbclient.RecordedEvent {
	return &esdbclient.RecordedEvent{
		EventID:      d.EventID,
		EventType:    d.EventType,
		ContentType:  "application/octet-stream",
		StreamID:     stream,
		EventNumber:  rev,
		Position:     esdbclient.Position{Commit: pos, Prepare: pos},
		CreatedDate:  testTime,
		Data:         bytes.Clone(d.Data),
		UserMetadata: bytes.Clone(d.Metadata),
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	base := testEvent("kms-a", 0)
	variants := map[string]func(e *domain.Event){
		"plain":          func(e *domain.Event) {},
		"max schema":     func(e *domain.Event) { e.Schema = math.MaxUint16 },
		"zero time":      func(e *domain.Event) { e.OccurredAt = time.Time{} },
		"before 1970":    func(e *domain.Event) { e.OccurredAt = time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC) },
		"unicode":        func(e *domain.Event) { e.Type = "Überweisung: 轉帳"; e.Region = "中国-杭州" },
		"nil data":       func(e *domain.Event) { e.Data = nil },
		"empty data":     func(e *domain.Event) { e.Data = []byte{} },
		"binary data":    func(e *domain.Event) { e.Data = []byte{0, 0xff, 0, 0xfe} },
		"empty envelope": func(e *domain.Event) { e.Account, e.Region, e.Instance, e.Schema = "", "", "", 0 },
	}
	for name, change := range variants {
		t.Run(name, func(t *testing.T) {
			e := base
			change(&e)
			d := toEventData(&e)
			if d.EventID != uuid.UUID(e.ID) || [16]byte(d.EventID) != [16]byte(e.ID) {
				t.Fatalf("event ID %s, want the ULID's bytes %x", d.EventID, e.ID[:])
			}
			if d.EventType != e.Type || d.ContentType != esdbclient.ContentTypeBinary || !bytes.Equal(d.Data, e.Data) {
				t.Fatalf("event data %+v does not carry type, binary content type and data of %+v", d, e)
			}
			if len(d.Metadata) > envelopeSize(&e) {
				t.Fatalf("envelope of %d bytes, over its bound %d", len(d.Metadata), envelopeSize(&e))
			}
			got, err := fromRecorded(recorded(e.Stream, 7, 4242, d))
			if err != nil {
				t.Fatalf("fromRecorded: %v", err)
			}
			want := e
			want.Revision, want.Position = 7, 4242
			if len(want.Data) == 0 {
				want.Data = nil
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnvelopeCorrupt(t *testing.T) {
	e := testEvent("kms-a", 0)
	e.Account = "SECRET-LOOKING-ACCOUNT"
	good := toEventData(&e).Metadata
	for name, meta := range map[string][]byte{
		"missing":        nil,
		"json":           []byte(`{"$correlationId":"x"}`),
		"other version":  append([]byte{2}, good[1:]...),
		"truncated":      good[:len(good)-3],
		"trailing bytes": append(bytes.Clone(good), 0),
		"schema too big": appendEnvelopeSchema(math.MaxUint16 + 1),
	} {
		d := toEventData(&e)
		d.Metadata = meta
		_, err := fromRecorded(recorded("kms-a", 3, 99, d))
		if !errors.Is(err, domain.ErrCorrupt) {
			t.Errorf("%s envelope: %v, want ErrCorrupt", name, err)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "payload") {
			t.Errorf("%s envelope: the error shows event content: %v", name, err)
		}
		if !strings.Contains(err.Error(), "kms-a") || !strings.Contains(err.Error(), "event 3") {
			t.Errorf("%s envelope: the error does not name the event: %v", name, err)
		}
	}
}

// appendEnvelopeSchema is a well-formed envelope but for its schema.
func appendEnvelopeSchema(schema uint64) []byte {
	w := wire.Writer{B: []byte{envelopeV1}}
	w.Uvarint(schema)
	w.Time(testTime)
	w.String("acct")
	w.String("region")
	w.String("kms")
	return w.B
}

func TestEventPosition(t *testing.T) {
	for _, c := range []struct {
		commit uint64
		ok     bool
	}{
		{1, true}, {123456, true}, {math.MaxInt64, true},
		{0, false}, {math.MaxUint64, false}, {math.MaxInt64 + 1, false},
	} {
		got, err := eventPosition(&esdbclient.RecordedEvent{StreamID: "kms-a", Position: esdbclient.Position{Commit: c.commit, Prepare: c.commit}})
		switch {
		case c.ok && (err != nil || got != c.commit):
			t.Errorf("commit %d: position %d, %v", c.commit, got, err)
		case !c.ok && !errors.Is(err, domain.ErrFailedPrecondition):
			t.Errorf("commit %d: %v, want ErrFailedPrecondition (no position reported)", c.commit, err)
		}
	}
}

func TestPositionMapping(t *testing.T) {
	if got := allFrom(0); got != (esdbclient.Start{}) {
		t.Errorf("allFrom(0) = %#v, want Start", got)
	}
	if got := allFrom(1234); got != (esdbclient.Position{Commit: 1234, Prepare: 1234}) {
		t.Errorf("allFrom(1234) = %#v", got)
	}
	for _, c := range []struct{ p, size, want uint64 }{
		{0, DefaultChunkSize, 0},
		{1234, DefaultChunkSize, 0},
		{DefaultChunkSize, DefaultChunkSize, DefaultChunkSize},
		{3*DefaultChunkSize + 17, DefaultChunkSize, 3 * DefaultChunkSize},
		{99, 0, 0},
	} {
		if got := chunkStart(c.p, c.size); got != c.want {
			t.Errorf("chunkStart(%d, %d) = %d, want %d", c.p, c.size, got, c.want)
		}
	}
	a, b := esdbclient.Position{Commit: 10, Prepare: 10}, esdbclient.Position{Commit: 10, Prepare: 12}
	if !keyAfter(b, a) || keyAfter(a, b) || keyAfter(a, a) || !keyAfter(esdbclient.Position{Commit: 11}, b) {
		t.Error("keyAfter does not order by commit, then prepare")
	}
	for _, c := range []struct {
		from      uint64
		backwards bool
		want      esdbclient.StreamPosition
		ok        bool
	}{
		{0, false, esdbclient.Revision(0), true},
		{9, true, esdbclient.Revision(9), true},
		{math.MaxUint64, true, esdbclient.End{}, true},
		{math.MaxInt64 + 1, true, esdbclient.End{}, true},
		{math.MaxUint64, false, nil, false},
	} {
		got, ok := streamFrom(c.from, c.backwards)
		if got != c.want || ok != c.ok {
			t.Errorf("streamFrom(%d, %v) = %#v, %v; want %#v, %v", c.from, c.backwards, got, ok, c.want, c.ok)
		}
	}
	if direction(true) != esdbclient.Backwards || direction(false) != esdbclient.Forwards {
		t.Error("direction")
	}
}

func TestExpectedRevisionMapping(t *testing.T) {
	if got := esdbExpected(false, 0); got != (esdbclient.NoStream{}) {
		t.Errorf("missing stream: %#v, want NoStream", got)
	}
	if got := esdbExpected(true, 0); got != esdbclient.Revision(0) {
		t.Errorf("stream at 0: %#v, want Revision(0)", got)
	}
	if got := esdbExpected(true, 41); got != esdbclient.Revision(41) {
		t.Errorf("stream at 41: %#v, want Revision(41)", got)
	}
	for _, c := range []struct {
		exp   domain.ExpectedRevision
		start uint64
		ok    bool
	}{
		{domain.ExpectNoStream, 0, true},
		{domain.ExpectRevision(0), 1, true},
		{domain.ExpectRevision(41), 42, true},
		{domain.ExpectRevision(math.MaxUint64), 0, false},
		{domain.ExpectAny, 0, false},
		{domain.ExpectStreamExists, 0, false},
	} {
		if start, ok := expectedStart(c.exp); start != c.start || ok != c.ok {
			t.Errorf("expectedStart(%s) = %d, %v; want %d, %v", c.exp, start, ok, c.start, c.ok)
		}
	}
}

func TestSystemEventFilter(t *testing.T) {
	for _, c := range []struct {
		stream, typ string
		system      bool
	}{
		{"kms-a", "KeyCreated", false},
		{"$stats-127.0.0.1:2113", "$statsCollected", true},
		{"$ce-kms", "$>", true},
		{"$$kms-a", "$metadata", true},
		{"kms-a", "$>", true},
		{"$scavenges", "ScavengeStarted", true},
	} {
		if got := isSystem(c.stream, c.typ); got != c.system {
			t.Errorf("isSystem(%q, %q) = %v", c.stream, c.typ, got)
		}
	}
	l := &Log{opts: Options{}.withDefaults()}
	for stream, want := range map[string]bool{
		"kms-kms_01": true, "backup-bkp_01": true, "account-acct_01": true, "accounts": true, "audit-acct_01": true,
		"kms": false, "orders-1": false, "confx-1": false, "$ce-kms": false,
	} {
		if got := l.wanted(stream, "SomeEvent"); got != want {
			t.Errorf("default prefixes: wanted(%q) = %v", stream, got)
		}
	}
	all := &Log{opts: Options{StreamPrefixes: []string{""}}.withDefaults()}
	if !all.wanted("orders-1", "OrderPlaced") || all.wanted("$ce-orders", "$>") {
		t.Error(`prefix "" must take every non-system stream`)
	}
	f := subscriptionFilter([]string{"kms-", "backup-"})
	if f.Type != esdbclient.StreamFilterType || !cmp.Equal(f.Prefixes, []string{"kms-", "backup-"}) || f.Regex != "" {
		t.Errorf("prefix filter = %+v", f)
	}
	if f := subscriptionFilter([]string{"kms-", ""}); !cmp.Equal(f, esdbclient.ExcludeSystemEventsFilter()) {
		t.Errorf(`filter for "" = %+v, want the exclude-system-events filter`, f)
	}
}

func TestBackoffSchedule(t *testing.T) {
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000}
	for i, w := range want {
		if got := backoff(i); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %s, want %s", i, got, w*time.Millisecond)
		}
	}
	if got := backoff(1000); got != maxBackoff {
		t.Errorf("backoff(1000) = %s", got)
	}
}

func TestFindRetry(t *testing.T) {
	ids := []domain.EventID{testEvent("s", 0).ID, testEvent("s", 1).ID, testEvent("s", 2).ID}
	other := testEvent("s", 9).ID
	recs := func(idList ...domain.EventID) []rec {
		out := make([]rec, len(idList))
		for i, id := range idList {
			out[i] = rec{id: id, rev: uint64(10 + i), pos: uint64(1000 + 100*i)}
		}
		return out
	}
	if _, found, err := findRetry("s", ids, recs(other, other)); found || err != nil {
		t.Errorf("no ID present: found %v, %v", found, err)
	}
	if _, found, err := findRetry("s", ids, nil); found || err != nil {
		t.Errorf("empty stream: found %v, %v", found, err)
	}
	res, found, err := findRetry("s", ids, recs(other, ids[0], ids[1], ids[2], other))
	if !found || err != nil {
		t.Fatalf("all present: found %v, %v", found, err)
	}
	if res.FirstPosition != 1100 || res.LastPosition != 1300 || res.LastRevision != 13 {
		t.Errorf("all present: result %+v, want positions 1100..1300, revision 13", res)
	}
	for _, present := range [][]domain.EventID{{ids[0]}, {ids[2]}, {ids[0], ids[2]}, {ids[1], ids[1]}} {
		_, found, err := findRetry("s", ids, recs(present...))
		if found || !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("IDs %v of 3 present: found %v, %v; want ErrInvalidArgument", len(present), found, err)
		}
	}
	if !sameIDs(recs(ids...), ids) || sameIDs(recs(ids[0], ids[2], ids[1]), ids) || sameIDs(recs(ids[:2]...), ids) {
		t.Error("sameIDs")
	}
}

func TestPrepareAppend(t *testing.T) {
	l := &Log{opts: Options{MaxAppendSize: 4096}.withDefaults()}
	st := "kms-a"
	e1, e2 := testEvent(st, 1), testEvent(st, 2)
	with := func(e domain.Event, change func(*domain.Event)) domain.Event {
		change(&e)
		return e
	}
	big := with(e2, func(e *domain.Event) { e.Data = make([]byte, 4096) })
	cases := []struct {
		name   string
		stream string
		evs    []domain.Event
	}{
		{"empty batch", st, nil},
		{"empty stream name", "", []domain.Event{with(e1, func(e *domain.Event) { e.Stream = "" })}},
		{"system stream", "$kms-a", []domain.Event{with(e1, func(e *domain.Event) { e.Stream = "$kms-a" })}},
		{"stream outside the prefixes", "orders-1", []domain.Event{with(e1, func(e *domain.Event) { e.Stream = "orders-1" })}},
		{"event of another stream", st, []domain.Event{e1, with(e2, func(e *domain.Event) { e.Stream = "kms-b" })}},
		{"zero event ID", st, []domain.Event{e1, with(e2, func(e *domain.Event) { e.ID = domain.EventID{} })}},
		{"duplicate event IDs", st, []domain.Event{e1, with(e2, func(e *domain.Event) { e.ID = e1.ID })}},
		{"empty type", st, []domain.Event{with(e1, func(e *domain.Event) { e.Type = "" })}},
		{"system type", st, []domain.Event{with(e1, func(e *domain.Event) { e.Type = "$>" })}},
		{"over the maximum append size", st, []domain.Event{e1, big}},
	}
	for _, c := range cases {
		if _, err := l.prepareAppend(c.stream, c.evs); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", c.name, err)
		}
	}
	data, err := l.prepareAppend(st, []domain.Event{e1, e2})
	if err != nil || len(data) != 2 || data[1].EventID != uuid.UUID(e2.ID) {
		t.Fatalf("valid batch: %d events, %v", len(data), err)
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := (Options{}).Validate(); err != nil {
		t.Errorf("zero options: %v", err)
	}
	err := Options{StreamPrefixes: []string{"kms-", "$ce-"}, RetryWindow: -1, MaxAppendSize: -1, Timeout: -time.Second}.Validate()
	if !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("bad options: %v", err)
	}
	for _, want := range []string{"$ce-", "RetryWindow", "MaxAppendSize", "Timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not report %s: %v", want, err)
		}
	}
	if err := (Options{StreamPrefixes: []string{}}).Validate(); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("empty prefix list: %v", err)
	}
	o := Options{}.withDefaults()
	if !cmp.Equal(o.StreamPrefixes, DefaultStreamPrefixes()) || o.RetryWindow != DefaultRetryWindow ||
		o.MaxAppendSize != DefaultMaxAppendSize || o.ChunkSize != DefaultChunkSize || o.Timeout != DefaultTimeout || o.Logger == nil {
		t.Errorf("defaults: %+v", o)
	}
}
