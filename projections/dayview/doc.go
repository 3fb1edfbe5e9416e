// Package dayview is the state layout of restores and bases
// (docs/restore-engine.md): every key or secret of a state with its row
// and every version, one record per key, in an order that one forward
// iteration reads item by item. A base's tables hold exactly this layout,
// so a base is written by iterating a state and loaded by ingesting it; a
// state is replayed into it from slices by Change.Apply, whose writes are
// blind (Set, DeleteRange of an item), in one of two modes: the state at an
// instant, or the items of a whole day as they last stood within it.
// ItemReader reads a state back item by item; Digest digests it the same
// way whichever way it was made.
//
// It is pure: it never reads the clock, a store or the network, never
// opens sealed material, and never logs. Records hold sealed key material
// and KMS ciphertexts: only restores read them.
package dayview
