package commands_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// externalHistory is the stream of one KMS instance as an external KMS
// wrote it (revisions from 0, positions of its own log from 1000): the
// instance created, a key created and rotated, a secret created, rotated
// and deleted, the key deleted. seed keeps the IDs of two histories apart.
func externalHistory(tb testing.TB, seed byte, a domain.AccountID, in domain.InstanceID) []domain.Event {
	tb.Helper()
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	id := func(i int) ulid.ULID {
		var u ulid.ULID
		_ = u.SetTime(ulid.Timestamp(base) + uint64(i))
		_ = u.SetEntropy([]byte{seed, 0, 0, 0, 0, 0, 0, 0, 0, byte(i)})
		return u
	}
	key := domain.NewKeyID(id(100))
	data := []domain.EventData{
		&domain.InstanceCreated{Instance: in, Region: "cn-hangzhou", KeyQuota: 10, SecretQuota: 10},
		&domain.KeyCreated{Key: key, Description: "orders", Spec: domain.KeySpecAES256, Material: domain.Sealed("sealed-v1-0123456789abcdef")},
		&domain.KeyRotated{Key: key, Version: 2, Material: domain.Sealed("sealed-v2-0123456789abcdef")},
		&domain.SecretCreated{Name: "db-password", Key: key, Value: []byte("kms-ciphertext-1")},
		&domain.SecretRotated{Name: "db-password", Version: 2, Key: key, Value: []byte("kms-ciphertext-2")},
		&domain.SecretDeleted{Name: "db-password"},
		&domain.KeyDeleted{Key: key},
	}
	out := make([]domain.Event, len(data))
	for i, d := range data {
		out[i] = domain.Event{ID: id(i + 1), Stream: domain.KMSStream(in), Revision: uint64(i), Position: uint64(1000 + i),
			Type: d.EventType(), Schema: domain.SchemaVersion, OccurredAt: base.Add(time.Duration(i) * time.Minute),
			Account: a, Region: "cn-hangzhou", Instance: in, Data: domain.EncodeData(d)}
	}
	return out
}

func newIngest(log *memLog) *commands.KMSIngest { return &commands.KMSIngest{Log: log, Streams: log} }

// logged is what log holds of stream, with the positions the log gave.
func logged(tb testing.TB, log *memLog, stream string) []domain.Event {
	tb.Helper()
	events, err := log.ReadStream(context.Background(), stream, 0, false, 100)
	if err != nil {
		tb.Fatal(err)
	}
	return events
}

// withoutPositions drops what only the external log knows.
func withoutPositions(events []domain.Event) []domain.Event {
	out := make([]domain.Event, len(events))
	for i, e := range events {
		e.Position = 0
		out[i] = e
	}
	return out
}

func TestIngestAppendsAtThePublishedRevisions(t *testing.T) {
	log := newMemLog()
	ing := newIngest(log)
	history := externalHistory(t, 1, acctA, kmsA)
	other := externalHistory(t, 2, acctB, kmsB)
	for i := range history {
		// Two instances interleaved, every event delivered twice.
		for _, e := range []domain.Event{history[i], other[i], history[i], other[i]} {
			if err := ing.Ingest(t.Context(), toPublic(t, e)[0]); err != nil {
				t.Fatalf("ingest %s at revision %d: %v", e.Type, e.Revision, err)
			}
		}
	}
	for _, h := range [][]domain.Event{history, other} {
		got := logged(t, log, h[0].Stream)
		if diff := cmp.Diff(withoutPositions(h), withoutPositions(got)); diff != "" {
			t.Errorf("stream %s (-published +logged):\n%s", h[0].Stream, diff)
		}
	}
	if head, _ := log.Head(t.Context()); head != uint64(2*len(history)) {
		t.Errorf("log head %d, want %d: duplicates were appended", head, 2*len(history))
	}
}

func TestIngestOutOfOrderFailsUntilThePredecessorArrives(t *testing.T) {
	log := newMemLog()
	ing := newIngest(log)
	history := externalHistory(t, 1, acctA, kmsA)
	pub := toPublic(t, history...)

	for _, i := range []int{1, 2} { // before the stream exists
		if err := ing.Ingest(t.Context(), pub[i]); !errors.Is(err, domain.ErrWrongExpectedRevision) {
			t.Fatalf("revision %d before revision 0 = %v, want domain.ErrWrongExpectedRevision", i, err)
		}
	}
	if err := ing.Ingest(t.Context(), pub[0]); err != nil {
		t.Fatal(err)
	}
	err := ing.Ingest(t.Context(), pub[2])
	if !errors.Is(err, domain.ErrWrongExpectedRevision) || !strings.Contains(err.Error(), "predecessor") {
		t.Fatalf("revision 2 before revision 1 = %v, want domain.ErrWrongExpectedRevision naming the predecessor", err)
	}
	// Redelivered later, in any order, everything lands.
	for _, i := range []int{6, 5, 4, 3, 2, 1, 2, 3, 4, 5, 6} {
		err := ing.Ingest(t.Context(), pub[i])
		if err != nil && !errors.Is(err, domain.ErrWrongExpectedRevision) {
			t.Fatalf("revision %d: %v", i, err)
		}
	}
	if diff := cmp.Diff(withoutPositions(history), withoutPositions(logged(t, log, history[0].Stream))); diff != "" {
		t.Errorf("stream (-published +logged):\n%s", diff)
	}
}

func TestIngestRefuses(t *testing.T) {
	history := externalHistory(t, 1, acctA, kmsA)
	pub := toPublic(t, history...)
	// setUp returns a log holding the first n events of history.
	setUp := func(n int) (*memLog, *commands.KMSIngest) {
		log := newMemLog()
		ing := newIngest(log)
		for _, pe := range pub[:n] {
			if err := ing.Ingest(t.Context(), pe); err != nil {
				t.Fatal(err)
			}
		}
		return log, ing
	}
	with := func(i int, fn func(e *domain.Event)) publicevent.Event {
		e := history[i]
		fn(&e)
		return toPublic(t, e)[0]
	}
	backupEvent := func() publicevent.Event {
		d := &domain.BackupExtended{ViewableDays: 30}
		e := domain.Event{ID: history[0].ID, Stream: domain.BackupStream(domain.NewBackupID(history[0].ID)), Type: d.EventType(),
			Schema: domain.SchemaVersion, OccurredAt: history[0].OccurredAt, Account: acctA, Region: "cn-hangzhou", Data: domain.EncodeData(d)}
		return toPublic(t, e)[0]
	}()

	tests := []struct {
		name     string
		logged   int // events of history in the log first
		in       publicevent.Event
		want     error
		mentions string
	}{
		{"not a KMS event", 0, backupEvent, domain.ErrInvalidArgument, "not an event of a KMS instance's stream"},
		{"revision 0 that is not InstanceCreated", 0, with(1, func(e *domain.Event) { e.Revision = 0 }),
			domain.ErrInvalidArgument, "starts with InstanceCreated"},
		{"InstanceCreated at revision 3", 3, with(0, func(e *domain.Event) { e.Revision = 3 }),
			domain.ErrInvalidArgument, "starts with InstanceCreated"},
		{"another account", 1, with(1, func(e *domain.Event) { e.Account = acctB }),
			domain.ErrInvalidArgument, "differ from the stream's"},
		{"another region", 1, with(1, func(e *domain.Event) { e.Region = "cn-shanghai" }),
			domain.ErrInvalidArgument, "differ from the stream's"},
		{"an event already in the log at another revision", 3, with(1, func(e *domain.Event) { e.Revision = 3 }),
			domain.ErrInvalidArgument, "already in the log at revision 1"},
		{"another event at this revision", 3, with(2, func(e *domain.Event) {
			e.ID = history[6].ID // a different event claiming revision 2
		}), domain.ErrWrongExpectedRevision, "diverged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, ing := setUp(tt.logged)
			err := ing.Ingest(t.Context(), tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Ingest = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.mentions) {
				t.Errorf("error %q does not mention %q", err, tt.mentions)
			}
			if head, _ := log.Head(t.Context()); head != uint64(tt.logged) {
				t.Errorf("the log moved to %d", head)
			}
		})
	}
}

func TestIngestErrors(t *testing.T) {
	pub := toPublic(t, externalHistory(t, 1, acctA, kmsA)...)
	if err := (&commands.KMSIngest{}).Ingest(t.Context(), pub[0]); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Errorf("Ingest without a log = %v, want domain.ErrInvalidArgument", err)
	}

	log := newMemLog()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := newIngest(log).Ingest(ctx, pub[0]); !errors.Is(err, context.Canceled) {
		t.Errorf("Ingest with a cancelled context = %v, want context.Canceled", err)
	}

	_ = log.Close()
	err := newIngest(log).Ingest(t.Context(), pub[0])
	if !isUnavailable(err) {
		t.Errorf("Ingest into a closed log = %v, want domain.ErrUnavailable", err)
	}
	if err := (&commands.KMSIngest{Log: log}).Ingest(t.Context(), pub[1]); !isUnavailable(err) {
		t.Errorf("Ingest into a closed log without Streams = %v, want domain.ErrUnavailable", err)
	}
}
