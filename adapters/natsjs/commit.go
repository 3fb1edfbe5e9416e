package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Group commit. A single server stages every atomic batch in a file store
// of its own, which costs milliseconds however small the batch, and commits
// one batch of a stream at a time. So appends queued while a batch commits
// are published together, as one atomic batch, by one of a few committer
// goroutines: each append in it still carries its own expected subject
// sequence and its own markers, and the server accepts or refuses the
// group as a whole. A refused group of several appends cannot say which of
// them was at fault, so each of them is then published alone.
const (
	// committers is the number of groups in flight at once.
	committers = 2
	// maxGroupMsgs bounds the messages of a group (the server takes 1000
	// in a batch by default).
	maxGroupMsgs = 2 * MaxBatchEvents
	// maxGroupBytes bounds the payload bytes of a group.
	maxGroupBytes = 16 << 20
	// maxQueued bounds the appends waiting for a committer.
	maxQueued = 1024
)

// pending is an append waiting for a committer. The committer owns it
// (and its batch) from the moment it is queued.
type pending struct {
	ctx  context.Context
	b    *batch
	prev tail // the stream's head the append goes after
	done chan groupResp
}

// tail is where a stream ends: its last event's revision and sequence.
type tail struct {
	exists   bool
	rev, seq uint64
}

type groupResp struct {
	res commands.AppendResult
	err error
}

// errAlone asks an append of a refused group to be published alone.
var errAlone = errors.New("jetstream: the group was refused; publish alone")

// commit publishes b after the stream head h, in a group with other
// appends or, when alone is set, by itself.
func (l *Log) commit(ctx context.Context, b *batch, h *head, alone bool) (commands.AppendResult, error) {
	p := &pending{ctx: ctx, b: b, prev: tail{exists: h.exists, rev: h.rev, seq: h.seq}, done: make(chan groupResp, 1)}
	if alone {
		r := l.publishGroup(ctx, []*pending{p})
		return r[0].res, r[0].err
	}
	select {
	case l.queue <- p:
	case <-ctx.Done():
		return commands.AppendResult{}, ctx.Err()
	case <-l.done:
		return commands.AppendResult{}, l.enter(opAppend)
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		// The committer may still publish it: the outcome is unknown,
		// as Append documents.
		return commands.AppendResult{}, ctx.Err()
	case <-l.done:
		return commands.AppendResult{}, l.enter(opAppend)
	}
}

// committer takes the appends queued when it wakes, up to the group
// bounds, and publishes them as one atomic batch, until the log closes.
func (l *Log) committer() {
	defer l.committing.Done()
	var carry *pending // did not fit in the previous group
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-l.queue:
			case <-l.done:
				return
			}
		}
		group := []*pending{first}
		msgs, size := groupSize(first)
	fill:
		for msgs < maxGroupMsgs {
			select {
			case p := <-l.queue:
				m, s := groupSize(p)
				if msgs+m > maxGroupMsgs || size+s > maxGroupBytes {
					carry = p
					break fill
				}
				group = append(group, p)
				msgs, size = msgs+m, size+s
			default:
				break fill
			}
		}
		live := group[:0]
		for _, p := range group {
			if err := p.ctx.Err(); err != nil {
				p.done <- groupResp{err: err}
				continue
			}
			live = append(live, p)
		}
		if len(live) == 0 {
			continue
		}
		if len(live) > 1 {
			l.groups.Add(1)
		}
		resps := l.publishGroup(l.ctx, live)
		for i, p := range live {
			p.done <- resps[i]
		}
	}
}

// groupSize is what p adds to a group: messages and payload bytes.
func groupSize(p *pending) (msgs, size int) {
	for _, r := range p.b.recs {
		size += len(r) + len(p.b.stream) + 24
	}
	return 2 * len(p.b.recs), size
}

// publishGroup writes the appends of group as one atomic batch: first one
// marker per event on <prefix>.id.<event ID>, each expecting its subject to
// be empty, then each append's events on its stream's subject, the first
// expecting the subject's last sequence to be the append's head. The
// server commits all or nothing and gives a batch consecutive sequences,
// so every event's position follows from the sequence of the last message.
// It answers each append in group.
func (l *Log) publishGroup(ctx context.Context, group []*pending) []groupResp {
	resps := make([]groupResp, len(group))
	fail := func(err error) []groupResp {
		for i := range resps {
			resps[i] = groupResp{err: err}
		}
		return resps
	}
	for _, p := range group {
		after := uint64(0)
		if p.prev.exists {
			after = p.prev.seq
		}
		if p.b.claimedElsewhere(after) {
			if len(group) > 1 {
				return fail(errAlone) // the others need not look again
			}
			return fail(errClaimedElsewhere)
		}
	}
	msgs, firstRevs := l.groupMsgs(group, nuid.Next())
	select {
	case l.inflight <- struct{}{}:
	case <-ctx.Done():
		return fail(l.callErr(ctx, opAppend, ctx.Err()))
	}
	defer func() { <-l.inflight }()
	total := len(msgs)
	writeErr := func(err error) []groupResp {
		if c := failover(ctx, err); c != nil {
			return fail(c)
		}
		return fail(l.callErr(ctx, opAppend, err))
	}
	for _, m := range msgs[:total-1] {
		if err := l.nc.PublishMsg(m); err != nil {
			return writeErr(err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	resp, err := l.nc.RequestMsgWithContext(rctx, msgs[total-1])
	if err != nil {
		return writeErr(err)
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return fail(unavailable(opAppend, fmt.Errorf("bad answer to a batch commit (%d bytes, status %q): %w",
			len(resp.Data), resp.Header.Get("Status"), err)))
	}
	if e := ack.Error; e != nil {
		err := l.ackErr(group, e)
		var conflict *conflictError
		if len(group) > 1 && (errors.As(err, &conflict) || errors.Is(err, domain.ErrInvalidArgument)) {
			l.groupsRefused.Add(1)
			err = errAlone
		}
		return fail(err)
	}
	if ack.Count != total || ack.Seq < uint64(total) {
		return fail(domain.Corruption("jetstream: append: the server acknowledged %d messages ending at sequence %d, %d were sent",
			ack.Count, ack.Seq, total))
	}
	markers := uint64(total / 2)
	pos := ack.Seq - uint64(total) + 1 + markers // the first event's position
	for i, p := range group {
		n := uint64(len(p.b.recs))
		resps[i].res = commands.AppendResult{FirstPosition: pos, LastPosition: pos + n - 1, LastRevision: firstRevs[i] + n - 1}
		pos += n
	}
	return resps
}

// groupMsgs returns the messages of the atomic batch of group, the last
// one carrying the commit, and the revision of each append's first event.
func (l *Log) groupMsgs(group []*pending, id string) ([]*nats.Msg, []uint64) {
	events := 0
	for _, p := range group {
		events += len(p.b.recs)
	}
	msgs := make([]*nats.Msg, 0, 2*events)
	add := func(subject string, data []byte, expect string) {
		m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		m.Header[hdrBatchID] = []string{id}
		m.Header[hdrBatchSeq] = []string{strconv.Itoa(len(msgs) + 1)}
		if expect != "" {
			m.Header[hdrExpectSubj] = []string{expect}
		}
		msgs = append(msgs, m)
	}
	// Marker k is at sequence S+k and its event at S+events+k: every
	// marker's offset is the number of events.
	firstRevs := make([]uint64, len(group))
	var mbuf []byte
	for g, p := range group {
		if p.prev.exists {
			firstRevs[g] = p.prev.rev + 1
		}
		for i, eid := range p.b.ids {
			start := len(mbuf)
			mbuf = appendMarker(mbuf, marker{offset: uint64(events), rev: firstRevs[g] + uint64(i), stream: p.b.stream})
			add(l.idSubject(eid), mbuf[start:len(mbuf):len(mbuf)], strconv.FormatUint(p.b.marks[i], 10))
		}
	}
	for g, p := range group {
		expect := uint64(0)
		if p.prev.exists {
			expect = p.prev.seq
		}
		for i, rec := range p.b.recs {
			domain.SetEventRecordRevision(rec, firstRevs[g]+uint64(i))
			e := ""
			if i == 0 {
				e = strconv.FormatUint(expect, 10)
			}
			add(p.b.subject, rec, e)
		}
	}
	msgs[len(msgs)-1].Header[hdrBatchCommit] = []string{"1"}
	return msgs, firstRevs
}

// pubAck is the server's answer to the commit of an atomic batch.
type pubAck struct {
	Stream string          `json:"stream"`
	Seq    uint64          `json:"seq"`
	Batch  string          `json:"batch"`
	Count  int             `json:"count"`
	Error  *jsapi.APIError `json:"error"`
}

// ackErr translates the error of a batch commit.
func (l *Log) ackErr(group []*pending, e *jsapi.APIError) error {
	return l.refusal(group[0].b.stream, len(group[0].b.recs), e)
}

// refusal translates the server's refusal of a write of n events to
// stream.
func (l *Log) refusal(stream string, n int, e *jsapi.APIError) error {
	switch e.ErrorCode {
	case codeWrongLastSeq:
		return &conflictError{desc: e.Description}
	case codeWrongLastSeqConstant:
		l.inFlight.Add(1)
		return &conflictError{transient: true, desc: e.Description}
	case codeBatchIncomplete, codeBatchTooManyInflight, codeClusterNotAvailable:
		return &conflictError{transient: true, desc: e.Description}
	case codeMsgTooLarge, codeBatchTooLarge:
		return &domain.Error{Op: opAppend, Kind: domain.ErrInvalidArgument, Item: stream,
			Msg: fmt.Sprintf("the server refused the batch of %d events: %s", n, e.Description)}
	}
	return unavailable(opAppend, fmt.Errorf("the server refused the batch: %w", e))
}
