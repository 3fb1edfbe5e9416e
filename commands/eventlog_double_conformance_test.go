package commands_test

import (
	"testing"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/test/conformance/eventlog"
)

// The double must keep the port's promises, or the tests built on it prove
// nothing.
func TestMemLogConformance(t *testing.T) {
	eventlog.Run(t, func(*testing.T) commands.EventLog { return newMemLog() },
		eventlog.Features{ContiguousPositions: true})
}
