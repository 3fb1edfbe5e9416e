package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Single-event appends on a one-replica stream: a claim of the event ID,
// then the event, two plain messages each with its own condition, rather
// than an atomic batch, which a one-replica server stages in a file store
// of its own. doc.go ("What an append promises, and how") says why every
// promise of Append still holds; the rules it relies on are kept here and
// in resolve: a claim is replaced only when it is an orphan (another event
// took its place, claimState), or by a write that expects the stream to
// end exactly at its place (claimedElsewhere, which every write checks:
// commitClaimed, and publishGroup for batches, group commits and
// AppendMulti).

// errClaimedElsewhere refuses a write of a batch one of whose IDs has a
// pending claim for another end of the stream than the one the write
// expects: the claim's place may be taken meanwhile, by its own event or
// another, so the IDs must be looked up again (resolve).
var errClaimedElsewhere = &conflictError{desc: "an event ID is claimed for another end of the stream"}

// claimedElsewhere reports whether b has a pending claim that a write
// expecting its stream to end at sequence seq must not replace: only a
// write expecting exactly the claim's place may (it fills the place, or
// fails).
func (b *batch) claimedElsewhere(seq uint64) bool { return b.pending && seq != b.slot }

// claimStatus is what became of a claim.
type claimStatus struct {
	placed   bool // its event is in the log, at pos with revision rev
	orphan   bool // another event took its place: it never will be
	pos, rev uint64
}

// claimState looks at the place a claim of id on the stream whose subject
// is subject points to.
func (l *Log) claimState(ctx context.Context, subject string, id domain.EventID, mk marker) (claimStatus, error) {
	m, found, err := l.getOne(ctx, opAppend, directRequest{Seq: mk.after + 1, NextFor: subject})
	if err != nil || !found {
		return claimStatus{}, err
	}
	rev, eid, _, err := domain.EventRecordHeader(m.seq, m.data)
	if err != nil {
		return claimStatus{}, fmt.Errorf("jetstream: %w", err)
	}
	if eid != id {
		return claimStatus{orphan: true}, nil
	}
	return claimStatus{placed: true, pos: m.seq, rev: rev}, nil
}

// commitClaimed appends b's one event after the stream head h with a claim
// and the event (see above). A claim that b found pending for this very
// place (resolve) is the claim: then only the event is published.
func (l *Log) commitClaimed(ctx context.Context, b *batch, h *head) (commands.AppendResult, error) {
	rev, after := uint64(0), uint64(0)
	if h.exists {
		rev, after = h.rev+1, h.seq
	}
	if b.claimedElsewhere(after) {
		return commands.AppendResult{}, errClaimedElsewhere
	}
	if !b.pending {
		claim := appendMarker(nil, marker{claim: true, rev: rev, after: after, stream: b.stream})
		seq, err := l.publish(ctx, b, l.idSubject(b.ids[0]), claim, b.marks[0])
		if err != nil {
			return commands.AppendResult{}, err
		}
		// The claim now stands for this place, and for no other.
		b.marks[0], b.pending, b.slot = seq, true, after
	}
	domain.SetEventRecordRevision(b.recs[0], rev)
	seq, err := l.publish(ctx, b, b.subject, b.recs[0], after)
	if err != nil {
		return commands.AppendResult{}, err
	}
	return commands.AppendResult{FirstPosition: seq, LastPosition: seq, LastRevision: rev}, nil
}

// publish publishes data on subject on condition that the subject's last
// message is at sequence expect (0: that it has none) and returns the
// sequence the server gave it. A refused condition is a *conflictError.
func (l *Log) publish(ctx context.Context, b *batch, subject string, data []byte, expect uint64) (uint64, error) {
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	m.Header[hdrExpectSubj] = []string{strconv.FormatUint(expect, 10)}
	rctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	resp, err := l.nc.RequestMsgWithContext(rctx, m)
	if err != nil {
		if c := failover(ctx, err); c != nil {
			return 0, c
		}
		return 0, l.callErr(ctx, opAppend, err)
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, unavailable(opAppend, fmt.Errorf("bad answer to a publish (%d bytes, status %q): %w",
			len(resp.Data), resp.Header.Get("Status"), err))
	}
	if ack.Error != nil {
		return 0, l.refusal(b.stream, len(b.recs), ack.Error)
	}
	if ack.Seq == 0 {
		return 0, unavailable(opAppend, errors.New("the server acknowledged a publish without a sequence"))
	}
	return ack.Seq, nil
}
