package clock

import (
	"sync"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
)

// System is the real clock.
type System struct{}

var _ commands.Clock = System{}

// Now returns the current time in UTC.
func (System) Now() time.Time { return time.Now().UTC() }

// Manual is a clock that moves only when Set or Advance is called. It is safe
// for concurrent use.
type Manual struct {
	mu  sync.Mutex
	now time.Time
}

var _ commands.Clock = (*Manual)(nil)

// NewManual returns a manual clock showing start.
func NewManual(start time.Time) *Manual { return &Manual{now: start.UTC()} }

// Now returns the clock's time.
func (m *Manual) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// Set moves the clock to t; a t in the past is ignored (the clock never
// goes back).
func (m *Manual) Set(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.After(m.now) {
		m.now = t.UTC()
	}
}

// Advance moves the clock forward by d (d must not be negative).
func (m *Manual) Advance(d time.Duration) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d > 0 {
		m.now = m.now.Add(d)
	}
	return m.now
}
