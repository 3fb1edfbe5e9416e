// Package chunkread is the reading side that the blob stores share: an
// io.ReadCloser over a blob that each store loads a chunk (or a batch of
// chunks) at a time, checking as it goes, so that a blob is never whole in
// memory. The store decides what a chunk is and when the blob is whole and
// checked; this package only serves Read from the chunks and keeps the
// first error. It does no I/O itself.
package chunkread
