package pebblestore

import (
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/test/conformance/keystore"
)

func TestKeyStoreConformance(t *testing.T) {
	keystore.Run(t, func(t *testing.T) commands.KeyStore {
		return MustOpen(t, t.TempDir(), nil)
	})
}
