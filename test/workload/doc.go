// Package workload drives many concurrent writers of the KMS against one
// instance, through any front (the use cases in process, or the HTTP API of
// a running server), and then reads back every write that was
// acknowledged. Tests of several packages share it, as adapters share the
// conformance suites. It never judges a front's rules beyond this: every
// write of distinct items must succeed, and every acknowledged version must
// read back as it was acknowledged.
package workload
