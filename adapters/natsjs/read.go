package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"github.com/kmsbackup/kmsbackup/domain"
)

const (
	opReadStream = "read stream"
	opReadAll    = "read all"
	opHead       = "head"
	// readBatch is the most messages one direct-get request asks for.
	readBatch = 1024
	// readMaxBytes bounds the bytes of one direct-get response (the server
	// stops after the message that crosses it).
	readMaxBytes = 8 << 20
)

// directRequest is a JetStream direct-get request (JSApiMsgGetRequest).
// Direct gets read the stream without a consumer, and the server isolates
// them from atomic batch commits: a read sees all of a batch or none of it.
type directRequest struct {
	Seq          uint64   `json:"seq,omitempty"`
	LastFor      string   `json:"last_by_subj,omitempty"`
	NextFor      string   `json:"next_by_subj,omitempty"`
	Batch        int      `json:"batch,omitempty"`
	MaxBytes     int      `json:"max_bytes,omitempty"`
	MultiLastFor []string `json:"multi_last,omitempty"`
}

// stored is one message as a direct get returns it.
type stored struct {
	subject string
	seq     uint64
	data    []byte
}

func parseStored(m *nats.Msg) (stored, error) {
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil || seq == 0 {
		return stored{}, fmt.Errorf("direct get answered without a sequence (%q)", m.Header.Get("Nats-Sequence"))
	}
	return stored{subject: m.Header.Get("Nats-Subject"), seq: seq, data: m.Data}, nil
}

// statusErr describes a status answer of a direct get.
func statusErr(m *nats.Msg) error {
	return fmt.Errorf("direct get answered status %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
}

// getOne reads one message (see reader.one); found is false when there is
// no such message.
func (l *Log) getOne(ctx context.Context, op string, req directRequest) (stored, bool, error) {
	m, found, err := l.r.one(ctx, req)
	if err != nil {
		return stored{}, false, l.callErr(ctx, op, err)
	}
	return m, found, nil
}

// getBatch sends a batch or multi-last direct get and collects the answer.
// pending is the number of matching messages the server says are left
// after the last one returned.
func (l *Log) getBatch(ctx context.Context, op string, req directRequest) (msgs []stored, pending uint64, err error) {
	msgs, pending, err = l.r.batch(ctx, req)
	if err != nil {
		return nil, 0, l.callErr(ctx, op, err)
	}
	return msgs, pending, nil
}

// reader reads the messages of one JetStream stream without a consumer.
//
// Direct gets are answered by any replica of the stream, from what that
// replica has applied, which on a replicated stream may lag behind what
// the leader has acknowledged (by a commit or more: a client connected to
// a follower reads from it). So on a replicated stream reader.one, which
// answers questions such as "the last message of this subject" whose
// answer must include every acknowledged write, asks the stream leader
// (JetStream's message get API, $JS.API.STREAM.MSG.GET), and callers of
// reader.batch, which reads ranges from whichever replica answers,
// complete a range that ends early with reader.one. On a one-replica
// stream both are direct gets of the one server.
type reader struct {
	nc     *nats.Conn
	direct string // $JS.API.DIRECT.GET.<stream>
	leader string // $JS.API.STREAM.MSG.GET.<stream> if replicated, else ""
}

func newReader(nc *nats.Conn, stream string, replicas int) reader {
	r := reader{nc: nc, direct: "$JS.API.DIRECT.GET." + stream}
	if replicas > 1 {
		r.leader = "$JS.API.STREAM.MSG.GET." + stream
	}
	return r
}

// replicated reports whether the stream has several replicas.
func (r reader) replicated() bool { return r.leader != "" }

// one reads one message as the stream's leader has it (a direct get on a
// one-replica stream); found is false when there is no such message. On a
// replicated stream it rides out a leader election (the server answers
// "temporarily unavailable", or nothing, until there is a leader) for up
// to electionWait. Errors are the client's or the server's,
// untranslated.
func (r reader) one(ctx context.Context, req directRequest) (stored, bool, error) {
	if !r.replicated() {
		return directGet(ctx, r.nc, r.direct, req)
	}
	var m stored
	var found bool
	err := untilSettled(ctx, func(timeout time.Duration) (bool, error) {
		var err error
		m, found, err = leaderGet(ctx, r.nc, r.leader, req, timeout)
		return electing(ctx, err), err
	})
	return m, found, err
}

// electing reports whether err, of a call made under ctx, may only mean
// that the stream has no leader now (none answered in time, or a server
// said the cluster is not available), so that asking again may succeed.
func electing(ctx context.Context, err error) bool {
	var apiErr *jsapi.APIError
	return failover(ctx, err) != nil || (errors.As(err, &apiErr) && apiErr.ErrorCode == codeClusterNotAvailable)
}

// batch sends a batch or multi-last direct get, which any replica may
// answer (see reader). On a replicated stream it rides out the moments
// when no replica answers (just after the stream's creation, or while a
// restarted replica catches up) for up to electionWait.
func (r reader) batch(ctx context.Context, req directRequest) (msgs []stored, pending uint64, err error) {
	if !r.replicated() {
		return directBatch(ctx, r.nc, r.direct, req)
	}
	err = untilSettled(ctx, func(time.Duration) (bool, error) {
		var err error
		msgs, pending, err = directBatch(ctx, r.nc, r.direct, req)
		return failover(ctx, err) != nil, err
	})
	return msgs, pending, err
}

// untilSettled calls fn until it succeeds or fails for good: while fn
// says its failure is transient, it waits a little longer each time, for
// up to electionWait in all. fn bounds its request by the timeout it is
// given, firstAttempt at first, doubled after each attempt up to
// writeTimeout: a request that only a stream's leader answers, sent while
// the stream has none, is never answered, so it is sent again soon after
// one is elected.
func untilSettled(ctx context.Context, fn func(timeout time.Duration) (transient bool, err error)) error {
	deadline := time.Now().Add(electionWait)
	timeout := firstAttempt
	for attempt := 0; ; attempt++ {
		transient, err := fn(timeout)
		if err == nil || !transient || time.Now().After(deadline) {
			return err
		}
		timeout = min(2*timeout, writeTimeout)
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// leaderGet reads one message through JetStream's message get API, which
// only the stream's leader answers; found is false when there is no such
// message.
func leaderGet(ctx context.Context, nc *nats.Conn, subj string, req directRequest, timeout time.Duration) (stored, bool, error) {
	m, err := request(ctx, nc, subj, req, timeout)
	if err != nil {
		return stored{}, false, err
	}
	var resp struct {
		Error   *jsapi.APIError `json:"error"`
		Message *struct {
			Subject string `json:"subject"`
			Seq     uint64 `json:"seq"`
			Data    []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return stored{}, false, fmt.Errorf("bad answer to a message get (%d bytes): %w", len(m.Data), err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == codeNoMessageFound:
		return stored{}, false, nil
	case resp.Error != nil:
		return stored{}, false, resp.Error
	case resp.Message == nil || resp.Message.Seq == 0:
		return stored{}, false, errors.New("message get answered without a message")
	}
	return stored{subject: resp.Message.Subject, seq: resp.Message.Seq, data: resp.Message.Data}, true, nil
}

// directGet sends a direct get for one message to the stream whose direct
// get subject is subj; found is false when there is no such message. Each
// request is bounded by requestTimeout. Errors are the client's or the
// server's, untranslated.
func directGet(ctx context.Context, nc *nats.Conn, subj string, req directRequest) (stored, bool, error) {
	m, err := request(ctx, nc, subj, req, requestTimeout)
	if err != nil {
		return stored{}, false, err
	}
	switch m.Header.Get("Status") {
	case "":
		s, err := parseStored(m)
		if err != nil {
			return stored{}, false, err
		}
		return s, true, nil
	case "404":
		return stored{}, false, nil
	default:
		return stored{}, false, statusErr(m)
	}
}

// request sends req to subj and waits up to timeout for the answer.
func request(ctx context.Context, nc *nats.Conn, subj string, req directRequest, timeout time.Duration) (*nats.Msg, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return nc.RequestWithContext(rctx, subj, payload)
}

// directBatch sends a batch or multi-last direct get to the stream whose
// direct get subject is subj and collects the answer, like directGet.
func directBatch(ctx context.Context, nc *nats.Conn, subj string, req directRequest) (msgs []stored, pending uint64, err error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, 0, err
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subj, inbox, payload); err != nil {
		return nil, 0, err
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	for {
		m, err := sub.NextMsgWithContext(rctx)
		if err != nil {
			return nil, 0, err
		}
		switch m.Header.Get("Status") {
		case "":
			s, err := parseStored(m)
			if err != nil {
				return nil, 0, err
			}
			msgs = append(msgs, s)
		case "204": // end of batch
			pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return msgs, pending, nil
		case "404":
			return msgs, 0, nil
		case "503":
			return nil, 0, nats.ErrNoResponders
		default:
			return nil, 0, statusErr(m)
		}
	}
}

// ReadStream returns at most limit events of stream, from revision from
// (inclusive) forwards, or backwards when backwards is set (from =
// math.MaxUint64 starts at the last event). Only acknowledged events are
// returned, never part of a batch. A stream that does not exist reads as
// empty, without error.
//
// A read costs one direct get for the stream's last event, a binary search
// over sequences for the first event wanted (a few direct gets, none when
// reading from revision 0 or at the end), and one batched direct get per
// 1024 events.
//
// Errors: domain.ErrInvalidArgument for an empty stream name or limit < 1;
// domain.ErrCorrupt when a stored event does not decode or revisions are
// not consecutive; domain.ErrUnavailable when the log is closed or the
// server cannot be reached; ctx.Err(). Safe for concurrent use; has no side
// effects.
func (l *Log) ReadStream(ctx context.Context, stream string, from uint64, backwards bool, limit int) ([]domain.Event, error) {
	subject, err := l.eventSubject(opReadStream, stream)
	if err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, domain.Invalid(opReadStream, "limit must be at least 1, got %d", limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := l.enter(opReadStream); err != nil {
		return nil, err
	}
	var last head
	if _, err := l.readHead(ctx, opReadStream, subject, &last, true); err != nil {
		return nil, err
	}
	if !last.exists {
		return nil, nil
	}
	var first, n uint64 // revisions first .. first+n-1
	if backwards {
		top := min(from, last.rev)
		n = min(uint64(limit), top+1)
		first = top + 1 - n
	} else {
		if from > last.rev {
			return nil, nil
		}
		first = from
		n = min(uint64(limit), last.rev-from+1)
	}
	seq, err := l.seqOf(ctx, subject, first, last)
	if err != nil {
		return nil, err
	}
	out := make([]domain.Event, 0, n)
	for uint64(len(out)) < n {
		want := int(min(n-uint64(len(out)), readBatch))
		msgs, _, err := l.getBatch(ctx, opReadStream, directRequest{Seq: seq, NextFor: subject, Batch: want, MaxBytes: readMaxBytes})
		if err != nil {
			return nil, err
		}
		if len(msgs) == 0 {
			// A replica behind the leader (see reader) ends before the
			// last revision the leader showed: the leader has the rest.
			m, found, err := l.getOne(ctx, opReadStream, directRequest{Seq: seq, NextFor: subject})
			if err != nil {
				return nil, err
			}
			if !found {
				return nil, domain.Corruption("jetstream: stream %q: revision %d is missing (the last is %d)", stream, first+uint64(len(out)), last.rev)
			}
			msgs = []stored{m}
		}
		for _, m := range msgs[:min(len(msgs), want)] {
			e, err := l.decode(m)
			if err != nil {
				return nil, err
			}
			if wantRev := first + uint64(len(out)); e.Stream != stream || e.Revision != wantRev {
				return nil, domain.Corruption("jetstream: stream %q revision %d: position %d holds %q revision %d",
					stream, wantRev, m.seq, e.Stream, e.Revision)
			}
			out = append(out, e)
			seq = m.seq + 1
		}
	}
	// A next page starts where this one ended.
	l.hints.put(subject, revHint{rev: out[len(out)-1].Revision + 1, seq: seq})
	if backwards {
		slices.Reverse(out)
	}
	return out, nil
}

// revHint says that the first message of a subject at or after sequence seq
// is revision rev: where to start reading from rev without a search. The log
// never changes, so a hint never goes stale.
type revHint struct{ rev, seq uint64 }

// maxHints bounds the hints kept; they are dropped all at once beyond it.
const maxHints = 4096

// hints remembers where the last read of each stream ended, so that a
// stream read page by page costs no search.
type hints struct {
	mu sync.Mutex
	m  map[string]revHint
}

func (h *hints) get(subject string) (revHint, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.m[subject]
	return v, ok
}

func (h *hints) put(subject string, v revHint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil || len(h.m) >= maxHints {
		h.m = make(map[string]revHint)
	}
	h.m[subject] = v
}

// seqOf finds the sequence of revision rev of the stream on subject, whose
// last event is last. Revisions of a subject are consecutive and its
// sequences increase, so a binary search over sequences finds it; the bounds
// narrow by the revisions known to lie in between.
func (l *Log) seqOf(ctx context.Context, subject string, rev uint64, last head) (uint64, error) {
	if rev == last.rev {
		return last.seq, nil
	}
	if rev == 0 {
		return 1, nil // the first message of the subject from sequence 1
	}
	// Every revision takes a sequence of its own.
	lo, hi := rev+1, last.seq-(last.rev-rev)
	if h, ok := l.hints.get(subject); ok && h.rev <= rev {
		if h.rev == rev {
			return h.seq, nil
		}
		lo = max(lo, h.seq+(rev-h.rev))
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, found, err := l.getOne(ctx, opReadStream, directRequest{Seq: mid, NextFor: subject})
		if err != nil {
			return 0, err
		}
		if !found {
			return 0, domain.Corruption("jetstream: subject %q has no message from sequence %d, before its last at %d", subject, mid, last.seq)
		}
		r, err := recordRevision(m.seq, m.data)
		if err != nil {
			return 0, err
		}
		switch {
		case r == rev:
			return m.seq, nil
		case r < rev:
			lo = m.seq + (rev - r)
		default:
			if m.seq-(r-rev) < mid-1 {
				hi = m.seq - (r - rev)
			} else {
				hi = mid - 1
			}
		}
	}
	return lo, nil
}

// decode decodes a stored event message and checks that it is on its
// stream's subject.
func (l *Log) decode(m stored) (domain.Event, error) {
	e, err := decodeRecord(m.seq, m.data)
	if err != nil {
		return domain.Event{}, err
	}
	if want := l.evPrefix + subjectToken(e.Stream); m.subject != want {
		return domain.Event{}, domain.Corruption("jetstream: event at position %d of stream %q is on subject %q", m.seq, e.Stream, m.subject)
	}
	return e, nil
}

// ReadAll returns at most limit events whose position is greater than after,
// in position order. Positions are the stream sequences of the events:
// strictly increasing with holes (the event-ID markers take sequences too).
// Only acknowledged events are returned, never part of a batch.
//
// Errors: domain.ErrInvalidArgument for limit < 1; domain.ErrCorrupt for an
// event that does not decode; domain.ErrUnavailable when the log is closed
// or the server cannot be reached; ctx.Err(). Safe for concurrent use; has
// no side effects.
func (l *Log) ReadAll(ctx context.Context, after uint64, limit int) ([]domain.Event, error) {
	if limit < 1 {
		return nil, domain.Invalid(opReadAll, "limit must be at least 1, got %d", limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := l.enter(opReadAll); err != nil {
		return nil, err
	}
	if after == math.MaxUint64 {
		return nil, nil
	}
	var out []domain.Event
	next := after + 1
	for len(out) < limit {
		want := min(limit-len(out), readBatch)
		msgs, pending, err := l.getBatch(ctx, opReadAll, directRequest{Seq: next, NextFor: l.evAll, Batch: want, MaxBytes: readMaxBytes})
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = make([]domain.Event, 0, min(limit, len(msgs)+int(min(pending, readBatch))))
		}
		for _, m := range msgs[:min(len(msgs), want)] {
			if m.seq < next {
				return nil, unavailable(opReadAll, fmt.Errorf("direct get from sequence %d answered sequence %d", next, m.seq))
			}
			e, err := l.decode(m)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
			next = m.seq + 1
		}
		if len(msgs) == 0 || pending == 0 {
			if !l.r.replicated() || len(out) == limit {
				break
			}
			// The replica that answered has nothing more; the leader may
			// (see reader). Nothing there either is the end of the log.
			m, found, err := l.getOne(ctx, opReadAll, directRequest{Seq: next, NextFor: l.evAll})
			if err != nil {
				return nil, err
			}
			if !found {
				break
			}
			e, err := l.decode(m)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
			next = m.seq + 1
		}
	}
	return out, nil
}

// Head returns the position of the last acknowledged event, 0 for an empty
// log. A batch ends with its events, so the stream's last message is
// usually the last event; it is an event-ID claim while a single-event
// append is between its claim and its event (claim.go), or when the claim
// lost its race.
//
// Errors: domain.ErrUnavailable when the log is closed or the server cannot
// be reached; ctx.Err(). Safe for concurrent use.
func (l *Log) Head(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := l.enter(opHead); err != nil {
		return 0, err
	}
	m, found, err := l.getOne(ctx, opHead, directRequest{LastFor: ">"})
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, nil
	}
	if l.isEvent(m.subject) {
		return m.seq, nil
	}
	if !l.r.replicated() {
		// The last event is almost always just before: read the few
		// messages before the last one (a one-replica server answers
		// direct gets with everything it acknowledged).
		from := max(m.seq, headWindow) - headWindow + 1
		msgs, _, err := l.getBatch(ctx, opHead, directRequest{Seq: from, NextFor: l.evAll, Batch: headWindow})
		if err != nil {
			return 0, err
		}
		if n := len(msgs); n > 0 {
			return msgs[n-1].seq, nil
		}
	}
	// Ask for the last event by subject filter (slower: the server matches
	// the subject of every stream of the log).
	m, found, err = l.getOne(ctx, opHead, directRequest{LastFor: l.evAll})
	if err != nil || !found {
		return 0, err
	}
	return m.seq, nil
}

// headWindow is how many messages before the last one Head reads to find
// the last event.
const headWindow = 16

// isEvent reports whether subject is an event's.
func (l *Log) isEvent(subject string) bool {
	return len(subject) > len(l.evPrefix) && subject[:len(l.evPrefix)] == l.evPrefix
}
