package commands_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// TestIngestRefusesEventsTheReadModelsCannotApply: with the KMS read model
// wired in, an event that does not follow from the state its predecessor
// left (a rotation of a missing key or out of order, a second create, a
// deletion of a missing secret) is refused and never reaches the log, where
// it would stop every read model; a sound event after them is taken.
func TestIngestRefusesEventsTheReadModelsCannotApply(t *testing.T) {
	ctx := context.Background()
	st, err := pebblestore.Open(filepath.Join(t.TempDir(), "db"), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	proj, err := pebblestore.OpenProjections(filepath.Join(t.TempDir(), "projections"), pebblestore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proj.Close() })
	kp := &commands.Projector{Name: kmsstate.Name, Log: st, Store: proj, Apply: commands.Pure(kmsstate.Apply)}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- kp.Run(pctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("kms-state projector: %v", err)
		}
	})
	ing := &commands.KMSIngest{Log: st, Streams: st, State: proj, Applied: kp}
	acct := domain.AccountID("acct_01KJMBQED8040G2081040G2081")
	in := domain.InstanceID("kms_01KJMBQJA80M2GA1850M2GA185")
	history := externalHistory(t, 7, acct, in)[:4] // created, key created and rotated, secret created
	for _, e := range history {
		if err := ing.Ingest(ctx, mustPublic(t, e)); err != nil {
			t.Fatalf("ingest %s: %v", e.Type, err)
		}
	}
	keyCreated, err := history[1].Decode()
	if err != nil {
		t.Fatal(err)
	}
	key := keyCreated.(*domain.KeyCreated).Key
	next := func(d domain.EventData) domain.Event {
		e := history[3]
		e.ID = domain.EventID(ulidAt(t, len(history)+50))
		e.Revision, e.Type, e.Data = uint64(len(history)), d.EventType(), domain.EncodeData(d)
		e.OccurredAt = e.OccurredAt.Add(time.Minute)
		return e
	}
	for name, d := range map[string]domain.EventData{
		"a rotation of a missing key": &domain.KeyRotated{Key: "key_01KJMBQGBR0C1G60R30C1G60ZZ", Version: 2, Material: domain.Sealed("m")},
		"a version out of order":      &domain.KeyRotated{Key: key, Version: 4, Material: domain.Sealed("m")},
		"a second create of a key":    &domain.KeyCreated{Key: key, Spec: domain.KeySpecAES256, Material: domain.Sealed("m")},
		"a second create of a secret": &domain.SecretCreated{Name: "db-password", Key: key, Value: []byte("c")},
		"a deletion of a missing one": &domain.SecretDeleted{Name: "no-such-secret"},
		"a rotation of a missing one": &domain.SecretRotated{Name: "no-such-secret", Version: 2, Key: key, Value: []byte("c")},
	} {
		err := ing.Ingest(ctx, mustPublic(t, next(d)))
		if !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if got, err := st.ReadStream(ctx, domain.KMSStream(in), 0, false, 100); err != nil || len(got) != len(history) {
		t.Fatalf("the log holds %d events of the instance (%v), want %d: a refused event got in", len(got), err, len(history))
	}
	if err := ing.Ingest(ctx, mustPublic(t, next(&domain.KeyRotated{Key: key, Version: 3, Material: domain.Sealed("m3")}))); err != nil {
		t.Fatalf("a sound rotation after the refusals: %v", err)
	}
}

func mustPublic(t testing.TB, e domain.Event) publicevent.Event {
	t.Helper()
	pe, err := publicevent.FromEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	return pe
}

// ulidAt is a fixed event ID, distinct for each i.
func ulidAt(t *testing.T, i int) ulid.ULID {
	t.Helper()
	var u ulid.ULID
	_ = u.SetTime(ulid.Timestamp(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)) + uint64(i))
	_ = u.SetEntropy([]byte{0xEE, 0, 0, 0, 0, 0, 0, 0, 0, byte(i)})
	return u
}
