package commands

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
	"github.com/kmsbackup/kmsbackup/projections/dayview"
)

// UploadBackupFile brings a downloaded backup data file back as an upload:
// a backup instance of kind upload holding the file's day, listed beside
// the others and restorable like them. open returns the file from its
// start; it is called once. The file is read once, checked as it is read
// (every chunk authentic, every record sound, every count the header's,
// the caller's account) and stored in the form a backup instance's data
// has (docs/restore-engine.md): the state the day starts from (its first
// segment) replayed and written as base 0, every later segment's events
// resealed under the upload's own data key as slice parts. The checks
// that need every item and event ID of the file (domain.FileItems,
// domain.FileIDs) read them back, sorted, from a second scratch store, so
// memory stays bounded whatever the file's size. The pass spreads over
// goroutines with bounded queues: while it reads, checks and reseals,
// base 0 is cut, digested and stored as the state comes (in key order, as
// a downloaded file's does; else through a scratch store and written once
// the file is read: see baseSink), and the index's runs are sorted and
// written (indexWriter). Only once everything holds is the upload
// recorded, with one atomic append. A failure at any point stops and
// waits for those goroutines and leaves nothing behind: the scratch
// stores, the blobs stored and the data key go; except when the append
// was written and its reply lost (or its outcome is otherwise unknown:
// see appendRefused), when the upload may be recorded and its data stays.
//
// Errors: domain.ErrInvalidArgument for a bad name or a string that is not
// a data key; domain.BadBackupFile for every file that cannot be used
// (wrong key, any damage, truncation, another account's file), all alike;
// domain.ErrUnavailable when no scratch store is configured; open's and
// the stores' errors.
func (s *DayFiles) UploadBackupFile(ctx context.Context, c Caller, name, dataKey string, open func() (io.Reader, error)) (*domain.Backup, error) {
	const op = "upload"
	if err := requireAccount(c, op); err != nil {
		return nil, err
	}
	name, err := domain.CleanAlias("upload name", name)
	if err != nil {
		return nil, err
	}
	key, err := domain.ParseDataKey(dataKey)
	if err != nil {
		return nil, err
	}
	defer key.Wipe()
	if s.Storage.Scratch == nil {
		return nil, domain.Errorf(domain.ErrUnavailable, op, "", "", "no scratch store is configured")
	}
	r, err := open()
	if err != nil {
		return nil, err
	}
	fr, err := s.Files.Open(r, key)
	if err != nil {
		return nil, err
	}
	id := domain.NewBackupID(s.IDs.NewULID())
	ref := domain.DataRef(id, 0)
	if err := s.Storage.DataKeys.CreateDataKey(ctx, ref); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	b, committed, err := s.storeUpload(ctx, c, id, ref, name, fr)
	if err != nil && !committed {
		// Nothing of a failed upload stays: its blobs and data key go.
		if derr := s.Storage.destroyData(context.WithoutCancel(ctx), ref); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if err := s.audit(ctx, c, b, "upload"); err != nil {
		return nil, err
	}
	return b, nil
}

// storeUpload reads the file, checking and storing it (see
// UploadBackupFile), then appends the upload, its checkpoints and its base.
// committed reports whether the append may have happened (it happened, or
// its reply was lost).
func (s *DayFiles) storeUpload(ctx context.Context, c Caller, id domain.BackupID, ref, name string, fr FileReader) (b *domain.Backup, committed bool, err error) {
	const op = "upload"
	h := fr.Header()
	loc, err := s.zone(h.TimeZone)
	if err != nil {
		return nil, false, domain.BadBackupFile()
	}
	chk, err := domain.NewFileCheck(h, c.Account, loc)
	if err != nil {
		return nil, false, err
	}
	u := &upload{s: s, ctx: ctx, account: c.Account, ref: ref, chk: chk}
	defer u.close()
	if u.state, err = s.Storage.Scratch.OpenScratch(ctx); err != nil {
		return nil, false, fmt.Errorf("%s: %w", op, err)
	}
	if u.index, err = s.Storage.Scratch.OpenScratch(ctx); err != nil {
		return nil, false, fmt.Errorf("%s: %w", op, err)
	}
	u.run, u.runs = &indexRun{}, startIndexWriter(ctx, u.index)
	limit := s.Storage.uploadBasePartLimit()
	u.sink = &baseSink{s: s.Storage, ctx: ctx, ref: ref, sc: u.state, stream: s.Storage.startBaseStream(ctx, ref, 1, u.state, limit)}
	if err := u.read(fr); err != nil {
		return nil, false, err
	}
	if err := u.checkIndex(); err != nil {
		return nil, false, err
	}
	var base domain.UploadBase
	if base.Parts, base.StateDigest, err = u.sink.base(1, limit); err != nil {
		return nil, false, fmt.Errorf("%s: write base 0: %w", op, err)
	}
	// The pass is over: its scratch stores and buffers go before the
	// commit, which waits for the read models (close again when deferred
	// is a no-op).
	u.close()
	ds, err := domain.NewUpload(id, name, h, u.segs, base, loc)
	if err != nil {
		return nil, false, err
	}
	stub := &domain.Backup{ID: id, Account: c.Account, Region: h.Region}
	now := s.Clock.Now()
	batch := make([]domain.Event, len(ds))
	for i, d := range ds {
		batch[i] = s.newEvent(stub, now, d)
	}
	res, err := s.Log.Append(ctx, domain.BackupStream(id), domain.ExpectNoStream, batch)
	if err != nil {
		// Refused, nothing is recorded; else the upload may be, and its
		// data must stay (see appendRefused).
		return nil, !appendRefused(err), fmt.Errorf("%s: %w", op, err)
	}
	if err := s.StateApplied.WaitFor(ctx, res.LastPosition); err != nil {
		return nil, true, err
	}
	if err := s.DataApplied.WaitFor(ctx, res.LastPosition); err != nil {
		return nil, true, err
	}
	b, err = backupstate.Get(s.State, id)
	return b, true, err
}

// upload is one upload's pass over its file.
type upload struct {
	s       *DayFiles
	ctx     context.Context
	account domain.AccountID
	ref     string
	chk     *domain.FileCheck
	dec     domain.FileRecordReader
	// sink takes the state the first segment builds (base 0), streamed
	// or into the scratch state (see baseSink); index holds the item
	// changes and event IDs of the file, for the checks that need them all
	// (see indexKey).
	sink         *baseSink
	state, index Scratch
	apply        dayview.Applier
	segs         []domain.UploadSegment
	cur          *domain.FileCheckpoint
	slice        *sliceWriter // the current segment's, after the first
	records      uint64
	ev           domain.Event // the event being stored, resealed
	data         []byte       // its payload
	run          *indexRun    // being filled
	runs         *indexWriter
	key, val     []byte
}

// close stops the pass's goroutines and closes its scratch stores.
// Idempotent.
func (u *upload) close() {
	if u.sink != nil {
		u.sink.close() // before the scratch whose files it uses
	}
	if u.runs != nil {
		u.runs.abort() // likewise
	}
	for _, sc := range []Scratch{u.state, u.index} {
		if sc != nil {
			_ = sc.Close()
		}
	}
}

// read reads every record of the file, checking each and storing it.
// Every problem with the file is BadBackupFile.
func (u *upload) read(fr FileReader) error {
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := u.ctx.Err(); err != nil {
				return err
			}
		}
		rec, err := fr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		u.records++
		cp, e, err := u.dec.Decode(rec)
		if err != nil {
			return err
		}
		if cp != nil {
			err = u.checkpoint(cp)
		} else {
			err = u.event(e)
			domain.Plaintext(e.Data).Wipe()
		}
		if err != nil {
			return err
		}
	}
	if u.cur == nil {
		return domain.BadBackupFile()
	}
	return u.endSegment()
}

// checkpoint begins a segment, ending the one before.
func (u *upload) checkpoint(cp *domain.FileCheckpoint) error {
	if err := u.chk.Checkpoint(cp); err != nil {
		return err
	}
	if u.cur != nil {
		if err := u.endSegment(); err != nil {
			return err
		}
	}
	cur := *cp
	u.cur = &cur
	if len(u.segs) == 0 {
		return nil // the first: replayed into the state
	}
	seq, run := len(u.segs)+1, u.s.IDs.NewULID()
	u.slice = &sliceWriter{ctx: u.ctx, blobs: u.s.Storage.Blobs, ref: u.ref, limit: u.s.Storage.slicePartLimit(), name: func(i int) string {
		return fmt.Sprintf("slice-%d-%s-%d", seq, run, i)
	}}
	return nil
}

// endSegment stores what is left of the current segment.
func (u *upload) endSegment() error {
	const op = "upload"
	cur := u.cur
	seg := domain.UploadSegment{Full: cur.Full, At: cur.At, From: cur.From, Next: cur.Next}
	if u.slice == nil {
		u.sink.end() // the state is complete: base 0 is written while the rest is read
	} else {
		parts, err := u.slice.finish()
		if err != nil {
			return fmt.Errorf("%s: store data: %w", op, err)
		}
		if len(parts) > 0 && (cur.Next == cur.From || parts[0].From < cur.From || parts[len(parts)-1].Next > cur.Next) {
			return domain.BadBackupFile()
		}
		// A segment's first part starts at the segment's first revision,
		// its last ends at its Next.
		if len(parts) > 0 {
			parts[0].From, parts[len(parts)-1].Next = cur.From, cur.Next
		}
		seg.Parts = parts
		u.slice = nil // stored: let it go before the next segment
	}
	u.segs = append(u.segs, seg)
	return nil
}

// event checks one event, records its ID and change in the index, reseals
// its key material under the upload's data key and stores it: into the
// state (the first segment) or the segment's slice.
func (u *upload) event(e *domain.Event) error {
	const op = "upload"
	d, ch, err := u.chk.Event(e)
	if err != nil {
		return err
	}
	if err := u.indexEvent(e.ID, &ch); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	for _, m := range domain.KeyMaterials(d) {
		sealed, err := u.s.Sealer.Seal(u.ctx, u.ref, domain.Plaintext(*m), BackupAAD(u.account, u.ref, e.ID))
		domain.Plaintext(*m).Wipe()
		if err != nil {
			return fmt.Errorf("%s: seal key material: %w", op, err)
		}
		*m = sealed
	}
	// The resealed event, in buffers reused from event to event: the
	// slice and the state copy what they keep.
	u.data = domain.AppendData(u.data[:0], d)
	cp := &u.ev
	*cp = *e
	cp.Data = u.data
	if u.slice != nil {
		if err := u.slice.add(cp); err != nil {
			return fmt.Errorf("%s: store data: %w", op, err)
		}
		return nil
	}
	c, ok, err := dayview.ChangeOf(cp)
	if err != nil {
		return domain.BadBackupFile()
	}
	if ok {
		if err := u.apply.Apply(u.sink, dayview.Instant, &c); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

// The index of an upload: the file's event IDs and item changes as keys,
// gathered in memory up to indexRunBytes, sorted and written into a
// scratch store as one run (a table, no memtable insert per record), and
// read back, the runs merged, once the file is read.
//
//	'i' <event ID 16 bytes> <record number uint64 BE>                  -> nothing
//	'c' <kind> <key ID or secret name> 0x00 <record number uint64 BE> -> op, version (uvarint), segment (uvarint), late
//
// The record number keeps equal IDs apart (FileIDs finds them side by
// side) and an item's changes in the file's order; names hold no 0x00
// (FileCheck.Event refuses them), so an item's changes are together.
const (
	indexID     = 'i'
	indexChange = 'c'
)

// indexRunBytes is how much of the index is gathered in memory before it
// is sorted and written as a run (by indexWriter, while the next run is
// gathered: two runs in memory).
const indexRunBytes = 2 << 20

func (u *upload) indexEvent(id domain.EventID, ch *domain.FileChange) error {
	u.key = append(append(u.key[:0], indexID), id[:]...)
	u.key = binary.BigEndian.AppendUint64(u.key, u.records)
	u.run.add(u.key, nil)
	if ch.Kind != 0 {
		u.indexChange(ch)
	}
	if len(u.run.buf) < indexRunBytes {
		return nil
	}
	var err error
	u.run, err = u.runs.write(u.run)
	return err
}

// indexChange adds an item change to the index.
func (u *upload) indexChange(ch *domain.FileChange) {
	u.key = append(append(append(u.key[:0], indexChange, ch.Kind), ch.ID...), 0)
	u.key = binary.BigEndian.AppendUint64(u.key, u.records)
	u.val = binary.AppendUvarint(append(u.val[:0], byte(ch.Op)), uint64(ch.Version))
	u.val = binary.AppendUvarint(u.val, ch.Segment)
	late := byte(0)
	if ch.Late {
		late = 1
	}
	u.val = append(u.val, late)
	u.run.add(u.key, u.val)
}

// indexRun is the part of an upload's index gathered in memory: records
// in one buffer, sorted by key when written.
type indexRun struct {
	buf  []byte
	recs []indexRec
}

// indexRec is a record of an indexRun: its key and value in buf.
type indexRec struct{ off, klen, vlen uint32 }

func (r *indexRun) add(key, value []byte) {
	if r.buf == nil { // made once at its full size: never grown by doubling
		r.buf = make([]byte, 0, indexRunBytes+1024)
		r.recs = make([]indexRec, 0, indexRunBytes/32)
	}
	r.recs = append(r.recs, indexRec{uint32(len(r.buf)), uint32(len(key)), uint32(len(value))})
	r.buf = append(append(r.buf, key...), value...)
}

func (r *indexRun) keyOf(x indexRec) []byte { return r.buf[x.off : x.off+x.klen] }

// writeTo sorts the run, writes it into sc and empties it.
func (r *indexRun) writeTo(ctx context.Context, sc Scratch) error {
	if len(r.recs) == 0 {
		return nil
	}
	slices.SortFunc(r.recs, func(a, b indexRec) int { return bytes.Compare(r.keyOf(a), r.keyOf(b)) })
	i := 0
	err := sc.IngestSorted(ctx, func() ([]byte, []byte, bool) {
		if i == len(r.recs) {
			return nil, nil, false
		}
		x := r.recs[i]
		i++
		return r.keyOf(x), r.buf[x.off+x.klen : x.off+x.klen+x.vlen], true
	})
	r.buf, r.recs = r.buf[:0], r.recs[:0]
	return err
}

// indexWriter sorts and writes the runs of an upload's index into its
// scratch store on a goroutine of its own, while the pass fills the next
// run: two runs at most, one being filled, one being written.
type indexWriter struct {
	stage[*indexRun]
	free chan *indexRun
	err  error // the first failure, set before done is closed
}

func startIndexWriter(ctx context.Context, sc Scratch) *indexWriter {
	ctx, cancel := context.WithCancel(ctx)
	w := &indexWriter{stage: newStage[*indexRun](cancel, 0), free: make(chan *indexRun, 1)}
	w.free <- &indexRun{}
	go func() {
		defer close(w.done)
		for r := range w.full {
			if err := r.writeTo(ctx, sc); err != nil {
				w.err = err
				return
			}
			w.free <- r // never blocks: the pass took the other one
		}
	}()
	return w
}

// write hands r over to be written and returns an empty run to fill; it
// fails once a run failed to be written.
func (w *indexWriter) write(r *indexRun) (*indexRun, error) {
	select {
	case w.full <- r:
	case <-w.done:
		return nil, w.err
	}
	select {
	case r = <-w.free:
		return r, nil
	case <-w.done:
		return nil, w.err
	}
}

// finish writes r, the last run, and waits for every run to be written.
func (w *indexWriter) finish(r *indexRun) error {
	if len(r.recs) > 0 {
		if _, err := w.write(r); err != nil {
			return err
		}
	}
	w.closeFull()
	<-w.done
	w.cancel()
	w.free = nil // the spare run's memory can go
	return w.err
}

// abort stops the writing and waits for the goroutine.
func (w *indexWriter) abort() { w.stop() }

// checkIndex reads the index back, sorted: the event IDs through
// domain.FileIDs, the item changes through domain.FileItems, whose counts
// end the file's check.
func (u *upload) checkIndex() error {
	const op = "upload"
	err := u.runs.finish(u.run)
	u.run = nil // its memory can go
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	var ids domain.FileIDs
	err = u.scan(indexID, func(k, _ []byte) error {
		if len(k) != 1+16+8 {
			return domain.Corruption("upload index: a key of %d bytes", len(k))
		}
		return ids.Next(domain.EventID(k[1:17]))
	})
	if err != nil {
		return err
	}
	items := u.chk.Items()
	var ch domain.FileChange
	err = u.scan(indexChange, func(k, v []byte) error {
		if len(k) < 1+1+1+8 || len(v) < 3 {
			return domain.Corruption("upload index: a change of %d and %d bytes", len(k), len(v))
		}
		name := k[2 : len(k)-9]
		if ch.Kind != k[1] || ch.ID != string(name) {
			ch.Kind, ch.ID = k[1], string(name)
		}
		ch.Op = domain.FileOp(v[0])
		ver, n := binary.Uvarint(v[1:])
		seg, m := binary.Uvarint(v[1+max(n, 0):])
		if n <= 0 || m <= 0 || 1+n+m != len(v)-1 {
			return domain.Corruption("upload index: a change that does not decode")
		}
		ch.Version, ch.Segment, ch.Late = uint32(ver), seg, v[len(v)-1] == 1
		return items.Change(&ch)
	})
	if err != nil {
		return err
	}
	return u.chk.Done(items.Counts())
}

// scan calls fn with every key of the index under prefix, in order.
func (u *upload) scan(prefix byte, fn func(k, v []byte) error) error {
	it, err := u.index.NewIter([]byte{prefix}, []byte{prefix + 1})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok, n := it.First(), 0; ok; ok, n = it.Next(), n+1 {
		if n%4096 == 0 {
			if err := u.ctx.Err(); err != nil {
				return err
			}
		}
		v, err := it.Value()
		if err != nil {
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			return err
		}
	}
	return it.Error()
}
