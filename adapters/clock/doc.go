// Package clock provides the Clock port: the system clock for production,
// and (for --dev and tests) a manual clock that moves only when told, kept
// in the event log (domain.DevClockStream) so that it never goes back
// across restarts and is shared by the nodes of a shared log. It never
// schedules work itself.
package clock
