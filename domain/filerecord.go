package domain

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// The payload of a backup data file is a sequence of records (see
// docs/backup-file.md): a checkpoint record opens each segment and is
// followed by that segment's event records. The first segment is the state
// the day starts from, written as the events that build it (for each live
// key or secret: its create and every rotation); each later segment is one
// of the day's incrementals, exactly as the backup holds it. Event records
// carry every envelope field; key material in them is in the clear, which
// the file's own encryption protects.
const (
	fileRecordCheckpoint byte = 'C'
	fileRecordEvent      byte = 'E'
)

// FileCheckpoint opens one segment of a backup file's payload.
type FileCheckpoint struct {
	Full       bool
	At         time.Time // the instant the checkpoint covers up to
	Day        Day       // At's day in the file's time zone
	From, Next uint64    // KMS stream revisions covered: [From, Next)
	Events     uint64    // event records that follow
}

// EncodeFileCheckpoint encodes a checkpoint record.
func EncodeFileCheckpoint(c *FileCheckpoint) []byte {
	w := wire.Writer{B: make([]byte, 0, 64)}
	w.B = append(w.B, fileRecordCheckpoint)
	w.Bool(c.Full)
	w.Time(c.At)
	w.String(string(c.Day))
	w.Uvarint(c.From)
	w.Uvarint(c.Next)
	w.Uvarint(c.Events)
	return w.B
}

// AppendFileEvent appends an event record to dst and returns it (so a
// caller can reuse, and wipe, one buffer).
func AppendFileEvent(dst []byte, e *Event) []byte {
	w := wire.Writer{B: append(dst, fileRecordEvent)}
	encodeEvent(&w, e)
	return w.B
}

// DecodeFileRecord decodes one record: exactly one of the results is
// non-nil. Anything malformed is BadBackupFile.
func DecodeFileRecord(b []byte) (*FileCheckpoint, *Event, error) {
	if len(b) == 0 {
		return nil, nil, BadBackupFile()
	}
	r := wire.Reader{B: b[1:]}
	switch b[0] {
	case fileRecordCheckpoint:
		c := &FileCheckpoint{Full: r.Bool(), At: r.Time(), Day: Day(r.String()), From: r.Uvarint(), Next: r.Uvarint(),
			Events: r.Uvarint()}
		if r.Done() != nil {
			return nil, nil, BadBackupFile()
		}
		return c, nil, nil
	case fileRecordEvent:
		e := &Event{}
		decodeEvent(&r, e)
		if r.Done() != nil {
			return nil, nil, BadBackupFile()
		}
		return nil, e, nil
	}
	return nil, nil, BadBackupFile()
}

// FileRecordReader decodes a file's records one after another as
// DecodeFileRecord does, without allocating for what repeats from one
// event to the next: the event it returns is its own, valid until the
// next call; its Data aliases the record; its stream, type, account,
// region and instance are the previous event's strings when they are
// equal. The zero value is ready. Not safe for concurrent use.
type FileRecordReader struct {
	e Event
}

// Decode decodes record b. Anything malformed is BadBackupFile.
func (d *FileRecordReader) Decode(b []byte) (*FileCheckpoint, *Event, error) {
	if len(b) == 0 || b[0] != fileRecordEvent {
		return DecodeFileRecord(b)
	}
	r := wire.Reader{B: b[1:]}
	e := &d.e
	r.Fixed(e.ID[:])
	e.Stream = reuse(e.Stream, r.Raw())
	e.Revision = r.Uvarint()
	e.Position = r.Uvarint()
	e.Type = reuse(e.Type, r.Raw())
	e.Schema = uint16(r.Uint32())
	e.OccurredAt = r.Time()
	e.Account = AccountID(reuse(string(e.Account), r.Raw()))
	e.Region = reuse(e.Region, r.Raw())
	e.Instance = InstanceID(reuse(string(e.Instance), r.Raw()))
	e.Data = r.Raw()
	if r.Done() != nil {
		return nil, nil, BadBackupFile()
	}
	return nil, e, nil
}

// reuse returns prev when it holds b, else b as a new string.
func reuse(prev string, b []byte) string {
	if prev == string(b) {
		return prev
	}
	return string(b)
}
