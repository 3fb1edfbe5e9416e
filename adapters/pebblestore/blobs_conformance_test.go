package pebblestore

import (
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/test/conformance/blobstore"
)

func TestBlobStoreConformance(t *testing.T) {
	blobstore.Run(t, func(t *testing.T) commands.BlobStore {
		return MustOpen(t, t.TempDir(), nil)
	})
}
