package domain

import (
	"strings"
	"time"
)

// FileCheck checks, record by record, that the payload of a backup data
// file holds together before anything of it is stored: a file can be made
// by anyone who holds its data key, so an authentic file is not yet a
// sound one. It enforces what the backup data read model relies on:
//
//   - the header is for this account, well formed, and its day falls in
//     its time zone as the segments say;
//   - segments follow each other without gap or overlap, in time order,
//     every segment after the first on the file's day, except trailing
//     ones of later days that begin with events of the file's day (a
//     catch-up after downtime recorded them), and at least one on it;
//   - the first segment (the state the day starts from) holds only creates
//     and rotations, in revision order below its Next; every later segment
//     holds exactly the revisions [From, Next), in order;
//   - every event belongs to the header's account, region and KMS
//     instance, happened no later than its checkpoint, decodes, names its
//     key or secret (without a 0x00 byte), and carries key material of the
//     right size;
//   - each key and secret changes as the log could have changed it (no
//     create of a live item, no rotation or deletion of a missing one,
//     versions in order), and every event ID is unique: FileItems and
//     FileIDs decide these, given by the caller every FileChange and event
//     ID that Event returns, sorted (a file's items and IDs come in no
//     useful order, and a set of them grows with the file: the caller
//     keeps them out of memory, in a store of its own);
//   - the counts of checkpoints, records, keys and secrets (those
//     FileItems counts) are the header's.
//
// Every failure is BadBackupFile. Not safe for concurrent use.
type FileCheck struct {
	h      FileHeader
	loc    *time.Location
	stream string // the KMS stream of the header's instance, every event's

	segs    uint64
	cur     *FileCheckpoint
	left    uint64 // events still due in the current segment
	nextRev uint64 // the revision the next event must have (later segments) or exceed (first)
	records uint64
	lo      uint64 // the first segment whose state counts as the day's
	onDay   uint64 // the last segment on the file's day
	late    bool   // the current segment is of a later day
	// firstLate: the current late segment's first event is still due (it
	// must have happened on the file's day or before)
	firstLate bool
}

// MaterialSize is the size of a key version's material.
const MaterialSize = 32

// FileOp is what an event does to its key or secret.
type FileOp uint8

// The changes of an item.
const (
	FileCreate FileOp = iota + 1
	FileRotate
	FileDelete
	FileRestore
)

// Item kinds of a FileChange.
const (
	FileKey    byte = 'k'
	FileSecret byte = 's'
)

// FileChange is what one event of a file does to its key or secret, with
// what FileItems needs to check it among the item's other changes.
type FileChange struct {
	Kind    byte // FileKey or FileSecret; 0: the event changes no item
	ID      string
	Op      FileOp
	Version uint32 // the version a create (1) or a rotation makes; a restore's number of versions
	Segment uint64 // the event's segment, from 1
	Late    bool   // the segment is of a day after the file's
}

// NewFileCheck starts checking a file with header h for account; loc is the
// header's time zone, loaded by the caller (a zone that does not load is a
// bad file too).
func NewFileCheck(h FileHeader, account AccountID, loc *time.Location) (*FileCheck, error) {
	switch {
	case h.Account != account, h.Version != FileFormatVersion, h.FileID == "", loc == nil,
		ValidateRegion(h.Region) != nil, h.Checkpoints == 0:
		return nil, BadBackupFile()
	}
	if _, err := ParseDay(string(h.Day)); err != nil {
		return nil, BadBackupFile()
	}
	if _, err := ParseBackupID(string(h.Source)); err != nil {
		return nil, BadBackupFile()
	}
	if _, err := ParseInstanceID(string(h.KMSInstance)); err != nil {
		return nil, BadBackupFile()
	}
	return &FileCheck{h: h, loc: loc, stream: KMSStream(h.KMSInstance)}, nil
}

// Checkpoint checks a checkpoint record, which closes the previous segment.
func (c *FileCheck) Checkpoint(cp *FileCheckpoint) error {
	c.records++
	if c.cur != nil && (c.left != 0 || cp.From != c.cur.Next || cp.At.Before(c.cur.At)) {
		return BadBackupFile()
	}
	c.segs++
	late := cp.Day > c.h.Day
	switch {
	case cp.Next < cp.From, DayOf(cp.At, c.loc) != cp.Day,
		c.segs == 1 && (cp.From != 0 || cp.Events > cp.Next || late),
		c.segs > 1 && (cp.Events != cp.Next-cp.From || cp.Day < c.h.Day),
		late && (c.onDay == 0 || cp.Events == 0):
		return BadBackupFile()
	}
	if cp.Day == c.h.Day {
		c.onDay = c.segs
	}
	c.late = late
	c.firstLate = late
	if c.segs == 1 {
		c.lo = 1
		if cp.Day != c.h.Day {
			c.lo = 2 // the day has no full backup: its data starts after this state
		}
	}
	cp2 := *cp
	c.cur, c.left, c.nextRev = &cp2, cp.Events, cp.From
	return nil
}

// Event checks an event record of the current segment. It returns the
// event's payload, decoded, and the change it makes to its key or secret
// (Kind 0 for an event of the instance), which the caller gives to
// FileItems, as it gives e.ID to FileIDs.
func (c *FileCheck) Event(e *Event) (EventData, FileChange, error) {
	c.records++
	if c.cur == nil || c.left == 0 {
		return nil, FileChange{}, BadBackupFile()
	}
	c.left--
	first := c.segs == 1
	switch {
	case first && (e.Revision < c.nextRev || e.Revision >= c.cur.Next),
		!first && e.Revision != c.nextRev,
		e.Account != c.h.Account, e.Region != c.h.Region, e.Instance != c.h.KMSInstance,
		e.Stream != c.stream, e.OccurredAt.After(c.cur.At), e.ID == (EventID{}):
		return nil, FileChange{}, BadBackupFile()
	}
	c.nextRev = e.Revision + 1
	if c.firstLate {
		if DayOf(e.OccurredAt, c.loc) > c.h.Day {
			return nil, FileChange{}, BadBackupFile()
		}
		c.firstLate = false
	}
	d, err := e.Decode()
	if err != nil {
		return nil, FileChange{}, BadBackupFile()
	}
	for _, m := range KeyMaterials(d) {
		if len(*m) != MaterialSize {
			return nil, FileChange{}, BadBackupFile()
		}
	}
	ch := FileChange{Segment: c.segs, Late: c.late}
	inOrder := true
	switch d := d.(type) {
	case *KeyCreated:
		ch.Kind, ch.ID, ch.Op, ch.Version = FileKey, string(d.Key), FileCreate, 1
	case *KeyRotated:
		ch.Kind, ch.ID, ch.Op, ch.Version = FileKey, string(d.Key), FileRotate, d.Version
	case *KeyDeleted:
		ch.Kind, ch.ID, ch.Op = FileKey, string(d.Key), FileDelete
	case *KeyRestored:
		ch.Kind, ch.ID, ch.Op, ch.Version = FileKey, string(d.Key), FileRestore, uint32(len(d.Versions))
		for i, v := range d.Versions {
			inOrder = inOrder && v.Version == uint32(i)+1
		}
	case *SecretCreated:
		ch.Kind, ch.ID, ch.Op, ch.Version = FileSecret, d.Name, FileCreate, 1
	case *SecretRotated:
		ch.Kind, ch.ID, ch.Op, ch.Version = FileSecret, d.Name, FileRotate, d.Version
	case *SecretDeleted:
		ch.Kind, ch.ID, ch.Op = FileSecret, d.Name, FileDelete
	case *SecretRestored:
		ch.Kind, ch.ID, ch.Op, ch.Version = FileSecret, d.Name, FileRestore, uint32(len(d.Versions))
		for i, v := range d.Versions {
			inOrder = inOrder && v.Version == uint32(i)+1
		}
	case *InstanceCreated, *InstanceReleased:
		if first {
			return nil, FileChange{}, BadBackupFile()
		}
		return d, FileChange{}, nil
	default:
		return nil, FileChange{}, BadBackupFile()
	}
	switch {
	case ch.ID == "", strings.IndexByte(ch.ID, 0) >= 0, !inOrder,
		first && ch.Op != FileCreate && ch.Op != FileRotate, // the starting state is built, never unmade
		ch.Op == FileRestore && ch.Version == 0:
		return nil, FileChange{}, BadBackupFile()
	}
	return d, ch, nil
}

// Items starts the checks of the file's items (FileItems); call it after
// the first checkpoint.
func (c *FileCheck) Items() *FileItems { return &FileItems{lo: c.lo} }

// Done checks the end of the payload against the header; keys and
// secrets are FileItems' counts.
func (c *FileCheck) Done(keys, secrets uint64) error {
	if c.cur == nil || c.left != 0 || c.onDay < c.lo {
		return BadBackupFile()
	}
	c.cur = nil
	if c.segs != c.h.Checkpoints || c.records != c.h.Records || keys != c.h.Keys || secrets != c.h.Secrets {
		return BadBackupFile()
	}
	return nil
}

// FileItems checks the changes of a file's items and counts the items of
// the day's data. It is given every FileChange of the file (but those of
// Kind 0), grouped by item (kind and ID), each item's in the file's order,
// the groups in any order. An item counts when it is live at the end of
// the segment the day's state starts from (the first, or the second when
// the first is of the day before), or is created in a later segment of the
// file's day and live at that segment's end. Not safe for concurrent use.
type FileItems struct {
	lo            uint64
	kind          byte
	id            string
	live, counted bool
	versions      uint32
	created       uint64 // the segment that created the live incarnation
	createdLate   bool   // that segment is of a later day
	keys, secrets uint64
}

// Change checks the next change.
func (f *FileItems) Change(ch *FileChange) error {
	if ch.Kind != f.kind || ch.ID != f.id {
		f.end()
		f.kind, f.id = ch.Kind, ch.ID
	}
	switch ch.Op {
	case FileCreate, FileRestore:
		if f.live {
			return BadBackupFile()
		}
		f.live, f.versions, f.created, f.createdLate = true, ch.Version, ch.Segment, ch.Late
	case FileRotate:
		if !f.live || ch.Version != f.versions+1 {
			return BadBackupFile()
		}
		f.versions = ch.Version
	case FileDelete:
		if !f.live {
			return BadBackupFile()
		}
		f.counted = f.counted || f.counts(ch.Segment)
		f.live = false
	default:
		return BadBackupFile()
	}
	return nil
}

// counts reports whether the live incarnation, ended in segment ended,
// counts: whether it was live at the end of the segment the day's state
// starts from, or at the end of its own.
func (f *FileItems) counts(ended uint64) bool {
	switch {
	case f.createdLate:
		return false // after the day: its changes are listed, its state is not the day's
	case f.created <= f.lo:
		return ended > f.lo
	}
	return ended > f.created
}

// end finishes the current item.
func (f *FileItems) end() {
	if f.kind == 0 {
		return
	}
	if f.counted || (f.live && f.counts(^uint64(0))) {
		if f.kind == FileKey {
			f.keys++
		} else {
			f.secrets++
		}
	}
	f.kind, f.id, f.live, f.counted, f.versions = 0, "", false, false, 0
}

// Counts finishes the last item and returns the keys and secrets of the
// day's data.
func (f *FileItems) Counts() (keys, secrets uint64) {
	f.end()
	return f.keys, f.secrets
}

// FileIDs checks that a file's event IDs are unique. It is given every
// one, sorted. Not safe for concurrent use.
type FileIDs struct {
	prev EventID
	any  bool
}

// Next checks the next ID.
func (f *FileIDs) Next(id EventID) error {
	if f.any && id == f.prev {
		return BadBackupFile()
	}
	f.prev, f.any = id, true
	return nil
}
