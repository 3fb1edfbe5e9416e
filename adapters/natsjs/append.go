package natsjs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

const opAppend = "append"

const (
	// MaxBatchEvents is the largest batch Append takes: each event is two
	// messages of one atomic batch (the event and its event-ID marker), and
	// the server accepts 1000 messages in a batch by default.
	MaxBatchEvents = 500
	// maxAttempts bounds the publish attempts of one Append that keep
	// losing races with other writers or finding the server busy.
	maxAttempts = 64
	// headerReserve is the room left in a message for its headers.
	headerReserve = 512
	// maxCachedHeads bounds the cache of stream heads; idle entries are
	// dropped beyond it.
	maxCachedHeads = 1 << 16
	// writeTimeout bounds the wait for the answer to one write; an
	// Append that gets none asks again (failover).
	writeTimeout = requestTimeout / 2
)

// Header names of the JetStream protocol.
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
	hdrExpectSubj  = "Nats-Expected-Last-Subject-Sequence"
)

// Server error codes this adapter tells apart.
const (
	codeWrongLastSeq         = jsapi.JSErrCodeStreamWrongLastSequence         // 10071
	codeWrongLastSeqConstant = jsapi.JSErrCodeStreamWrongLastSequenceConstant // 10164: R>1 conflicts, subject in flight
	codeMsgTooLarge          = jsapi.JSErrCodeStreamMessageExceedsMaximum     // 10054
	codeBatchIncomplete      = jsapi.ErrorCode(10176)
	codeBatchTooLarge        = jsapi.ErrorCode(10199)
	codeBatchTooManyInflight = jsapi.ErrorCode(10210)
	codeClusterNotAvailable  = jsapi.ErrorCode(10008) // no leader now: an election is under way
	codeNoMessageFound       = jsapi.ErrorCode(10037)
)

// Append writes events atomically at the end of stream if expected holds,
// and returns once the server has acknowledged the batch. The log assigns
// each event its Revision (0-based in the stream) and Position (the
// JetStream sequence of its message: strictly increasing, not contiguous);
// the values the caller set in those fields are ignored. A batch whose event
// IDs are all already in the stream is a retry: it writes nothing and
// returns the original result (first and last position, last revision of
// those events), whatever expected says.
//
// Errors: domain.ErrInvalidArgument for an empty stream name, an empty
// batch or one of more than MaxBatchEvents events, an event whose Stream
// differs from stream, a zero or duplicated event ID, an event too large
// for the server's max_payload, or event IDs partly already in the stream
// (or already in another stream); domain.ErrWrongExpectedRevision (built
// with domain.WrongRevision) when expected does not hold;
// domain.ErrUnavailable when the log is closed, the server cannot be
// reached, or the batch kept losing races; ctx.Err() when ctx ends first.
// After ctx.Err() or domain.ErrUnavailable the batch may or may not have
// been written: retry it with the same event IDs.
//
// Safe for concurrent use; appends to one stream from one Log are
// serialised, concurrent appends to different streams are committed
// together (see doc.go), and appends from several Logs race and the server
// decides.
// Idempotent on event IDs, forever (not only within a duplicate window).
func (l *Log) Append(ctx context.Context, stream string, expected domain.ExpectedRevision, events []domain.Event) (commands.AppendResult, error) {
	b, err := l.newBatch(stream, events)
	if err != nil {
		return commands.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return commands.AppendResult{}, err
	}
	if err := l.enter(opAppend); err != nil {
		return commands.AppendResult{}, err
	}
	h, err := l.heads.lock(ctx, stream)
	if err != nil {
		return commands.AppendResult{}, err
	}
	defer l.heads.unlock(stream, h)

	attempt, wait, alone := 0, false, false
	fromLeader := false        // read the head from the stream's leader
	var failingSince time.Time // of the first write no server answered
	for {
		if wait {
			if err := backoff(ctx, attempt); err != nil {
				return commands.AppendResult{}, err
			}
			wait = false
		}
		cached, sure := h.known, true
		if !cached {
			var err error
			if sure, err = l.readHead(ctx, opAppend, b.subject, h, fromLeader); err != nil {
				return commands.AppendResult{}, err
			}
		}
		if !expected.Check(h.exists, h.rev) {
			if cached || !sure {
				// Our cache, or the replica we read, may be behind
				// other writers: ask the leader.
				h.known, fromLeader = false, true
				continue
			}
			if res, found, err := l.resolve(ctx, b); err != nil || found {
				return res, err
			}
			return commands.AppendResult{}, domain.WrongRevision(stream, expected, h.exists, h.rev)
		}
		var res commands.AppendResult
		var err error
		if len(b.ids) == 1 && l.claimSingle {
			res, err = l.commitClaimed(ctx, b, h)
		} else {
			res, err = l.commit(ctx, b, h, alone)
		}
		var conflict *conflictError
		switch {
		case err == nil:
			h.known, h.exists, h.rev, h.seq = true, true, res.LastRevision, res.LastPosition
			return res, nil
		case errors.Is(err, errAlone):
			alone = true
			continue
		case !errors.As(err, &conflict):
			h.known = false
			return commands.AppendResult{}, err
		}
		// The stream moved, or some event ID is already in the log or
		// claimed, or the server could not decide now.
		h.known, fromLeader = false, true
		if !conflict.transient {
			if res, found, err := l.resolve(ctx, b); err != nil || found {
				return res, err
			}
		}
		// Neither a retry nor a duplicate: read the stream's head again and
		// check expected against it.
		if conflict.failover {
			if err := stillWaiting(&failingSince, stream, conflict); err != nil {
				return commands.AppendResult{}, err
			}
			wait = true
			continue
		}
		attempt++
		if attempt == maxAttempts {
			return commands.AppendResult{}, &domain.Error{Op: opAppend, Kind: domain.ErrUnavailable, Item: stream,
				Msg:  fmt.Sprintf("gave up after %d attempts lost races or found the server busy (last: %s)", attempt, conflict.desc),
				Hint: "retry later"}
		}
		wait = conflict.transient || attempt > 2
	}
}

// batch is a validated Append request, encoded.
type batch struct {
	stream  string
	subject string
	ids     []domain.EventID
	recs    [][]byte // event payloads; groupMsgs sets their revisions
	// marks holds, for each event ID, the sequence of the claim on its
	// subject that the next write replaces (0: the subject is empty);
	// resolve sets it (claim.go).
	marks []uint64
	// pending is set when one of the claims in marks still waits for its
	// event: every such claim is for the stream's end at sequence slot,
	// and only a write expecting exactly that end may replace it.
	pending bool
	slot    uint64
}

// newBatch validates an append and encodes its payloads.
func (l *Log) newBatch(stream string, events []domain.Event) (*batch, error) {
	subject, err := l.eventSubject(opAppend, stream)
	if err != nil {
		return nil, err
	}
	if err := commands.CheckAppendBatch(opAppend, stream, events); err != nil {
		return nil, err
	}
	if len(events) > MaxBatchEvents {
		return nil, &domain.Error{Op: opAppend, Kind: domain.ErrInvalidArgument, Item: stream,
			Msg: fmt.Sprintf("the batch has %d events, more than the %d an atomic append takes", len(events), MaxBatchEvents)}
	}
	// The connection knows the server's max_payload (0 before it ever
	// connected): leave the check to the server then.
	limit := math.MaxInt
	if mp := l.nc.MaxPayload(); mp > 0 {
		limit = int(mp) - headerReserve - len(subject)
	}
	size := 0
	for i := range events {
		e := &events[i]
		n := recordSize(e)
		if n > limit {
			return nil, &domain.Error{Op: opAppend, Kind: domain.ErrInvalidArgument, Item: stream,
				Msg:  fmt.Sprintf("event %d (ID %s) takes %d bytes, more than the %d a message may carry", i, e.ID, n, limit),
				Hint: "raise the NATS server's max_payload"}
		}
		size += n
	}
	b := &batch{stream: stream, subject: subject, ids: make([]domain.EventID, len(events)), recs: make([][]byte, len(events)),
		marks: make([]uint64, len(events))}
	buf := make([]byte, 0, size)
	start := 0
	for i := range events {
		b.ids[i] = events[i].ID
		buf = appendRecord(buf, &events[i], 0)
		b.recs[i] = buf[start:len(buf):len(buf)]
		start = len(buf)
	}
	return b, nil
}

// eventSubject is the subject of stream's events.
func (l *Log) eventSubject(op, stream string) (string, error) {
	if stream == "" {
		return "", domain.Invalid(op, "the stream name is empty")
	}
	tok := subjectToken(stream)
	if len(tok) > maxTokenLen {
		return "", domain.Invalid(op, "the stream name of %d bytes is too long", len(stream))
	}
	return l.evPrefix + tok, nil
}

func (l *Log) idSubject(id domain.EventID) string { return l.idPrefix + id.String() }

// conflictError is an atomic batch the server refused because an expected
// last subject sequence did not hold (transient when it could not even be
// checked, or the server was busy).
type conflictError struct {
	transient bool
	// failover: no server took the write or answered it in time (a
	// stream leader being elected, a connection moving to another
	// server); the write may or may not have landed. Append asks again,
	// as a retry, for up to electionWait.
	failover bool
	desc     string
}

// stillWaiting says whether a write may be asked again after the failover
// c: nil until no server has answered for electionWait since *since (set
// at the first call), then domain.ErrUnavailable.
func stillWaiting(since *time.Time, stream string, c *conflictError) error {
	if since.IsZero() {
		*since = time.Now()
	}
	if time.Since(*since) <= electionWait {
		return nil
	}
	return &domain.Error{Op: opAppend, Kind: domain.ErrUnavailable, Item: stream,
		Msg:  fmt.Sprintf("no server has answered for %s (last: %s); the events may or may not have been written", electionWait, c.desc),
		Hint: "retry with the same event IDs"}
}

// failover returns the conflictError for err when err says that no server
// took a write or answered it in time, while ctx is still alive; nil for
// any other error.
func failover(ctx context.Context, err error) *conflictError {
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, nats.ErrNoResponders):
		return &conflictError{transient: true, failover: true, desc: "no server took the write (a stream leader is being elected)"}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return &conflictError{transient: true, failover: true, desc: fmt.Sprintf("no answer within %s", writeTimeout)}
	case errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrReconnectBufExceeded):
		return &conflictError{transient: true, failover: true, desc: "the connection is moving to another server"}
	}
	return nil
}

func (e *conflictError) Error() string { return "jetstream: append: batch refused: " + e.desc }

// resolve looks b's event IDs up. found is set, with the original result,
// when every one of them is in b's stream (a retry). Some of them in it,
// or any in another stream (written or claimed), is
// domain.ErrInvalidArgument. Otherwise it records in b the claims on its
// IDs that the next write must replace (claim.go).
func (l *Log) resolve(ctx context.Context, b *batch) (commands.AppendResult, bool, error) {
	subjects := make([]string, len(b.ids))
	want := make(map[string]int, len(b.ids))
	for i, id := range b.ids {
		subjects[i] = l.idSubject(id)
		want[subjects[i]] = i
	}
	msgs, _, err := l.getBatch(ctx, opAppend, directRequest{MultiLastFor: subjects})
	if err != nil {
		return commands.AppendResult{}, false, err
	}
	got := make(map[string]stored, len(msgs))
	for _, m := range msgs {
		if _, ok := want[m.subject]; !ok {
			return commands.AppendResult{}, false, unavailable(opAppend, fmt.Errorf("event-ID look-up answered with subject %q", m.subject))
		}
		got[m.subject] = m
	}
	if l.r.replicated() && len(got) < len(subjects) {
		// The replica that answered may be behind: ask the leader for
		// the IDs it did not find.
		for _, subj := range subjects {
			if _, ok := got[subj]; ok {
				continue
			}
			m, found, err := l.getOne(ctx, opAppend, directRequest{LastFor: subj})
			if err != nil {
				return commands.AppendResult{}, false, err
			}
			if found {
				got[subj] = m
			}
		}
	}
	var res commands.AppendResult
	present := 0
	b.pending, b.slot = false, 0
	for i, id := range b.ids {
		b.marks[i] = 0
		m, ok := got[subjects[i]]
		if !ok {
			continue
		}
		mk, err := decodeMarker(m.seq, m.data)
		if err != nil {
			return commands.AppendResult{}, false, err
		}
		if mk.stream != b.stream {
			what := "already in"
			if mk.claim {
				what = "claimed by an append to"
			}
			return commands.AppendResult{}, false, &domain.Error{Op: opAppend, Kind: domain.ErrInvalidArgument, Item: b.stream,
				Msg: fmt.Sprintf("event ID %s is %s stream %q", id, what, mk.stream), Hint: "use a new event ID"}
		}
		pos, rev := m.seq+mk.offset, mk.rev
		if mk.claim {
			st, err := l.claimState(ctx, b.subject, id, mk)
			if err != nil {
				return commands.AppendResult{}, false, err
			}
			switch {
			case st.orphan:
				b.marks[i] = m.seq
				continue
			case !st.placed:
				if b.pending && b.slot != mk.after {
					// Two claims waiting for two ends of the stream:
					// one of them is stale by now; look again later.
					return commands.AppendResult{}, false, nil
				}
				b.marks[i], b.pending, b.slot = m.seq, true, mk.after
				continue
			}
			pos, rev = st.pos, st.rev
		}
		if present == 0 || pos < res.FirstPosition {
			res.FirstPosition = pos
		}
		if pos > res.LastPosition {
			res.LastPosition, res.LastRevision = pos, rev
		}
		present++
	}
	switch {
	case present == 0:
		return commands.AppendResult{}, false, nil
	case present < len(b.ids):
		return commands.AppendResult{}, false, &domain.Error{Op: opAppend, Kind: domain.ErrInvalidArgument, Item: b.stream,
			Msg:  fmt.Sprintf("%d of the %d event IDs are already in the stream", present, len(b.ids)),
			Hint: "retry with exactly the original batch, or with new event IDs"}
	}
	return res, true, nil
}

// readHead reads the stream's last event into h, for operation op (named
// in its errors): from the stream's leader when fromLeader is set (see
// reader), else from whichever replica answers a direct get, which may be
// behind. sure reports that it was the leader (or the one server of a
// one-replica stream). An append may go ahead on a head that is not sure,
// since the server checks its expectation; it reports a wrong expected
// revision only on a sure one.
func (l *Log) readHead(ctx context.Context, op, subject string, h *head, fromLeader bool) (sure bool, err error) {
	req := directRequest{LastFor: subject}
	var m stored
	var found bool
	sure = fromLeader || !l.r.replicated()
	if !sure {
		m, found, err = directGet(ctx, l.nc, l.r.direct, req)
	}
	if sure || err != nil { // a replica that does not answer: ask the leader
		sure = true
		if m, found, err = l.getOne(ctx, op, req); err != nil {
			return false, err
		}
	}
	h.known, h.exists, h.rev, h.seq = true, found, 0, 0
	if !found {
		return sure, nil
	}
	rev, err := recordRevision(m.seq, m.data)
	if err != nil {
		h.known = false
		return false, err
	}
	h.exists, h.rev, h.seq = true, rev, m.seq
	return sure, nil
}

// backoff sleeps a little longer after each failed attempt, with jitter.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(min(1<<min(attempt, 16), 64)) * time.Millisecond
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// head is what this Log knows of one stream's end, guarded by mu: appends
// to the stream hold mu, so that they do not race each other.
type head struct {
	mu     chan struct{} // a lock that a waiting Append can give up on
	refs   int           // guarded by heads.mu
	known  bool          // the fields below are current as far as we know
	exists bool
	rev    uint64 // revision of the last event
	seq    uint64 // its sequence (position)
}

// heads holds the head of every stream being appended to, and of recently
// appended streams.
type heads struct {
	mu sync.Mutex
	m  map[string]*head
}

// lock returns stream's head, locked.
func (hs *heads) lock(ctx context.Context, stream string) (*head, error) {
	hs.mu.Lock()
	h, ok := hs.m[stream]
	if !ok {
		h = &head{mu: make(chan struct{}, 1)}
		hs.m[stream] = h
	}
	h.refs++
	hs.mu.Unlock()
	select {
	case h.mu <- struct{}{}:
		return h, nil
	case <-ctx.Done():
		hs.release(stream, h, false)
		return nil, ctx.Err()
	}
}

// unlock unlocks h.
func (hs *heads) unlock(stream string, h *head) {
	forget := !h.known // read while h is still locked
	<-h.mu
	hs.release(stream, h, forget)
}

// release drops a reference to h, and h itself when it is unused and
// either forgotten or beyond the cache's bound.
func (hs *heads) release(stream string, h *head, forget bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h.refs--
	if h.refs == 0 && (forget || len(hs.m) > maxCachedHeads) {
		delete(hs.m, stream)
	}
}
