package domain

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// DevClockStream holds the manual clock that the engine nodes of a --dev
// deployment share (--clock manual with a shared event log): each event
// moves it forward. It has no public form and no read model uses it.
const DevClockStream = "devclock"

// TypeDevClockSet is the type of DevClockSet.
const TypeDevClockSet = "DevClockSet"

// DevClockSet moves the shared development clock to At.
type DevClockSet struct{ At time.Time }

func (DevClockSet) EventType() string        { return TypeDevClockSet }
func (e *DevClockSet) encode(w *wire.Writer) { w.Time(e.At) }
func (e *DevClockSet) decode(r *wire.Reader) { e.At = r.Time() }
