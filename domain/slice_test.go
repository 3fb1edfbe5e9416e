package domain

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// randomSliceEvents returns n events of varied sizes (payloads of 0 to
// 1,000 bytes, a few of 64 KiB).
func randomSliceEvents(rng *rand.Rand, n int) []Event {
	out := make([]Event, n)
	for i := range out {
		size := rng.IntN(1000)
		if rng.IntN(200) == 0 {
			size = 64 << 10
		}
		data := make([]byte, size)
		for j := range min(size, 64) {
			data[j] = byte(rng.Uint32())
		}
		e := Event{Stream: "kms-inst_1", Revision: rng.Uint64N(1 << uint(rng.IntN(64))), Position: uint64(i),
			Type: "KeyRotated", Schema: SchemaVersion, Account: "acct_1", Region: "eu-west-1",
			Instance: InstanceID(fmt.Sprintf("inst_%d", rng.IntN(1000))), Data: data}
		if rng.IntN(10) > 0 {
			e.OccurredAt = time.Unix(0, rng.Int64()-rng.Int64()).UTC() // before 1970 too
		}
		for j := range e.ID {
			e.ID[j] = byte(rng.Uint32())
		}
		out[i] = e
	}
	return out
}

func TestSliceWriterMatchesEncodeSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 127, 128, 129, 1000, 5000} {
		events := randomSliceEvents(rng, n)
		want := EncodeSlice(events)
		// The count announced: right, too many, too few (the head of a
		// slice of 127 or 128 events changes size).
		for _, count := range []int{n, n + 1, max(n-1, 0), 128, 127, 1 << 40} {
			w := NewSliceWriter(uint64(count))
			for i := range events {
				w.Add(&events[i])
			}
			if w.Events() != uint64(n) {
				t.Fatalf("%d events announced as %d: Events %d", n, count, w.Events())
			}
			got := w.Bytes()
			if !bytes.Equal(got, want) {
				t.Fatalf("%d events announced as %d: %d bytes differ from EncodeSlice's %d", n, count, len(got), len(want))
			}
			if again := w.Bytes(); !bytes.Equal(again, want) {
				t.Fatalf("%d events announced as %d: a second Bytes differs", n, count)
			}
			if back, err := DecodeSlice(got); err != nil || len(back) != n {
				t.Fatalf("%d events announced as %d: decode: %d events, %v", n, count, len(back), err)
			}
			// A count that overstates reserves at most 16 times what the
			// events take (or 4 MiB).
			if c := cap(got); c > max(16*len(want), sliceReserveMin) {
				t.Fatalf("%d events announced as %d: capacity %d for %d bytes", n, count, c, len(want))
			}
		}
	}
}

func TestSliceWriterSizesItsBufferOnce(t *testing.T) {
	// Events of about the same size: the buffer is sized for the first
	// sliceSample events, then for all, and never grows again, with about
	// 1/16 to spare.
	var events []Event
	for i := range 5000 {
		events = append(events, Event{Stream: "kms-inst_1", Revision: uint64(i), Type: "KeyCreated",
			Account: "acct_1", Region: "eu-west-1", Instance: "inst_1", Data: make([]byte, 90+i%20)})
	}
	w := NewSliceWriter(uint64(len(events)))
	grew := 0
	for i := range events {
		c := cap(w.w.B)
		w.Add(&events[i])
		if cap(w.w.B) != c {
			grew++
		}
	}
	b := w.Bytes()
	if grew != 2 || cap(b) > len(b)+len(b)/16+200 {
		t.Fatalf("the buffer grew %d times, to %d bytes for %d", grew, cap(b), len(b))
	}
}

func TestEncodeSliceSizesItsBuffer(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 300} {
		events := randomSliceEvents(rng, n)
		for i := range events {
			w := wire.Writer{}
			encodeEvent(&w, &events[i])
			if got := eventSize(&events[i]); got != len(w.B) {
				t.Fatalf("eventSize %d, encoded %d bytes", got, len(w.B))
			}
		}
		b := EncodeSlice(events)
		if cap(b) > len(b)+2*binary.MaxVarintLen64 {
			t.Fatalf("%d events: capacity %d for %d bytes", n, cap(b), len(b))
		}
	}
}
