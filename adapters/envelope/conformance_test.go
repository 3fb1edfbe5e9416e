package envelope_test

import (
	"testing"

	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/test/conformance/keystore"
)

// TestMemStoreConformance: the in-memory key store the unit tests use keeps
// the promises of the real ones. (The suite's envelopes on two nodes run
// on the real stores too: pebblestore, natsjs, esdb.)
func TestMemStoreConformance(t *testing.T) {
	keystore.Run(t, func(*testing.T) (commands.KeyStore, commands.KeyStore) {
		s := envelope.NewMemStore()
		return s, s
	})
}
