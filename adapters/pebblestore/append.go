package pebblestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Group commit limits. The writer takes every request queued when it wakes,
// up to these bounds, and commits them in one synced batch.
const (
	maxQueuedRequests = 1024
	maxGroupRequests  = 512
	maxGroupEvents    = 16384
	maxGroupBytes     = 16 << 20
	// maxGroupsInFlight bounds the groups applied but not yet synced.
	maxGroupsInFlight = 64
	// maxRecentIDs bounds the writer's index of recently written event
	// IDs: the IDs of the groups a request's precheck may not have seen
	// (a few groups; an older precheck makes the writer look its IDs up
	// in the database). A Go map does not shrink, so this is also what
	// the index holds on to after a burst of appends.
	maxRecentIDs = 1 << 14
)

// maxCachedHeads bounds the writer's cache of stream heads; a full cache
// is dropped for a new one (heads are then read back from Pebble, or known
// absent from the stream filter), so that a burst of new streams, such as
// the name claims of a restore, does not keep its memory. Tests lower it.
var maxCachedHeads = 1 << 14

const opAppend = "append"

// appendReq is one Append call waiting for the writer.
type appendReq struct {
	ctx      context.Context
	stream   string
	expected domain.ExpectedRevision
	ids      []domain.EventID
	recs     [][]byte // encoded records, revision not yet set
	size     int
	done     chan appendResp // buffered: the writer never blocks on it
	// checkedAt is the number of groups applied when the caller found none
	// of ids in the database (see precheck); the writer then only looks at
	// the groups applied since. fullCheck asks the writer to look every ID
	// up in the database instead.
	checkedAt uint64
	fullCheck bool
	// parts, when set, makes this an AppendMulti: the parts are written all
	// or none, and the fields above other than ctx, size and done are
	// unused.
	parts []*appendReq
}

type appendResp struct {
	res   commands.AppendResult
	multi []commands.AppendResult // an AppendMulti's, one per part
	err   error
}

// Append writes events atomically at the end of stream if expected holds and
// returns once they are durable (a pebble.Sync commit). The log assigns each
// event its Revision and Position (global, from 1, contiguous); the values
// the caller set in those fields are ignored. A batch whose event IDs are
// all already in the stream is a retry: it writes nothing and returns the
// original result (first and last position, last revision of those events),
// whatever expected says.
//
// Errors: domain.ErrInvalidArgument for an empty stream name, an empty
// batch, an event whose Stream differs from stream, a zero or duplicated
// event ID, or event IDs partly already in the stream (or already in
// another stream); domain.ErrWrongExpectedRevision (built with
// domain.WrongRevision) when expected does not hold; domain.ErrUnavailable
// when the store is closed or a commit failed (the store then refuses every
// later append); ctx.Err() when ctx ends first, in which case the batch may
// or may not have been committed: retry it with the same event IDs.
//
// Safe for concurrent use; concurrent calls are committed together (group
// commit). Idempotent on event IDs.
func (s *Store) Append(ctx context.Context, stream string, expected domain.ExpectedRevision, events []domain.Event) (commands.AppendResult, error) {
	r, err := newAppendReq(ctx, stream, expected, events)
	if err != nil {
		return commands.AppendResult{}, err
	}
	resp, err := s.submit(ctx, r)
	return resp.res, err
}

// AppendMulti writes every part, each at the end of its stream if its
// expected revision holds, in one synced Pebble batch: all parts or none.
// Revisions, positions, idempotency and errors are Append's, for each
// part; a call whose event IDs are all already in their streams is a
// retry answered with the original results. See
// commands.MultiAppender. Safe for concurrent use; committed together
// with concurrent appends (group commit).
func (s *Store) AppendMulti(ctx context.Context, parts []commands.StreamAppend) ([]commands.AppendResult, error) {
	if err := commands.CheckMultiAppend(opAppend, parts); err != nil {
		return nil, err
	}
	r := &appendReq{ctx: ctx, done: make(chan appendResp, 1), parts: make([]*appendReq, len(parts))}
	for i, p := range parts {
		part, err := newAppendReq(ctx, p.Stream, p.Expected, p.Events)
		if err != nil {
			return nil, err
		}
		r.parts[i] = part
		r.size += part.size
	}
	resp, err := s.submit(ctx, r)
	return resp.multi, err
}

// submit hands r to the writer and waits for its answer.
func (s *Store) submit(ctx context.Context, r *appendReq) (appendResp, error) {
	if err := ctx.Err(); err != nil {
		return appendResp{}, err
	}
	if err := s.enter(opAppend); err != nil {
		return appendResp{}, err
	}
	if s.readOnly {
		s.leave()
		return appendResp{}, &domain.Error{Op: opAppend, Kind: domain.ErrUnavailable, Msg: "the store is open read-only"}
	}
	if r.parts == nil {
		s.precheck(r)
	} else {
		s.precheckParts(r.parts)
	}
	select {
	case s.reqs <- r:
		s.leave()
	case <-ctx.Done():
		s.leave()
		return appendResp{}, ctx.Err()
	}
	select {
	case resp := <-r.done:
		return resp, resp.err
	case <-ctx.Done():
		return appendResp{}, ctx.Err()
	}
}

// newAppendReq validates an append and encodes its records, in the caller's
// goroutine so that the writer only assigns revisions and positions.
func newAppendReq(ctx context.Context, stream string, expected domain.ExpectedRevision, events []domain.Event) (*appendReq, error) {
	if err := commands.CheckAppendBatch(opAppend, stream, events); err != nil {
		return nil, err
	}
	size := 0
	ids := make([]domain.EventID, len(events))
	for i := range events {
		size += domain.EventRecordSize(&events[i])
		ids[i] = events[i].ID
	}
	buf := make([]byte, 0, size)
	ends := make([]int, len(events))
	for i := range events {
		buf = appendRecord(buf, &events[i])
		ends[i] = len(buf)
	}
	recs := make([][]byte, len(events))
	start := 0
	for i, end := range ends {
		recs[i] = buf[start:end:end]
		start = end
	}
	return &appendReq{ctx: ctx, stream: stream, expected: expected, ids: ids, recs: recs,
		size: len(buf), done: make(chan appendResp, 1)}, nil
}

// precheck looks the request's event IDs up in the database in the caller's
// goroutine, so that the writer, which serialises every append, does not
// have to: when none is found the writer only checks the IDs against the
// groups it applied after this look-up. Any hit (a retry) or read error
// leaves the whole check to the writer. The caller holds life.
//
// Event IDs are ULIDs, whose first bytes are a timestamp, so the IDs of one
// batch span a narrow key range that holds few other IDs: one iterator over
// that range costs one seek instead of one point look-up per event. When
// the range turns out crowded (IDs that are not time-ordered), it falls
// back to point look-ups, which bloom filters keep cheap in sstables.
func (s *Store) precheck(r *appendReq) {
	r.checkedAt = s.applied.Load()
	ids := r.ids
	if len(ids) > 1 {
		ids = slices.Clone(ids)
		slices.SortFunc(ids, func(a, b domain.EventID) int { return a.Compare(b) })
	}
	r.fullCheck = s.anyIDMaybePresent(ids)
}

// precheckParts is precheck for the parts of a multi-stream append, with
// one look-up of all their event IDs (the IDs of one append are drawn
// together: one narrow range); any hit leaves every part to the writer.
func (s *Store) precheckParts(parts []*appendReq) {
	at := s.applied.Load()
	var ids []domain.EventID
	for _, p := range parts {
		ids = append(ids, p.ids...)
	}
	slices.SortFunc(ids, func(a, b domain.EventID) int { return a.Compare(b) })
	full := s.anyIDMaybePresent(ids)
	for _, p := range parts {
		p.checkedAt, p.fullCheck = at, full
	}
}

// anyIDMaybePresent tells whether any of ids, sorted, may be in the
// database: false only when the look-up found none of them.
func (s *Store) anyIDMaybePresent(ids []domain.EventID) bool {
	lower := appendIDKey(make([]byte, 0, idKeyLen), ids[0])
	upper := append(appendIDKey(make([]byte, 0, idKeyLen+1), ids[len(ids)-1]), 0)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return true
	}
	defer it.Close()
	budget := 8*len(ids) + 64 // a Next costs a small fraction of a Get
	i := 0
	for valid := it.First(); valid; valid = it.Next() {
		if budget--; budget < 0 {
			return s.anyIDPresent(ids[i:])
		}
		k := it.Key()
		if len(k) != idKeyLen {
			return true
		}
		var id domain.EventID
		copy(id[:], k[1:])
		for i < len(ids) && ids[i].Compare(id) < 0 {
			i++
		}
		if i == len(ids) {
			return false
		}
		if ids[i] == id {
			return true
		}
	}
	return it.Error() != nil
}

// anyIDPresent looks ids up one by one; a read error counts as present so
// that the writer checks again.
func (s *Store) anyIDPresent(ids []domain.EventID) bool {
	key := make([]byte, 0, idKeyLen)
	for _, id := range ids {
		key = appendIDKey(key[:0], id)
		_, closer, err := s.db.Get(key)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err == nil {
			_ = closer.Close()
		}
		return true
	}
	return false
}

// writer is the state of the single writer goroutine. Only run and the
// functions it calls touch it.
type writer struct {
	s     *Store
	next  uint64               // position of the next event
	heads map[string]headState // stream heads known to be current
	seq   uint64               // groups applied so far (Store.applied)
	// recent indexes the event IDs of the group being built and of the last
	// groups applied, oldest first in recentGroups; it covers every group
	// after recentFrom.
	recent       map[domain.EventID]idLoc
	recentGroups []recentGroup
	recentFrom   uint64
	groupIDs     []domain.EventID // IDs written by the group being built
	key          []byte
	// headIter reads the heads of streams not in heads while a group is
	// prepared (one iterator moved from stream to stream, not one made per
	// stream); nil between groups.
	headIter *pebble.Iterator
	// streams filters out the streams that have no event (streams.go).
	streams streamFilterState
}

type recentGroup struct {
	seq uint64
	ids []domain.EventID
}

type headState struct {
	exists bool
	rev    uint64
}

type idLoc struct {
	stream   string
	pos, rev uint64
}

func newWriter(s *Store, head uint64) writer {
	return writer{s: s, next: head + 1, heads: make(map[string]headState),
		recent: make(map[domain.EventID]idLoc), key: make([]byte, 0, 64)}
}

// applied is a group whose batch is in the WAL and the memtable but not
// yet known to be synced. The syncer answers its requests once it is.
type applied struct {
	b       *pebble.Batch // nil when the group wrote nothing
	group   []*appendReq
	answers []appendResp
	last    uint64 // position of the group's last event
}

// run is the writer goroutine: it takes a group of queued requests, decides
// them, applies their batch with a synced commit without waiting for the
// sync (Pebble's ApplyNoSyncWait), and hands the group to the syncer, which
// waits for the sync and answers. Groups enter the WAL in order, so a crash
// keeps a prefix of them; while group n syncs, group n+1 is being built and
// written, and Pebble syncs everything written meanwhile with one fsync.
func (s *Store) run() {
	syncer := make(chan *applied, maxGroupsInFlight)
	syncerDone := make(chan struct{})
	go s.syncLoop(syncer, syncerDone)
	defer func() {
		close(syncer)
		<-syncerDone
		close(s.writerDone)
	}()
	w := &s.w
	w.startStreamFilter()
	for {
		var first *appendReq
		select {
		case <-s.stop:
			s.failQueued()
			return
		default:
		}
		select {
		case first = <-s.reqs:
		case <-s.stop:
			s.failQueued()
			return
		}
		group := make([]*appendReq, 1, 8)
		group[0] = first
		events, bytes := len(first.recs), first.size
	fill:
		for len(group) < maxGroupRequests && events < maxGroupEvents && bytes < maxGroupBytes {
			select {
			case r := <-s.reqs:
				group = append(group, r)
				events += len(r.recs)
				bytes += r.size
			default:
				break fill
			}
		}
		syncer <- w.applyGroup(group, events, bytes)
	}
}

// syncLoop is the syncer goroutine: in group order, it waits for each
// group's WAL sync, publishes the group's positions and answers its
// requests. After a failed sync it fails that group and every later one.
func (s *Store) syncLoop(in <-chan *applied, done chan<- struct{}) {
	defer close(done)
	for a := range in {
		if a.b != nil {
			err := a.b.SyncWait()
			_ = a.b.Close()
			if err != nil && s.failed.Load() == nil {
				ferr := storeErr("commit", err)
				s.failed.Store(&ferr)
			}
			if f := s.failed.Load(); f != nil {
				for i := range a.answers {
					if a.answers[i].err == nil {
						a.answers[i] = appendResp{err: *f}
					}
				}
			} else {
				s.publish(a.last)
			}
		}
		for i, r := range a.group {
			r.done <- a.answers[i]
		}
	}
}

// failQueued answers every request still queued once the store is closing.
// Close has marked the store closed under life, so no request can be
// queued after this drain.
func (s *Store) failQueued() {
	for {
		select {
		case r := <-s.reqs:
			r.done <- appendResp{err: errClosed(opAppend)}
		default:
			return
		}
	}
}

// applyGroup checks every request of group in order against the stream
// heads as left by the requests before it, writes the accepted ones into
// one batch and applies it (synced, without waiting for the sync).
// Rejected requests get their error and write nothing. Answers wait for the
// syncer even when nothing was written: an idempotent retry may have been
// answered from a group that is not synced yet.
func (w *writer) applyGroup(group []*appendReq, events, bytes int) *applied {
	a := &applied{group: group, answers: make([]appendResp, len(group))}
	if f := w.s.failed.Load(); f != nil {
		for i := range a.answers {
			a.answers[i] = appendResp{err: fmt.Errorf("%w: %w", errClosedFailed, *f)}
		}
		return a
	}
	w.takeStreamFilter()
	b := w.s.db.NewBatchWithSize(bytes + events*(logKeyLen+idKeyLen+positionSz+8) + len(group)*64)
	w.groupIDs = make([]domain.EventID, 0, events)
	for i, r := range group {
		if r.parts != nil {
			a.answers[i] = w.prepareMulti(b, r)
			continue
		}
		res, err := w.prepare(b, r)
		a.answers[i] = appendResp{res: res, err: err}
	}
	w.closeHeadIter()
	if b.Empty() {
		_ = b.Close()
		return a
	}
	defer w.endGroup()
	if err := w.s.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		_ = b.Close()
		ferr := storeErr("commit", err)
		w.s.failed.CompareAndSwap(nil, &ferr)
		for i := range a.answers {
			if a.answers[i].err == nil {
				a.answers[i] = appendResp{err: ferr}
			}
		}
		return a
	}
	a.b, a.last = b, w.next-1
	return a
}

// endGroup counts an applied group, publishes the count for prechecks, and
// keeps the group's IDs in recent, forgetting the oldest groups beyond
// maxRecentIDs.
func (w *writer) endGroup() {
	w.seq++
	w.s.applied.Store(w.seq)
	w.recentGroups = append(w.recentGroups, recentGroup{seq: w.seq, ids: w.groupIDs})
	w.groupIDs = nil
	for len(w.recent) > maxRecentIDs && len(w.recentGroups) > 1 {
		old := w.recentGroups[0]
		w.recentGroups[0] = recentGroup{}
		w.recentGroups = w.recentGroups[1:]
		for _, id := range old.ids {
			delete(w.recent, id)
		}
		w.recentFrom = old.seq
	}
}

var errClosedFailed = &domain.Error{Op: opAppend, Kind: domain.ErrUnavailable,
	Msg: "an earlier commit failed; reopen the store"}

// prepare decides one request and, when it is accepted, adds its writes to b.
func (w *writer) prepare(b *pebble.Batch, r *appendReq) (commands.AppendResult, error) {
	if err := r.ctx.Err(); err != nil {
		return commands.AppendResult{}, err
	}
	res, retry, err := w.retried(r)
	if err != nil || retry {
		return res, err
	}
	head, err := w.checkHead(r)
	if err != nil {
		return commands.AppendResult{}, err
	}
	return w.write(b, r, head), nil
}

// prepareMulti decides an AppendMulti: every part is checked against the
// heads as left by the requests before it before any is written, so that
// all parts are added to b or none.
func (w *writer) prepareMulti(b *pebble.Batch, r *appendReq) appendResp {
	if err := r.ctx.Err(); err != nil {
		return appendResp{err: err}
	}
	out := make([]commands.AppendResult, len(r.parts))
	retries := 0
	for i, p := range r.parts {
		res, retry, err := w.retried(p)
		if err != nil {
			return appendResp{err: err}
		}
		if retry {
			out[i] = res
			retries++
		}
	}
	switch {
	case retries == len(r.parts):
		return appendResp{multi: out}
	case retries > 0:
		return appendResp{err: &domain.Error{Op: opAppend, Kind: domain.ErrInvalidArgument,
			Msg:  fmt.Sprintf("%d of the %d parts are already in the log", retries, len(r.parts)),
			Hint: "retry with exactly the original parts, or with new event IDs"}}
	}
	heads := make([]headState, len(r.parts))
	for i, p := range r.parts {
		h, err := w.checkHead(p)
		if err != nil {
			return appendResp{err: err}
		}
		heads[i] = h
	}
	for i, p := range r.parts {
		out[i] = w.write(b, p, heads[i])
	}
	return appendResp{multi: out}
}

// retried tells whether r is a retry: every one of its event IDs already in
// its stream (then res is the original result). Some of them present, or
// any in another stream, is domain.ErrInvalidArgument.
func (w *writer) retried(r *appendReq) (res commands.AppendResult, retry bool, err error) {
	// Idempotency: a batch whose IDs are all in the stream is a retry.
	present := 0
	full := r.fullCheck || r.checkedAt < w.recentFrom
	for _, id := range r.ids {
		loc, ok, err := w.lookupID(id, full)
		if err != nil {
			return commands.AppendResult{}, false, err
		}
		if !ok {
			continue
		}
		if loc.stream != r.stream {
			return commands.AppendResult{}, false, &domain.Error{Op: opAppend, Kind: domain.ErrInvalidArgument, Item: r.stream,
				Msg: fmt.Sprintf("event ID %s is already in stream %q", id, loc.stream), Hint: "use a new event ID"}
		}
		if present == 0 || loc.pos < res.FirstPosition {
			res.FirstPosition = loc.pos
		}
		if loc.pos > res.LastPosition {
			res.LastPosition = loc.pos
			res.LastRevision = loc.rev
		}
		present++
	}
	if present == len(r.ids) {
		return res, true, nil
	}
	if present > 0 {
		return commands.AppendResult{}, false, &domain.Error{Op: opAppend, Kind: domain.ErrInvalidArgument, Item: r.stream,
			Msg:  fmt.Sprintf("%d of the %d event IDs are already in the stream", present, len(r.ids)),
			Hint: "retry with exactly the original batch, or with new event IDs"}
	}
	return commands.AppendResult{}, false, nil
}

// checkHead returns r's stream head if r's expected revision holds there.
func (w *writer) checkHead(r *appendReq) (headState, error) {
	head, err := w.head(r.stream)
	if err != nil {
		return headState{}, err
	}
	if !r.expected.Check(head.exists, head.rev) {
		return headState{}, domain.WrongRevision(r.stream, r.expected, head.exists, head.rev)
	}
	return head, nil
}

// write adds r's events to b after head, the stream's checked head.
func (w *writer) write(b *pebble.Batch, r *appendReq, head headState) commands.AppendResult {
	rev := uint64(0)
	if head.exists {
		rev = head.rev + 1
	}
	res := commands.AppendResult{FirstPosition: w.next}
	var pos8 [8]byte
	for i, rec := range r.recs {
		pos := w.next
		w.next++
		setRecordRevision(rec, rev)
		putPos(pos8[:], pos)
		w.key = appendLogKey(w.key[:0], pos)
		_ = b.Set(w.key, rec, nil)
		w.key = appendIDKey(w.key[:0], r.ids[i])
		_ = b.Set(w.key, pos8[:], nil)
		w.recent[r.ids[i]] = idLoc{stream: r.stream, pos: pos, rev: rev}
		w.groupIDs = append(w.groupIDs, r.ids[i])
		res.LastPosition, res.LastRevision = pos, rev
		rev++
	}
	// One stream-index entry per append: its events have consecutive
	// revisions and consecutive positions.
	firstRev := res.LastRevision + 1 - uint64(len(r.recs))
	if firstRev == 0 {
		w.addStream(r.stream)
	}
	w.key = appendStreamKey(w.key[:0], r.stream, firstRev)
	var run [8 + binary.MaxVarintLen64]byte
	_ = b.Set(w.key, appendRun(run[:0], res.FirstPosition, len(r.recs)), nil)
	if len(w.heads) >= maxCachedHeads {
		w.heads = make(map[string]headState)
	}
	w.heads[r.stream] = headState{exists: true, rev: res.LastRevision}
	return res
}

// lookupID finds an event ID among the recent groups (including the one
// being built) and, when full is set, in the database.
func (w *writer) lookupID(id domain.EventID, full bool) (idLoc, bool, error) {
	if loc, ok := w.recent[id]; ok {
		return loc, true, nil
	}
	if !full {
		return idLoc{}, false, nil
	}
	w.key = appendIDKey(w.key[:0], id)
	v, closer, err := w.s.db.Get(w.key)
	if errors.Is(err, pebble.ErrNotFound) {
		return idLoc{}, false, nil
	}
	if err != nil {
		return idLoc{}, false, storeErr("read event ID index", err)
	}
	pos, ok := getUint64(v)
	_ = closer.Close()
	if !ok {
		return idLoc{}, false, domain.Corruption("pebblestore: event ID %s: bad index entry", id)
	}
	rec, found, err := w.s.get(logKey(pos))
	if err != nil {
		return idLoc{}, false, storeErr("read event", err)
	}
	if !found {
		return idLoc{}, false, domain.Corruption("pebblestore: event ID %s points at missing position %d", id, pos)
	}
	rev, gotID, stream, err := recordHeader(pos, rec)
	if err != nil {
		return idLoc{}, false, err
	}
	if gotID != id {
		return idLoc{}, false, domain.Corruption("pebblestore: event ID %s points at position %d, which holds event %s", id, pos, gotID)
	}
	return idLoc{stream: stream, pos: pos, rev: rev}, true, nil
}

// head returns the stream's head as left by the requests already accepted.
func (w *writer) head(stream string) (headState, error) {
	if h, ok := w.heads[stream]; ok {
		return h, nil
	}
	if w.noStream(stream) {
		return headState{}, nil
	}
	if w.headIter == nil {
		it, err := w.s.db.NewIter(nil)
		if err != nil {
			return headState{}, storeErr("read stream head", err)
		}
		w.headIter = it
	}
	h, err := streamHeadAt(w.headIter, stream)
	if err != nil {
		return headState{}, err
	}
	if len(w.heads) >= maxCachedHeads {
		w.heads = make(map[string]headState)
	}
	w.heads[stream] = h
	return h, nil
}

// closeHeadIter closes the iterator of the group's head reads.
func (w *writer) closeHeadIter() {
	if w.headIter != nil {
		_ = w.headIter.Close()
		w.headIter = nil
	}
}

// publish makes positions up to head readable and wakes every waiting
// subscription.
func (s *Store) publish(head uint64) {
	s.durable.Store(head)
	s.notifyMu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.notifyMu.Unlock()
}

// changed returns a channel closed at the next publish. Take it before
// reading durable, so that no publish can be missed.
func (s *Store) changed() <-chan struct{} {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	return s.notify
}
