// Package wire is the compact, versioned binary encoding used for events and
// projection records inside the log and the local stores. It is a tiny
// append-only writer and a bounds-checked reader; it never panics on hostile
// input and never allocates more than the input it was given.
package wire
