package envelope

import "github.com/kmsbackup/kmsbackup/commands"

// NewMemStore exposes the in-memory test key store to the external tests,
// which run the key-store conformance suite on it.
func NewMemStore() commands.KeyStore { return newMemStore() }
