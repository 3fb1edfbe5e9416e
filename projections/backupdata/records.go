package backupdata

import (
	"math"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// recordVersion is the first byte of every record, so the layout can evolve.
const recordVersion = 1

// open is the toSeq of a row that is still current.
const open = math.MaxUint64

func header(w *wire.Writer) { w.Uvarint(recordVersion) }

func reader(b []byte, what string) (*wire.Reader, error) {
	r := &wire.Reader{B: b}
	if v := r.Uvarint(); r.Err() == nil && v != recordVersion {
		return nil, domain.Corruption("backup data %s record: unknown version %d", what, v)
	}
	return r, nil
}

func done(r *wire.Reader, what string) error {
	if err := r.Done(); err != nil {
		return domain.Corruption("backup data %s record: %v", what, err)
	}
	return nil
}

// meta is the per-backup record: the current generation and the head of
// its chain.
type meta struct {
	Generation   uint32
	TimeZone     string
	NextRevision uint64 // the backup stream revision to apply next
	LastSeq      uint64
	LiveKeys     uint64
	LiveSecrets  uint64
	Digest       sum256
}

func encodeMeta(m *meta) []byte {
	w := wire.Writer{B: make([]byte, 0, 80)}
	header(&w)
	w.Uvarint(uint64(m.Generation))
	w.String(m.TimeZone)
	w.Uvarint(m.NextRevision)
	w.Uvarint(m.LastSeq)
	w.Uvarint(m.LiveKeys)
	w.Uvarint(m.LiveSecrets)
	d := m.Digest.bytes()
	w.Fixed(d[:])
	return w.B
}

func decodeMeta(b []byte) (*meta, error) {
	r, err := reader(b, "meta")
	if err != nil {
		return nil, err
	}
	m := &meta{Generation: r.Uint32(), TimeZone: r.String(), NextRevision: r.Uvarint(), LastSeq: r.Uvarint(),
		LiveKeys: r.Uvarint(), LiveSecrets: r.Uvarint()}
	var d [32]byte
	r.Fixed(d[:])
	m.Digest = sumOf(d)
	return m, done(r, "meta")
}

// row is one incarnation of an item between two changes: live at every
// checkpoint in [from, To). The same encoding serves day entries, with
// ChangedAt the time of the change listed.
type row struct {
	To        uint64
	Versions  uint32
	CreatedAt time.Time
	ChangedAt time.Time
	Text      string // description (keys) or key ID (secrets)
	CreateSeq uint64
}

func (r *row) same(o *row) bool {
	return r.To == o.To && r.Versions == o.Versions && r.CreatedAt.Equal(o.CreatedAt) &&
		r.ChangedAt.Equal(o.ChangedAt) && r.Text == o.Text && r.CreateSeq == o.CreateSeq
}

func (r *row) item(kind byte, id string) Item {
	it := Item{Kind: kindName(kind), ID: id, Versions: r.Versions, CreatedAt: r.CreatedAt, ChangedAt: r.ChangedAt, CreateSeq: r.CreateSeq}
	if kind == kindKey {
		it.Description = r.Text
	} else {
		it.KeyID = r.Text
	}
	return it
}

func encodeRow(x *row) []byte {
	w := wire.Writer{B: make([]byte, 0, 48+len(x.Text))}
	header(&w)
	w.Uint64(x.To)
	w.Uvarint(uint64(x.Versions))
	w.Time(x.CreatedAt)
	w.Time(x.ChangedAt)
	w.String(x.Text)
	w.Uvarint(x.CreateSeq)
	return w.B
}

func decodeRow(b []byte) (*row, error) {
	r, err := reader(b, "item")
	if err != nil {
		return nil, err
	}
	x := &row{To: r.Uint64(), Versions: r.Uint32(), CreatedAt: r.Time(), ChangedAt: r.Time(), Text: r.String(), CreateSeq: r.Uvarint()}
	return x, done(r, "item")
}

// rowTo reads only the toSeq of an encoded row (StateAt skips most rows).
func rowTo(b []byte) (uint64, error) {
	r, err := reader(b, "item")
	if err != nil {
		return 0, err
	}
	to := r.Uint64()
	if r.Err() != nil {
		return 0, domain.Corruption("backup data item record: %v", r.Err())
	}
	return to, nil
}

func encodeSummary(s *Summary) []byte {
	w := wire.Writer{B: make([]byte, 0, 128)}
	header(&w)
	w.Uvarint(s.Seq)
	w.Bool(s.Full)
	w.Time(s.At)
	w.String(string(s.Day))
	w.Uvarint(s.From)
	w.Uvarint(s.Next)
	w.Uvarint(s.LiveKeys)
	w.Uvarint(s.LiveSecrets)
	w.Fixed(s.StateDigest[:])
	w.Bool(s.InBase)
	w.Fixed(s.Digest[:])
	w.Uvarint(uint64(len(s.Parts)))
	for _, p := range s.Parts {
		w.String(p.Name)
		w.Fixed(p.Digest[:])
		w.Uvarint(p.Events)
		w.Uvarint(p.From)
		w.Uvarint(p.Next)
	}
	return w.B
}

func decodeSummary(b []byte) (Summary, error) {
	r, err := reader(b, "checkpoint")
	if err != nil {
		return Summary{}, err
	}
	s := Summary{Seq: r.Uvarint(), Full: r.Bool(), At: r.Time(), Day: domain.Day(r.String()), From: r.Uvarint(),
		Next: r.Uvarint(), LiveKeys: r.Uvarint(), LiveSecrets: r.Uvarint()}
	r.Fixed(s.StateDigest[:])
	s.InBase = r.Bool()
	r.Fixed(s.Digest[:])
	if n := r.Count(); n > 0 {
		s.Parts = make([]domain.SlicePart, n)
		for i := range s.Parts {
			p := &s.Parts[i]
			p.Name = r.String()
			r.Fixed(p.Digest[:])
			p.Events, p.From, p.Next = r.Uvarint(), r.Uvarint(), r.Uvarint()
		}
	}
	return s, done(r, "checkpoint")
}

func encodeDay(d *DayInfo) []byte {
	w := wire.Writer{B: make([]byte, 0, 24)}
	header(&w)
	w.Uvarint(d.FullSeq)
	w.Uvarint(d.LastSeq)
	return w.B
}

func decodeDay(day domain.Day, b []byte) (DayInfo, error) {
	r, err := reader(b, "day")
	if err != nil {
		return DayInfo{}, err
	}
	d := DayInfo{Day: day, FullSeq: r.Uvarint(), LastSeq: r.Uvarint()}
	return d, done(r, "day")
}

func encodeBase(b *BaseInfo) []byte {
	w := wire.Writer{B: make([]byte, 0, 128)}
	header(&w)
	w.Uvarint(b.Seq)
	w.Time(b.At)
	w.Uvarint(b.Next)
	w.Uvarint(b.Items)
	w.Uvarint(b.Versions)
	w.Fixed(b.StateDigest[:])
	w.Uvarint(uint64(len(b.Parts)))
	for _, p := range b.Parts {
		w.String(p.Name)
		w.Fixed(p.Digest[:])
		w.Uvarint(p.Size)
		w.Bytes(p.First)
		w.Bytes(p.Last)
		w.Uvarint(p.Items)
		w.Uvarint(p.Versions)
	}
	return w.B
}

func decodeBase(v []byte) (BaseInfo, error) {
	r, err := reader(v, "base")
	if err != nil {
		return BaseInfo{}, err
	}
	b := BaseInfo{Seq: r.Uvarint(), At: r.Time(), Next: r.Uvarint(), Items: r.Uvarint(), Versions: r.Uvarint()}
	r.Fixed(b.StateDigest[:])
	if n := r.Count(); n > 0 {
		b.Parts = make([]domain.BasePart, n)
		for i := range b.Parts {
			p := &b.Parts[i]
			p.Name = r.String()
			r.Fixed(p.Digest[:])
			p.Size, p.First, p.Last, p.Items, p.Versions = r.Uvarint(), r.Bytes(), r.Bytes(), r.Uvarint(), r.Uvarint()
		}
	}
	return b, done(r, "base")
}
