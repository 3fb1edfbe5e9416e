// Package fuzzcorpus writes and checks the committed seed corpora of fuzz
// targets that take one []byte (testdata/fuzz/<target>, in the "go test fuzz
// v1" encoding that go test reads, with -fuzz or without), so that each
// corpus is made by code, from the current format, and a change of format
// that forgets its corpus fails a test. It never runs a fuzz target and never
// judges what a seed holds (the package under test does). Production code
// never imports it.
package fuzzcorpus
