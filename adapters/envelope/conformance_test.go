package envelope_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/conformance/keystore"
)

// TestMemStoreConformance: the in-memory key store the unit tests use keeps
// the promises of the real ones.
func TestMemStoreConformance(t *testing.T) {
	keystore.Run(t, func(*testing.T) commands.KeyStore { return envelope.NewMemStore() })
}

// TestCacheTTLSeesAnotherEnginesDestroy: two envelopes share one key store
// (a real one), as two engine nodes do; once one destroys a data key, the
// other stops using it within CacheTTL.
func TestCacheTTLSeesAnotherEnginesDestroy(t *testing.T) {
	ctx := context.Background()
	store, err := pebblestore.Open(filepath.Join(t.TempDir(), "db"), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	master := make([]byte, envelope.MasterKeySize)
	a, err := envelope.New(master, store)
	if err != nil {
		t.Fatal(err)
	}
	b, err := envelope.New(master, store)
	if err != nil {
		t.Fatal(err)
	}
	b.CacheTTL = 50 * time.Millisecond
	if err := a.CreateDataKey(ctx, "kms_1"); err != nil {
		t.Fatal(err)
	}
	aad := []byte("aad")
	sealed, err := a.Seal(ctx, "kms_1", domain.Plaintext("v"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(ctx, "kms_1", sealed, aad); err != nil {
		t.Fatalf("b opens a's value: %v", err)
	}
	if err := a.DestroyDataKey(ctx, "kms_1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if _, err := b.Open(ctx, "kms_1", sealed, aad); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("b after a destroyed the key and the TTL passed: %v, want ErrNotFound", err)
	}
	if _, err := b.Seal(ctx, "kms_1", domain.Plaintext("v"), aad); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("b seals under a destroyed key: %v, want ErrNotFound", err)
	}
}
