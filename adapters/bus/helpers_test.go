package bus_test

import (
	"context"
	"fmt"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

var (
	acctA = domain.NewAccountID(ulid.MustParse("01HQZ5J8Q4V6D3N2M1K0JHGF0A"))
	acctB = domain.NewAccountID(ulid.MustParse("01HQZ5J8Q4V6D3N2M1K0JHGF0B"))
	kmsA  = domain.NewInstanceID(ulid.MustParse("01HQZ5J8Q4V6D3N2M1K0JHGF1A"))
	kmsB  = domain.NewInstanceID(ulid.MustParse("01HQZ5J8Q4V6D3N2M1K0JHGF1B"))
	base  = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
)

// writer appends events the way the KMS commands do: one stream per KMS
// instance, deterministic IDs. Safe for concurrent use.
type writer struct {
	tb  testing.TB
	log *pebblestore.Store
	mu  sync.Mutex
	n   int
}

// positions returns a real projection store, for a publisher's position.
func (w *writer) positions() *pebblestore.Projections {
	w.tb.Helper()
	p, err := pebblestore.OpenProjections(w.tb.TempDir(), pebblestore.Options{}, nil)
	if err != nil {
		w.tb.Fatal(err)
	}
	w.tb.Cleanup(func() { _ = p.Close() })
	return p
}

// newWriter writes to a real event log: the Pebble store on a temporary
// directory.
func newWriter(tb testing.TB) *writer {
	st, err := pebblestore.Open(tb.TempDir(), pebblestore.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return &writer{tb: tb, log: st}
}

// appendKey appends one KeyCreated event of account a and returns it as
// appended.
func (w *writer) appendKey(a domain.AccountID) domain.Event {
	w.mu.Lock()
	w.n++
	n := w.n
	w.mu.Unlock()
	in := kmsB
	if a == acctA {
		in = kmsA
	}
	var id ulid.ULID
	_ = id.SetTime(ulid.Timestamp(base) + uint64(n))
	_ = id.SetEntropy([]byte{0, 0, 0, 0, 0, 0, 0, 0, byte(n >> 8), byte(n)})
	d := &domain.KeyCreated{Key: domain.NewKeyID(id), Description: fmt.Sprintf("key %d", n),
		Spec: domain.KeySpecAES256, Material: domain.Sealed(fmt.Sprintf("sealed-%d-0123456789abcdef", n))}
	e := domain.Event{ID: id, Stream: domain.KMSStream(in), Type: d.EventType(), Schema: domain.SchemaVersion,
		OccurredAt: base.Add(time.Duration(n) * time.Second), Account: a, Region: "cn-hangzhou",
		Instance: in, Data: domain.EncodeData(d)}
	res, err := w.log.Append(context.Background(), e.Stream, domain.ExpectAny, []domain.Event{e})
	if err != nil {
		w.tb.Errorf("append: %v", err)
	}
	e.Position, e.Revision = res.LastPosition, res.LastRevision
	return e
}

func (w *writer) appendKeys(accounts ...domain.AccountID) []domain.Event {
	out := make([]domain.Event, len(accounts))
	for i, a := range accounts {
		out[i] = w.appendKey(a)
	}
	return out
}

// public converts log events to their public form.
func public(tb testing.TB, events ...domain.Event) []publicevent.Event {
	tb.Helper()
	out := make([]publicevent.Event, len(events))
	for i, e := range events {
		pe, err := publicevent.FromEvent(e)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = pe
	}
	return out
}

func positions(events []publicevent.Event) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.Position
	}
	return out
}
