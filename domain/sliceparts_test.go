package domain

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// sameStream gives events one stream and header, and growing revisions.
func sameStream(rng *rand.Rand, events []Event) []Event {
	rev := rng.Uint64N(1000)
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := range events {
		e := &events[i]
		e.Stream, e.Account, e.Region, e.Instance = "kms-kms_1", "acct_1", "cn-hangzhou", "kms_1"
		rev += 1 + rng.Uint64N(3)
		e.Revision, e.Position = rev, 0
		switch rng.IntN(4) {
		case 0:
			at = at.Add(time.Duration(rng.Int64N(int64(time.Hour))))
		case 1:
			at = at.Add(-time.Duration(rng.Int64N(int64(time.Second)))) // not always in time order
		}
		if rng.IntN(20) > 0 {
			e.OccurredAt = at
		}
		e.Type = []string{TypeKeyCreated, TypeKeyRotated, TypeSecretDeleted, TypeKeyRestored, "SomethingNew"}[rng.IntN(5)]
	}
	return events
}

// encodeParts encodes events into parts of at most limit bytes.
func encodeParts(t *testing.T, events []Event, limit int) (parts [][]byte, meta []SlicePart) {
	t.Helper()
	if len(events) == 0 {
		return nil, nil
	}
	enc := NewSliceEncoder(HeaderOf(&events[0]), limit)
	flush := func() {
		data, n, from, next := enc.Part()
		parts = append(parts, bytes.Clone(data))
		meta = append(meta, SlicePart{Events: n, From: from, Next: next})
	}
	for i := range events {
		if !enc.Fits(&events[i]) {
			flush()
		}
		if err := enc.Add(&events[i]); err != nil {
			t.Fatal(err)
		}
	}
	flush()
	return parts, meta
}

func TestSlicePartsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 2, 50, 700} {
		for _, limit := range []int{64, 4 << 10, 64 << 10, MaxSlicePart} {
			events := sameStream(rng, randomSliceEvents(rng, n))
			parts, meta := encodeParts(t, events, limit)
			var got []Event
			for i, p := range parts {
				if len(p) > limit && meta[i].Events > 1 {
					t.Fatalf("%d events, limit %d: part %d has %d bytes and %d events", n, limit, i, len(p), meta[i].Events)
				}
				evs, err := DecodeSliceAll(p)
				if err != nil {
					t.Fatalf("part %d: %v", i, err)
				}
				if uint64(len(evs)) != meta[i].Events || evs[0].Revision != meta[i].From || evs[len(evs)-1].Revision+1 != meta[i].Next {
					t.Fatalf("part %d: %d events [%d, %d], meta %+v", i, len(evs), evs[0].Revision, evs[len(evs)-1].Revision, meta[i])
				}
				got = append(got, evs...)
			}
			for i := range got {
				if len(events[i].Data) == 0 {
					events[i].Data = nil
				}
				if !reflect.DeepEqual(got[i], events[i]) {
					t.Fatalf("%d events, limit %d: event %d is %+v, want %+v", n, limit, i, got[i], events[i])
				}
			}
			if len(got) != n {
				t.Fatalf("%d events, limit %d: %d decoded", n, limit, len(got))
			}
		}
	}
}

// TestSliceReaderReadsV1: a slice written by the first generation decodes
// through the same reader, every envelope field kept.
func TestSliceReaderReadsV1(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	for _, n := range []int{0, 1, 300} {
		events := randomSliceEvents(rng, n)
		got, err := DecodeSliceAll(EncodeSliceV1(events))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n || (n > 0 && !reflect.DeepEqual(got, events)) {
			t.Fatalf("%d events of codec v1 decode as %d, or differ", n, len(got))
		}
	}
}

func TestSliceEncoderRefuses(t *testing.T) {
	events := sameStream(rand.New(rand.NewPCG(1, 1)), make([]Event, 2))
	enc := NewSliceEncoder(HeaderOf(&events[0]), MaxSlicePart)
	if err := enc.Add(&events[1]); err != nil {
		t.Fatal(err)
	}
	if err := enc.Add(&events[0]); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("an earlier revision: %v", err)
	}
	other := events[1]
	other.Revision += 10
	other.Stream = "kms-kms_2"
	if err := enc.Add(&other); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("another stream: %v", err)
	}
	if enc.Events() != 1 {
		t.Fatalf("%d events after two refusals, want 1", enc.Events())
	}
}

// TestSlicePartDamage: a damaged part never decodes to a panic; an unknown
// version, a truncated header or record, or an unknown type code is
// corruption. (A part cut between two records decodes as the events before
// the cut: the part's digest and its count of events, both in the
// checkpoint, are what catch that.)
func TestSlicePartDamage(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	events := sameStream(rng, randomSliceEvents(rng, 20))
	for i := range events {
		events[i].Type = TypeKeyRotated
		events[i].Data = events[i].Data[:min(len(events[i].Data), 40)]
	}
	parts, _ := encodeParts(t, events, MaxSlicePart)
	part := parts[0]
	for cut := range len(part) - 1 {
		got, err := DecodeSliceAll(part[:cut])
		switch {
		case err != nil && !IsCorruption(err):
			t.Fatalf("cut at %d: %v, want corruption", cut, err)
		case err == nil && len(got) >= len(events):
			t.Fatalf("cut at %d decodes all %d events", cut, len(got))
		case err == nil && len(got) > 0 && got[len(got)-1].ID != events[len(got)-1].ID:
			t.Fatalf("cut at %d decodes events that are not a prefix", cut)
		}
	}
	for i := range part {
		bad := bytes.Clone(part)
		bad[i] ^= 0xff
		if _, err := DecodeSliceAll(bad); err != nil && !IsCorruption(err) {
			t.Fatalf("flip at %d: %v, want corruption", i, err)
		}
	}
	bad := bytes.Clone(part)
	bad[0] = 9
	if _, err := DecodeSliceAll(bad); !IsCorruption(err) {
		t.Fatalf("version 9: %v", err)
	}
}

func TestCheckpointCodecV2(t *testing.T) {
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	v1 := &BackupCheckpointed{Generation: 1, Seq: 7, Full: true, At: at, Day: "2026-05-01", From: 3, Next: 9,
		Slice: "slice-7", SliceDigest: [32]byte{1}, PrevDigest: [32]byte{2}, Digest: [32]byte{3}}
	enc := EncodeData(v1)
	// What the first generation wrote, field by field: nothing follows.
	want := append([]byte{1, 7, 1}, enc[3:]...)
	if !bytes.Equal(enc, want) || enc[len(enc)-32] != 3 {
		t.Fatalf("a checkpoint without parts encodes differently: %x", enc)
	}
	for _, c := range []*BackupCheckpointed{
		v1,
		{Generation: 1, Seq: 1, Full: true, At: at, Day: "2026-05-01", Next: 9, InBase: true},
		{Generation: 0, Seq: 8, At: at, Day: "2026-05-01", From: 9, Next: 20, Parts: []SlicePart{
			{Name: "a", Digest: [32]byte{4}, Events: 5, From: 9, Next: 14}, {Name: "b", Events: 6, From: 14, Next: 20}}},
	} {
		d, err := DecodeData(TypeBackupCheckpointed, SchemaVersion, EncodeData(c))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(d, c) {
			t.Fatalf("round trip: %+v, want %+v", d, c)
		}
	}
	// An extension this version does not know is corruption.
	bad := append(bytes.Clone(enc), 3, 0, 0)
	if _, err := DecodeData(TypeBackupCheckpointed, SchemaVersion, bad); !IsCorruption(err) {
		t.Fatalf("unknown extension: %v", err)
	}
	parts := (&BackupCheckpointed{From: 3, Next: 9, Slice: "s", SliceDigest: [32]byte{7}}).SliceParts()
	if len(parts) != 1 || parts[0] != (SlicePart{Name: "s", Digest: [32]byte{7}, From: 3, Next: 9}) {
		t.Fatalf("one blob as parts: %+v", parts)
	}
}
