// Package blobformat is the one stored form of a chunked blob that the
// blob stores share (pebblestore, esdb): a versioned header (flags, size,
// chunk size, chunk count, SHA-256 of the whole blob), the cutting of a
// blob into chunks of the header's chunk size, and the check of the chunks
// read back (Verifier): each of its expected length, none missing, none
// beyond the last, and the whole with the recorded SHA-256. Headers are
// written in version 2 (layout in Header); Decode also reads the two
// version-1 layouts that earlier releases stored under the same version
// number, pebblestore's without a flags byte and esdb's with one, and the
// caller names the one its store may hold (Legacy), so that neither store
// accepts a layout it never wrote. It never does I/O, never decides where a
// header or a chunk is kept or how a blob is written (the stores do, and
// setting FlagAtomic is theirs), and never puts blob bytes or digests into
// its errors: only sizes, counts and chunk indexes.
package blobformat
