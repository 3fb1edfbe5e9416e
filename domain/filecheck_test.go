package domain

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// fileFixture is a sound payload: a base with one key (two versions) and
// one secret, then an incremental that rotates the secret and deletes the
// key.
func fileFixture() (FileHeader, [][]byte) {
	acct, in := AccountID("acct_01KQHDZ8E0MM124RTDFFC3FMWR"), InstanceID("kms_01KQHDZ8E06PBPADG7S0V2KCEV")
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	n := byte(0)
	ev := func(rev uint64, t time.Time, d EventData) []byte {
		n++
		e := Event{ID: EventID{n}, Stream: KMSStream(in), Revision: rev, Type: d.EventType(), Schema: SchemaVersion,
			OccurredAt: t, Account: acct, Region: "cn-hangzhou", Instance: in, Data: EncodeData(d)}
		return AppendFileEvent(nil, &e)
	}
	mat := Sealed(make([]byte, MaterialSize))
	recs := [][]byte{
		EncodeFileCheckpoint(&FileCheckpoint{Full: true, At: at, Day: "2026-05-01", From: 0, Next: 9, Events: 3}),
		ev(0, at.Add(-time.Hour), &KeyCreated{Key: "key_1", Material: mat}),
		ev(1, at.Add(-time.Hour), &KeyRotated{Key: "key_1", Version: 2, Material: mat}),
		ev(5, at.Add(-time.Hour), &SecretCreated{Name: "db", Key: "key_1", Value: []byte("ct")}),
		EncodeFileCheckpoint(&FileCheckpoint{At: at.Add(5 * time.Minute), Day: "2026-05-01", From: 9, Next: 11, Events: 2}),
		ev(9, at.Add(time.Minute), &SecretRotated{Name: "db", Version: 2, Key: "key_1", Value: []byte("ct2")}),
		ev(10, at.Add(2*time.Minute), &KeyDeleted{Key: "key_1"}),
	}
	h := FileHeader{Version: FileFormatVersion, FileID: "01FILE", Account: acct, Source: "bkp_01KQHDZ8E0FSN18YAWYJR83WYB",
		KMSInstance: in, Region: "cn-hangzhou", Day: "2026-05-01", TimeZone: "UTC", Keys: 1, Secrets: 1,
		Checkpoints: 2, Records: uint64(len(recs))}
	return h, recs
}

// check runs a payload through FileCheck, FileItems and FileIDs, keeping
// the changes and IDs in memory and sorting them as a store of the caller
// would.
func check(h FileHeader, recs [][]byte) error {
	c, err := NewFileCheck(h, h.Account, time.UTC)
	if err != nil {
		return err
	}
	var changes []FileChange
	var ids []EventID
	for _, r := range recs {
		cp, e, err := DecodeFileRecord(r)
		if err != nil {
			return err
		}
		if cp != nil {
			if err := c.Checkpoint(cp); err != nil {
				return err
			}
			continue
		}
		_, ch, err := c.Event(e)
		if err != nil {
			return err
		}
		ids = append(ids, e.ID)
		if ch.Kind != 0 {
			changes = append(changes, ch)
		}
	}
	slices.SortStableFunc(changes, func(a, b FileChange) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), strings.Compare(a.ID, b.ID))
	})
	slices.SortFunc(ids, func(a, b EventID) int { return bytes.Compare(a[:], b[:]) })
	var fids FileIDs
	for _, id := range ids {
		if err := fids.Next(id); err != nil {
			return err
		}
	}
	items := c.Items()
	for i := range changes {
		if err := items.Change(&changes[i]); err != nil {
			return err
		}
	}
	return c.Done(items.Counts())
}

func TestFileCheck(t *testing.T) {
	h, recs := fileFixture()
	if err := check(h, recs); err != nil {
		t.Fatalf("a sound payload: %v", err)
	}
	for name, edit := range map[string]func(h *FileHeader, r [][]byte) [][]byte{
		"another account":    func(h *FileHeader, r [][]byte) [][]byte { h.Account = "acct_other"; return r },
		"more keys":          func(h *FileHeader, r [][]byte) [][]byte { h.Keys = 2; return r },
		"more records":       func(h *FileHeader, r [][]byte) [][]byte { h.Records++; return r },
		"no records":         func(h *FileHeader, r [][]byte) [][]byte { return nil },
		"an event dropped":   func(h *FileHeader, r [][]byte) [][]byte { h.Records--; return append(r[:5:5], r[6:]...) },
		"events swapped":     func(h *FileHeader, r [][]byte) [][]byte { r[5], r[6] = r[6], r[5]; return r },
		"an event first":     func(h *FileHeader, r [][]byte) [][]byte { r[0], r[1] = r[1], r[0]; return r },
		"a rotation first":   func(h *FileHeader, r [][]byte) [][]byte { r[1], r[2] = r[2], r[1]; return r },
		"a checkpoint twice": func(h *FileHeader, r [][]byte) [][]byte { return append(r, r[4]) },
		"an empty record":    func(h *FileHeader, r [][]byte) [][]byte { r[3] = nil; return r },
		"an unknown record":  func(h *FileHeader, r [][]byte) [][]byte { r[3] = []byte{'X'}; return r },
		"a truncated record": func(h *FileHeader, r [][]byte) [][]byte { r[3] = r[3][:len(r[3])-1]; return r },
		"an event ID twice": func(h *FileHeader, r [][]byte) [][]byte {
			r[6] = reEvent(r[6], func(e *Event) { e.ID = EventID{2} })
			return r
		},
		"a live item created": func(h *FileHeader, r [][]byte) [][]byte {
			r[6] = reEvent(r[6], func(e *Event) {
				e.Type, e.Data = TypeSecretCreated, EncodeData(&SecretCreated{Name: "db", Key: "key_1"})
			})
			return r
		},
		"a version skipped": func(h *FileHeader, r [][]byte) [][]byte {
			r[5] = reEvent(r[5], func(e *Event) {
				e.Data = EncodeData(&SecretRotated{Name: "db", Version: 3, Key: "key_1", Value: []byte("ct2")})
			})
			return r
		},
		"a missing item deleted": func(h *FileHeader, r [][]byte) [][]byte {
			r[6] = reEvent(r[6], func(e *Event) { e.Data = EncodeData(&KeyDeleted{Key: "key_2"}) })
			return r
		},
		"a name with a zero byte": func(h *FileHeader, r [][]byte) [][]byte {
			r[3] = reEvent(r[3], func(e *Event) {
				e.Data = EncodeData(&SecretCreated{Name: "d\x00b", Key: "key_1", Value: []byte("ct")})
			})
			return r
		},
		"a deletion in the starting state": func(h *FileHeader, r [][]byte) [][]byte {
			r[3] = reEvent(r[3], func(e *Event) { e.Type, e.Data = TypeKeyDeleted, EncodeData(&KeyDeleted{Key: "key_1"}) })
			return r
		},
	} {
		h, recs := fileFixture()
		recs = edit(&h, recs)
		if err := check(h, recs); !IsBadBackupFile(err) {
			t.Errorf("%s: %v, want the bad-file error", name, err)
		}
	}
}

// reEvent decodes an event record, changes the event and encodes it again.
func reEvent(rec []byte, edit func(e *Event)) []byte {
	_, e, err := DecodeFileRecord(rec)
	if err != nil || e == nil {
		panic(fmt.Sprintf("not an event record: %v", err))
	}
	cp := *e
	cp.Data = bytes.Clone(e.Data)
	edit(&cp)
	return AppendFileEvent(nil, &cp)
}

// FuzzFileRecords feeds arbitrary records to the checker: it never panics,
// and anything it accepts decodes.
func FuzzFileRecords(f *testing.F) {
	_, recs := fileFixture()
	for _, r := range recs {
		f.Add(r, r)
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		h, recs := fileFixture()
		recs[3], recs[5] = a, b
		_ = check(h, recs)
		sameDecoding(t, new(FileRecordReader), a)
	})
}

// sameDecoding asserts that FileRecordReader decodes rec as
// DecodeFileRecord does.
func sameDecoding(t *testing.T, d *FileRecordReader, rec []byte) {
	t.Helper()
	cp1, e1, err1 := DecodeFileRecord(rec)
	cp2, e2, err2 := d.Decode(rec)
	if (err1 == nil) != (err2 == nil) || (e1 == nil) != (e2 == nil) || (cp1 == nil) != (cp2 == nil) {
		t.Fatalf("record %x: %v %v, reader %v %v", rec, e1, err1, e2, err2)
	}
	if e1 != nil && fmt.Sprint(*e1) != fmt.Sprint(*e2) {
		t.Fatalf("record %x: %+v, reader %+v", rec, *e1, *e2)
	}
}

// TestFileRecordReader: the reader decodes every record as
// DecodeFileRecord does, one after another, reusing what repeats.
func TestFileRecordReader(t *testing.T) {
	_, recs := fileFixture()
	var d FileRecordReader
	for _, r := range recs {
		sameDecoding(t, &d, r)
	}
	for _, r := range [][]byte{nil, {'E'}, recs[1][:len(recs[1])-1], append(bytes.Clone(recs[1]), 0)} {
		sameDecoding(t, &d, r)
	}
}
