package domain

import (
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
		b := EncodeSliceV1(events)
		if cap(b) > len(b)+2*binary.MaxVarintLen64 {
			t.Fatalf("%d events: capacity %d for %d bytes", n, cap(b), len(b))
		}
	}
}
