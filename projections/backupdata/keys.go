package backupdata

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Key layout (version 2 of the read model). A generation's data lives
// under one fixed-length prefix, "bd2/g" and the first 8 bytes of a SHA-256
// of its data ref (domain.DataRef), so that one DeletePrefix destroys it
// and no key repeats the 30-odd bytes of the ref; the per-backup meta
// record sits apart. Item IDs and names contain no 0x00; numbers are
// fixed-width big-endian so that they sort.
//
//	bd2/m/<backup>                                  meta: generation, zone, head of the chain
//	<gen> i <k|s> <item> 0x00 <fromSeq 8>            temporal item row: live over [fromSeq, toSeq)
//	<gen> l <k|s> <item>                             live item -> fromSeq 8 and a copy of its current row
//	<gen> d <day> <tab 1> <item> 0x00 <k|s>          day index: a change during day
//	<gen> c <seq 8>                                  checkpoint summary (with its slice's parts)
//	<gen> f <day>                                    day record: first full, last checkpoint
//	<gen> b <seq 8>                                  base of checkpoint seq, with its parts
//	<gen> p <seq 8>                                  large checkpoint seq being loaded in parts (large.go)
//
// The first version of the read model (name "backup-data", keys under
// "bkd/") also held every version of every item, with its sealed material;
// restores now read bases and slices (commands.DayData.Open) instead.
const (
	root     = "bd2/"
	metaRoot = root + "m/"
	genRoot  = root + "g"
	hashLen  = 8
)

// Legacy names the first version of the read model, whose keys a store
// deletes once (LegacyPrefix) with its position (LegacyName).
const (
	LegacyName   = "backup-data"
	LegacyPrefix = "bkd/"
)

// Kind bytes in keys.
const (
	kindKey    byte = 'k'
	kindSecret byte = 's'
)

// base is the prefix of everything of a generation.
func base(ref string) []byte {
	h := sha256.Sum256([]byte("kmsbackup backup data\x00" + ref))
	b := make([]byte, 0, len(genRoot)+hashLen+64)
	b = append(b, genRoot...)
	return append(b, h[:hashLen]...)
}

func metaKey(id domain.BackupID) []byte { return append([]byte(metaRoot), id...) }

func rowsPrefix(ref string) []byte { return append(base(ref), 'i') }

func rowKindPrefix(ref string, kind byte) []byte { return append(rowsPrefix(ref), kind) }

func rowKey(ref string, kind byte, id string, from uint64) []byte {
	b := append(rowKindPrefix(ref, kind), id...)
	return binary.BigEndian.AppendUint64(append(b, 0), from)
}

// parseRowKey splits the part of a row key after rowsPrefix.
func parseRowKey(rest []byte) (kind byte, id string, from uint64, ok bool) {
	n := len(rest)
	if n < 1+1+1+8 || rest[n-9] != 0 {
		return 0, "", 0, false
	}
	return rest[0], string(rest[1 : n-9]), binary.BigEndian.Uint64(rest[n-8:]), true
}

func liveKey(ref string, kind byte, id string) []byte {
	return append(append(base(ref), 'l', kind), id...)
}

// tabBytes are the one-byte codes of the change tabs in day index keys.
var tabBytes = map[Tab]byte{IncrementalKeys: 'a', RotatedKeys: 'b', IncrementalSecrets: 'c', RotatedSecrets: 'd', Deleted: 'e'}

func dayTabPrefix(ref string, day domain.Day, tab Tab) []byte {
	return append(append(append(base(ref), 'd'), day...), tabBytes[tab])
}

func dayKey(ref string, day domain.Day, tab Tab, kind byte, id string) []byte {
	return append(append(dayTabPrefix(ref, day, tab), id...), 0, kind)
}

// parseDayKey splits the part of a day index key after dayTabPrefix.
func parseDayKey(rest []byte) (kind byte, id string, ok bool) {
	n := len(rest)
	if n < 3 || rest[n-2] != 0 {
		return 0, "", false
	}
	return rest[n-1], string(rest[:n-2]), true
}

func checkpointKey(ref string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(base(ref), 'c'), seq)
}

func daysPrefix(ref string) []byte { return append(base(ref), 'f') }

func dayRecordKey(ref string, day domain.Day) []byte { return append(daysPrefix(ref), day...) }

func basesPrefix(ref string) []byte { return append(base(ref), 'b') }

func baseKey(ref string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(basesPrefix(ref), seq)
}

// after is the first key after every key of item id under prefix p (item
// keys continue with 0x00, and no ID contains a byte below 0x01).
func after(p []byte, id string) []byte {
	return append(append(append([]byte(nil), p...), id...), 1)
}

func putUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// liveValue is a live index entry: the fromSeq of the item's current row
// and a copy of that row (open), so that a checkpoint reads an item it
// changes in one look-up. Entries written before hold the fromSeq alone;
// a checkpoint reads their row apart and writes the entry anew when it
// changes the item.
func liveValue(from uint64, x *row) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+48+len(x.Text)), from), encodeRow(x)...)
}

// GenerationPrefix is the prefix of every key of generation ref's data
// (for tools that account for the store's bytes); the byte after it tells
// the record's kind: 'i' rows, 'l' live index, 'd' day index, 'c'
// checkpoint summaries, 'f' day records, 'b' bases, 'p' the marker of a
// large checkpoint being loaded.
func GenerationPrefix(ref string) []byte { return base(ref) }

// MetaKey is the key of a backup instance's meta record.
func MetaKey(id domain.BackupID) []byte { return metaKey(id) }
