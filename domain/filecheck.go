package domain

import "time"

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
//     instance, happened no later than its checkpoint, decodes, and
//     changes its key or secret as the log could have (no create of a live
//     item, no rotation or deletion of a missing one, versions in order,
//     key material of the right size), with a unique ID;
//   - the counts of checkpoints, records, keys and secrets are the
//     header's.
//
// Every failure is BadBackupFile. Not safe for concurrent use.
type FileCheck struct {
	h   FileHeader
	loc *time.Location

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

	live    map[string]uint32 // "k\x00ID" / "s\x00name" -> versions
	created []string          // created during the current segment
	counted map[string]bool   // items of the day's data
	ids     map[EventID]struct{}
}

// MaterialSize is the size of a key version's material.
const MaterialSize = 32

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
	return &FileCheck{h: h, loc: loc, live: map[string]uint32{}, counted: map[string]bool{}, ids: map[EventID]struct{}{}}, nil
}

// Checkpoint checks a checkpoint record, which closes the previous segment.
func (c *FileCheck) Checkpoint(cp *FileCheckpoint) error {
	c.records++
	if c.cur != nil {
		if c.left != 0 || cp.From != c.cur.Next || cp.At.Before(c.cur.At) {
			return BadBackupFile()
		}
		c.endSegment()
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
	c.cur, c.left, c.nextRev, c.created = &cp2, cp.Events, cp.From, c.created[:0]
	return nil
}

// Event checks an event record of the current segment.
func (c *FileCheck) Event(e *Event) error {
	c.records++
	if c.cur == nil || c.left == 0 {
		return BadBackupFile()
	}
	c.left--
	first := c.segs == 1
	switch {
	case first && (e.Revision < c.nextRev || e.Revision >= c.cur.Next),
		!first && e.Revision != c.nextRev,
		e.Account != c.h.Account, e.Region != c.h.Region, e.Instance != c.h.KMSInstance,
		e.Stream != KMSStream(c.h.KMSInstance), e.OccurredAt.After(c.cur.At), e.ID == (EventID{}):
		return BadBackupFile()
	}
	c.nextRev = e.Revision + 1
	if c.firstLate {
		if DayOf(e.OccurredAt, c.loc) > c.h.Day {
			return BadBackupFile()
		}
		c.firstLate = false
	}
	if _, dup := c.ids[e.ID]; dup {
		return BadBackupFile()
	}
	c.ids[e.ID] = struct{}{}
	d, err := e.Decode()
	if err != nil {
		return BadBackupFile()
	}
	for _, m := range KeyMaterials(d) {
		if len(*m) != MaterialSize {
			return BadBackupFile()
		}
	}
	switch d := d.(type) {
	case *KeyCreated:
		return c.create("k", string(d.Key), 1)
	case *KeyRotated:
		return c.rotate("k", string(d.Key), d.Version)
	case *KeyDeleted:
		return c.remove(first, "k", string(d.Key))
	case *KeyRestored:
		return c.restore(first, "k", string(d.Key), len(d.Versions), func(i int) uint32 { return d.Versions[i].Version })
	case *SecretCreated:
		return c.create("s", d.Name, 1)
	case *SecretRotated:
		return c.rotate("s", d.Name, d.Version)
	case *SecretDeleted:
		return c.remove(first, "s", d.Name)
	case *SecretRestored:
		return c.restore(first, "s", d.Name, len(d.Versions), func(i int) uint32 { return d.Versions[i].Version })
	case *InstanceCreated, *InstanceReleased:
		if first {
			return BadBackupFile()
		}
		return nil
	}
	return BadBackupFile()
}

func (c *FileCheck) create(kind, id string, versions uint32) error {
	k := kind + "\x00" + id
	if _, ok := c.live[k]; ok || id == "" {
		return BadBackupFile()
	}
	c.live[k] = versions
	c.created = append(c.created, k)
	return nil
}

func (c *FileCheck) rotate(kind, id string, version uint32) error {
	k := kind + "\x00" + id
	v, ok := c.live[k]
	if !ok || version != v+1 {
		return BadBackupFile()
	}
	c.live[k] = version
	return nil
}

func (c *FileCheck) remove(first bool, kind, id string) error {
	k := kind + "\x00" + id
	if _, ok := c.live[k]; !ok || first {
		return BadBackupFile()
	}
	delete(c.live, k)
	return nil
}

func (c *FileCheck) restore(first bool, kind, id string, n int, version func(int) uint32) error {
	if first || n == 0 {
		return BadBackupFile()
	}
	for i := range n {
		if version(i) != uint32(i)+1 {
			return BadBackupFile()
		}
	}
	return c.create(kind, id, uint32(n))
}

// endSegment counts the items live at the end of a segment of the day.
func (c *FileCheck) endSegment() {
	switch {
	case c.late:
		// After the day: its changes are listed, its state is not the day's.
	case c.segs == c.lo:
		for k := range c.live {
			c.counted[k] = true
		}
	case c.segs > c.lo:
		for _, k := range c.created {
			if _, ok := c.live[k]; ok {
				c.counted[k] = true
			}
		}
	}
}

// Done checks the end of the payload against the header.
func (c *FileCheck) Done() error {
	if c.cur == nil || c.left != 0 || c.onDay < c.lo {
		return BadBackupFile()
	}
	c.endSegment()
	c.cur = nil
	var keys, secrets uint64
	for k := range c.counted {
		if k[0] == 'k' {
			keys++
		} else {
			secrets++
		}
	}
	if c.segs != c.h.Checkpoints || c.records != c.h.Records || keys != c.h.Keys || secrets != c.h.Secrets {
		return BadBackupFile()
	}
	return nil
}
