// Package clock provides the Clock port: the system clock for production,
// and (for --dev and tests) a manual clock that moves only when told. It
// never schedules work itself.
package clock
