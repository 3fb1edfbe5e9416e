package pebblestore

import (
	"encoding/binary"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Key layout. Every key starts with a one-byte namespace:
//
//	0x00 "layout"                              -> layout version (1 byte)
//	'B' ref 0x00 name 0x00                     -> blob header (see blobs.go)
//	'B' ref 0x00 name 0x00 chunk (4 BE)        -> blob chunk (chunk size bytes; the last may be shorter)
//	'I' eventID (16)                           -> position of the event (8 bytes BE)
//	'K' "check"                                -> the master-key check (see keycheck.go)
//	'L' position (8 BE)                        -> event record (see codec.go)
//	'P' key                                    -> projection data (older layout; see below)
//	'Q' projection name                        -> projection position (older layout)
//	'S' uvarint(len(stream)) stream rev (8 BE) -> run: position (8 bytes BE), count (uvarint)
//	'V' ref                                    -> revision of the ref's wrapped data key (8 BE; see wrapped.go)
//	'W' ref                                    -> wrapped data key
//
// An append writes one 'L' and one 'I' key per event and a single 'S' key,
// a "run": the append's events have consecutive revisions starting at rev
// and consecutive positions starting at position. A stream's head is the
// end of its last run; the writer caches it.
//
// Positions and revisions are fixed-width big-endian so that byte order is
// numeric order. The stream name in 'S' keys is length-prefixed so that one
// stream's keys never interleave with those of a stream whose name extends
// it. Blob keys terminate ref and name with 0x00 (which neither may
// contain) for the same reason: one ref's blobs are one range that a ref
// extending its text ("bkp_X/10" for "bkp_X/1") never enters, so
// DestroyBlobs deletes them with one range deletion. The 'B' namespace was
// added without a layout change: older keys are untouched and a store
// without blobs is a valid store with blobs. (nsBlob is declared in
// blobs.go.) So were 'K' and 'V'.
//
// The read models ('P' and 'Q') live in a database of their own
// (Projections), which uses the same two namespaces; a log store of an
// older layout still holds them until OpenProjections adopts them and
// deletes them here.
const (
	nsMeta     byte = 0x00
	nsID       byte = 'I'
	nsKeyCheck byte = 'K'
	nsLog      byte = 'L'
	nsProj     byte = 'P'
	nsProjPos  byte = 'Q'
	nsStream   byte = 'S'
	nsKeyRev   byte = 'V'
	nsWrapped  byte = 'W'
	layoutV1        = 1
	logKeyLen       = 9
	idKeyLen        = 17
	positionSz      = 8
)

var layoutKey = []byte{nsMeta, 'l', 'a', 'y', 'o', 'u', 't'}

func appendLogKey(dst []byte, pos uint64) []byte {
	dst = append(dst, nsLog)
	return binary.BigEndian.AppendUint64(dst, pos)
}

func logKey(pos uint64) []byte { return appendLogKey(make([]byte, 0, logKeyLen), pos) }

func appendIDKey(dst []byte, id domain.EventID) []byte {
	dst = append(dst, nsID)
	return append(dst, id[:]...)
}

func appendStreamPrefix(dst []byte, stream string) []byte {
	dst = append(dst, nsStream)
	dst = binary.AppendUvarint(dst, uint64(len(stream)))
	return append(dst, stream...)
}

func appendStreamKey(dst []byte, stream string, rev uint64) []byte {
	return binary.BigEndian.AppendUint64(appendStreamPrefix(dst, stream), rev)
}

func projKey(key []byte) []byte {
	k := make([]byte, 0, 1+len(key))
	k = append(k, nsProj)
	return append(k, key...)
}

func projPosKey(name string) []byte {
	k := make([]byte, 0, 1+len(name))
	k = append(k, nsProjPos)
	return append(k, name...)
}

func wrappedKey(ref string) []byte {
	k := make([]byte, 0, 1+len(ref))
	k = append(k, nsWrapped)
	return append(k, ref...)
}

func wrappedRevKey(ref string) []byte {
	k := make([]byte, 0, 1+len(ref))
	k = append(k, nsKeyRev)
	return append(k, ref...)
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil when there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func putUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

func getUint64(b []byte) (uint64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

func putPos(dst []byte, v uint64) { binary.BigEndian.PutUint64(dst, v) }

// appendRun encodes a stream-index value: the position of the run's first
// event and the number of events.
func appendRun(dst []byte, first uint64, n int) []byte {
	dst = binary.BigEndian.AppendUint64(dst, first)
	return binary.AppendUvarint(dst, uint64(n))
}

// decodeRun decodes a stream-index value.
func decodeRun(v []byte) (first, n uint64, ok bool) {
	if len(v) < 9 {
		return 0, 0, false
	}
	first = binary.BigEndian.Uint64(v)
	n, k := binary.Uvarint(v[8:])
	if k <= 0 || 8+k != len(v) || n == 0 {
		return 0, 0, false
	}
	return first, n, true
}
