package ids

import (
	"crypto/rand"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/commands"
)

// Random draws ULIDs whose time part comes from Clock and whose 80 random
// bits come from crypto/rand. Safe for concurrent use.
type Random struct {
	Clock commands.Clock
}

var _ commands.IDSource = Random{}

// NewULID returns a fresh ULID.
func (r Random) NewULID() ulid.ULID {
	return ulid.MustNew(ulid.Timestamp(r.Clock.Now()), rand.Reader)
}
