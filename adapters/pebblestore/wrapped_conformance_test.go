package pebblestore

import (
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/test/conformance/keystore"
)

func TestKeyStoreConformance(t *testing.T) {
	// One process holds a Pebble store: the suite's two nodes are two
	// envelopes on one handle.
	keystore.Run(t, func(t *testing.T) (commands.KeyStore, commands.KeyStore) {
		s := MustOpen(t, t.TempDir(), nil)
		return s, s
	})
}
