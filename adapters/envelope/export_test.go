package envelope

// NewMemStore exposes the in-memory test key store to the external tests,
// which run the key-store conformance suite on it.
func NewMemStore() KeyStore { return newMemStore() }
