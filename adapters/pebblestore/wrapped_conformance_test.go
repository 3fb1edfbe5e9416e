package pebblestore

import (
	"testing"

	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/test/conformance/keystore"
)

var _ envelope.KeyStore = (*Store)(nil)

func TestKeyStoreConformance(t *testing.T) {
	keystore.Run(t, func(t *testing.T) envelope.KeyStore {
		return MustOpen(t, t.TempDir(), nil)
	})
}
