package domain

import (
	"time"

	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// An upload is a backup data file brought back by its user: it is listed
// beside the backup instances with kind BackupUpload, holds the one day of
// data the file held, and can be viewed and restored like a day of a
// backup instance. It never backs anything up, never expires, and is
// deleted on request.
const (
	BackupUpload  BackupKind  = "upload"
	StateUploaded BackupState = "uploaded"
)

// Upload events.
const (
	TypeBackupUploaded      = "BackupUploaded"
	TypeBackupUploadDeleted = "BackupUploadDeleted"
)

// BackupUploaded records an upload. It is followed, in the same append, by
// the BackupCheckpointed events of its data: the first holds the state the
// day starts from (in base 0, whose BackupBaseStored follows it; an
// upload of an earlier version held it as a slice of the events that
// build it), the others the day's incrementals.
type BackupUploaded struct {
	Backup      BackupID
	Name        string
	Region      string
	Day         Day
	TimeZone    string
	Source      BackupID   // the backup instance the file was downloaded from
	KMSInstance InstanceID // the KMS instance that backup instance backed up
	FileID      string
	Keys        uint64
	Secrets     uint64
}

// BackupUploadDeleted records the deletion of an upload; its data is
// destroyed.
type BackupUploadDeleted struct{}

func (BackupUploaded) EventType() string      { return TypeBackupUploaded }
func (BackupUploadDeleted) EventType() string { return TypeBackupUploadDeleted }

func (e *BackupUploaded) encode(w *wire.Writer) {
	w.String(string(e.Backup))
	w.String(e.Name)
	w.String(e.Region)
	w.String(string(e.Day))
	w.String(e.TimeZone)
	w.String(string(e.Source))
	w.String(string(e.KMSInstance))
	w.String(e.FileID)
	w.Uvarint(e.Keys)
	w.Uvarint(e.Secrets)
}

func (e *BackupUploaded) decode(r *wire.Reader) {
	e.Backup, e.Name, e.Region, e.Day = BackupID(r.String()), r.String(), r.String(), Day(r.String())
	e.TimeZone, e.Source, e.KMSInstance, e.FileID = r.String(), BackupID(r.String()), InstanceID(r.String()), r.String()
	e.Keys, e.Secrets = r.Uvarint(), r.Uvarint()
}

func (*BackupUploadDeleted) encode(*wire.Writer) {}
func (*BackupUploadDeleted) decode(*wire.Reader) {}

// UploadSegment is one checkpoint of an upload's data as the file held it.
type UploadSegment struct {
	Full       bool
	At         time.Time
	From, Next uint64      // KMS stream revisions covered: [From, Next)
	Parts      []SlicePart // the blobs holding the segment's events (none when none, and for the first)
}

// UploadBase is base 0 of an upload: the state its first segment builds
// (the state the day starts from), stored as parts, and the digest of that
// state (see BackupBaseStored).
type UploadBase struct {
	Parts       []BasePart
	StateDigest [32]byte
}

// NewUpload decides an upload: the BackupUploaded event, then the chain of
// checkpoints of its data, digests linked as a backup instance's are. The
// first segment is the state the day starts from, recorded as a full
// backup held by base 0 (InBase, no slice), whose BackupBaseStored follows
// it; the later segments are slices. The segments must follow each other
// without gap or overlap and in time order, and one must fall on h.Day in
// loc.
func NewUpload(id BackupID, name string, h FileHeader, segs []UploadSegment, base UploadBase, loc *time.Location) ([]EventData, error) {
	const op = "upload"
	name, err := CleanAlias("upload name", name)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 || len(segs[0].Parts) > 0 {
		return nil, BadBackupFile()
	}
	out := []EventData{&BackupUploaded{Backup: id, Name: name, Region: h.Region, Day: h.Day, TimeZone: h.TimeZone,
		Source: h.Source, KMSInstance: h.KMSInstance, FileID: h.FileID, Keys: h.Keys, Secrets: h.Secrets}}
	var prev *BackupCheckpointed
	onDay := false
	for i, s := range segs {
		c := &BackupCheckpointed{Seq: uint64(i) + 1, Full: s.Full || i == 0, At: s.At.UTC(), Day: DayOf(s.At, loc),
			From: s.From, Next: s.Next, InBase: i == 0}
		if prev != nil {
			if s.From != prev.Next || s.At.Before(prev.At) {
				return nil, BadBackupFile()
			}
			c.PrevDigest = prev.Digest
		}
		// A later segment holds every revision of its range in its parts.
		if s.Next < s.From || (i > 0 && (len(s.Parts) > 0) != (s.Next > s.From)) {
			return nil, BadBackupFile()
		}
		c.Parts = s.Parts
		c.Digest = CheckpointDigest(id, c)
		out = append(out, c)
		if i == 0 {
			b := &BackupBaseStored{Seq: 1, At: c.At, Next: c.Next, Parts: base.Parts, StateDigest: base.StateDigest,
				CheckpointDigest: c.Digest}
			for _, p := range base.Parts {
				if p.Name == "" || p.Items == 0 {
					return nil, Invalid(op, "a part of base 0 has no name or no item")
				}
				b.Items += p.Items
				b.Versions += p.Versions
			}
			b.Digest = BaseDigest(id, b)
			out = append(out, b)
		}
		prev = c
		onDay = onDay || c.Day == h.Day
	}
	if !onDay {
		return nil, BadBackupFile()
	}
	return out, nil
}

// DeleteUpload decides deleting an upload.
func (b *Backup) DeleteUpload() (*BackupUploadDeleted, error) {
	if b.Kind != BackupUpload {
		return nil, Errorf(ErrFailedPrecondition, "delete upload", string(b.ID), "reset or let a backup instance expire instead",
			"%s is a %s backup instance, not an upload", b.ID, b.Kind)
	}
	return &BackupUploadDeleted{}, nil
}

// Deleted reports whether the instance is an upload that was deleted: it
// no longer exists for anyone.
func (b *Backup) Deleted() bool { return b.Kind == BackupUpload && b.State == StateReleased }

// HoldsData reports whether the instance keeps backed-up data that can be
// read: an enabled or expired instance (an expired one keeps its data until
// it is released) or an upload. A not-enabled instance holds nothing; a
// released one (or a deleted upload) lost its data.
func (b *Backup) HoldsData() bool {
	switch b.State {
	case StateEnabled, StateExpired, StateUploaded:
		return true
	}
	return false
}

// notUpload refuses lifecycle operations that do not apply to an upload.
func (b *Backup) notUpload(op string) error {
	if b.Kind == BackupUpload {
		return Errorf(ErrFailedPrecondition, op, string(b.ID), "uploads can be viewed, restored, downloaded and deleted",
			"%s is an upload: it holds one day and has no schedule, term or binding", b.ID)
	}
	return nil
}
