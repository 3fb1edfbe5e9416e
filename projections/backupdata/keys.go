package backupdata

import (
	"encoding/binary"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Key layout. Every key starts with "bkd/". A generation's data lives under
// "bkd/<dataRef>\0" (dataRef is domain.DataRef: "<backup>/<generation>"), so
// one DeletePrefix destroys it; the per-backup meta record sits beside it.
// Components are separated by 0x00, which no ID, name or day contains;
// numbers are fixed-width big-endian so they sort.
//
//	bkd/<backup>\0m                                    meta: generation, zone, head of the chain
//	bkd/<ref>\0i\0<k|s>\0<item>\0<fromSeq 8>           temporal item row: live over [fromSeq, toSeq)
//	bkd/<ref>\0l\0<k|s>\0<item>                        live item -> fromSeq of its current row
//	bkd/<ref>\0v\0<k|s>\0<item>\0<createSeq 8><ver 4>  version record (sealed material / ciphertext)
//	bkd/<ref>\0d\0<day>\0<tab>\0<item>\0<k|s>          day index: a change during day
//	bkd/<ref>\0c\0<seq 8>                              checkpoint summary
//	bkd/<ref>\0f\0<day>                                day record: first full, last checkpoint
const root = "bkd/"

// Kind bytes in keys.
const (
	kindKey    byte = 'k'
	kindSecret byte = 's'
)

// base is the prefix of everything of a generation.
func base(ref string) []byte {
	b := make([]byte, 0, len(root)+len(ref)+64)
	b = append(b, root...)
	b = append(b, ref...)
	return append(b, 0)
}

func metaKey(id domain.BackupID) []byte {
	return append(append([]byte(root), id...), 0, 'm')
}

func rowsPrefix(ref string) []byte { return append(base(ref), 'i', 0) }

func rowKindPrefix(ref string, kind byte) []byte { return append(rowsPrefix(ref), kind, 0) }

func rowKey(ref string, kind byte, id string, from uint64) []byte {
	b := append(rowKindPrefix(ref, kind), id...)
	return binary.BigEndian.AppendUint64(append(b, 0), from)
}

// parseRowKey splits the part of a row key after rowsPrefix.
func parseRowKey(rest []byte) (kind byte, id string, from uint64, ok bool) {
	n := len(rest)
	if n < 2+1+8 || rest[1] != 0 || rest[n-9] != 0 {
		return 0, "", 0, false
	}
	return rest[0], string(rest[2 : n-9]), binary.BigEndian.Uint64(rest[n-8:]), true
}

func liveKey(ref string, kind byte, id string) []byte {
	return append(append(base(ref), 'l', 0, kind, 0), id...)
}

func versionPrefix(ref string, kind byte, id string, createSeq uint64) []byte {
	b := append(append(base(ref), 'v', 0, kind, 0), id...)
	return binary.BigEndian.AppendUint64(append(b, 0), createSeq)
}

func versionKey(ref string, kind byte, id string, createSeq uint64, v uint32) []byte {
	return binary.BigEndian.AppendUint32(versionPrefix(ref, kind, id, createSeq), v)
}

func dayTabPrefix(ref string, day domain.Day, tab Tab) []byte {
	b := append(append(base(ref), 'd', 0), day...)
	return append(append(append(b, 0), tab...), 0)
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
	return binary.BigEndian.AppendUint64(append(base(ref), 'c', 0), seq)
}

func daysPrefix(ref string) []byte { return append(base(ref), 'f', 0) }

func dayRecordKey(ref string, day domain.Day) []byte { return append(daysPrefix(ref), day...) }

// after is the first key after every key of item id under prefix p (item
// keys continue with 0x00, and no ID contains a byte below 0x01).
func after(p []byte, id string) []byte {
	return append(append(append([]byte(nil), p...), id...), 1)
}

func putUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
