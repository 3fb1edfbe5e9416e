package esdb

import (
	"context"
	"fmt"
	"math"
	"strings"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Append writes events atomically at the end of stream if expected holds,
// and returns once EventStoreDB has acknowledged them (it acknowledges
// writes once they are durable on its log, and on a quorum of a cluster).
//
// EventStoreDB's own idempotency is weaker than the port's (it compares a
// batch only with the events right after the revision the batch expected,
// and, for "any", with a cache of recent writes), so Append checks itself:
//
//  1. It reads the last Options.RetryWindow events of the stream (its head,
//     and the IDs of recent events) and, when expected names a revision,
//     the events right after it. A batch whose IDs are all found is a
//     retry: Append returns the original result and writes nothing. Some
//     but not all found is domain.ErrInvalidArgument.
//  2. It checks expected against the head it read (domain.ExpectedRevision.
//     Check), failing with domain.ErrWrongExpectedRevision.
//  3. It appends with the exact head it read as EventStoreDB's expected
//     revision, so that nothing can have been written between the check and
//     the write. When EventStoreDB reports a wrong expected version the
//     stream moved: Append starts again at 1, which decides between a retry
//     (someone wrote this batch meanwhile), a lost race (an exact
//     expectation no longer holds) and a new attempt (any, stream-exists).
//  4. It reads the batch back for its positions ($all commit positions,
//     which EventStoreDB reports on stream reads since version 22.6).
//
// Errors: domain.ErrInvalidArgument for an empty stream name or batch, a
// stream outside Options.StreamPrefixes, starting with "$" or belonging to
// the key or blob stores (datakey-, blob-, blobs-), an event
// whose Stream differs, a zero or repeated event ID, an empty event type
// or one starting with "$", a batch over Options.MaxAppendSize, or event
// IDs partly already in the stream; domain.ErrWrongExpectedRevision (built
// with domain.WrongRevision); domain.ErrFailedPrecondition when the stream
// was deleted or truncated in EventStoreDB; domain.ErrUnavailable when the
// server fails or the log is closed; ctx.Err() when ctx ends first, in which
// case the batch may or may not have been written: retry it with the same
// event IDs.
//
// Not detected: an event ID already used in another stream (EventStoreDB
// has no index by event ID), and a retry whose events are more than
// RetryWindow events from the end of the stream, unless it expects the
// same revision as the original. Safe for concurrent use.
func (l *Log) Append(ctx context.Context, stream string, expected domain.ExpectedRevision, events []domain.Event) (commands.AppendResult, error) {
	data, err := l.prepareAppend(stream, events)
	if err != nil {
		return commands.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return commands.AppendResult{}, err
	}
	ids := make([]domain.EventID, len(events))
	for i := range events {
		ids[i] = events[i].ID
	}
	fail := func(err error) (commands.AppendResult, error) {
		return commands.AppendResult{}, l.mapErr(ctx, opAppend, stream, err)
	}
	for range maxAppendAttempts {
		t, err := l.readTail(ctx, stream)
		if err != nil {
			return fail(err)
		}
		if res, found, err := findRetry(stream, ids, t.recs); err != nil || found {
			return res, err
		}
		// A retry of the same call sits right after the revision it expects,
		// however far from the end of the stream.
		if start, ok := expectedStart(expected); ok && t.exists && start <= t.head && (len(t.recs) == 0 || start < t.recs[0].rev) {
			recs, err := l.readRecs(ctx, stream, start, len(ids))
			if err != nil {
				return fail(err)
			}
			if res, found, err := findRetry(stream, ids, recs); err != nil || found {
				return res, err
			}
		}
		if !expected.Check(t.exists, t.head) {
			return commands.AppendResult{}, domain.WrongRevision(stream, expected, t.exists, t.head)
		}
		var wr *esdbclient.WriteResult
		err = l.do(ctx, opAppend, func(ctx context.Context, c *esdbclient.Client) error {
			var err error
			wr, err = c.AppendToStream(ctx, stream, esdbclient.AppendToStreamOptions{ExpectedRevision: esdbExpected(t.exists, t.head)}, data...)
			return err
		})
		if isWrongExpectedVersion(err) {
			continue // the stream moved since readTail: look again
		}
		if err != nil {
			return fail(err)
		}
		return l.confirm(ctx, stream, ids, wr.NextExpectedVersion)
	}
	return commands.AppendResult{}, &domain.Error{Op: opAppend, Kind: domain.ErrUnavailable, Item: stream,
		Msg: fmt.Sprintf("the stream changed under %d attempts in a row", maxAppendAttempts), Hint: "retry"}
}

// prepareAppend validates a batch and encodes it.
func (l *Log) prepareAppend(stream string, events []domain.Event) ([]esdbclient.EventData, error) {
	invalid := func(format string, args ...any) error {
		return &domain.Error{Op: opAppend, Kind: domain.ErrInvalidArgument, Item: stream, Msg: fmt.Sprintf(format, args...)}
	}
	if err := commands.CheckAppendBatch(opAppend, stream, events); err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(stream, "$"):
		return nil, invalid("streams starting with $ are EventStoreDB's own")
	case isStoreStream(stream):
		return nil, invalid("streams starting with %q belong to the key and blob stores, never to the log", storeStreamPrefixes)
	case !matchesPrefix(stream, l.opts.StreamPrefixes):
		return nil, invalid("the stream is outside the log's stream prefixes %q: ReadAll and subscriptions would never show it", l.opts.StreamPrefixes)
	}
	data := make([]esdbclient.EventData, len(events))
	size := 0
	for i := range events {
		e := &events[i]
		switch {
		case e.Type == "":
			return nil, invalid("event %d (ID %s) has no type", i, e.ID)
		case strings.HasPrefix(e.Type, "$"):
			return nil, invalid("event %d (ID %s) has type %q: types starting with $ are EventStoreDB's own", i, e.ID, e.Type)
		}
		data[i] = toEventData(e)
		size += appendSize(&data[i])
	}
	if size > l.opts.MaxAppendSize {
		return nil, invalid("the batch takes %d bytes, over the server's maximum append size of %d", size, l.opts.MaxAppendSize)
	}
	return data, nil
}

// rec is what Append needs of a stored event.
type rec struct {
	id       domain.EventID
	rev, pos uint64
}

// tail is the end of a stream: whether it exists, its head revision, and
// its last events, oldest first.
type tail struct {
	exists bool
	head   uint64
	recs   []rec
}

// readTail reads the last Options.RetryWindow events of stream.
func (l *Log) readTail(ctx context.Context, stream string) (tail, error) {
	raw, exists, err := l.readStream(ctx, opAppend, stream, esdbclient.End{}, true, uint64(l.opts.RetryWindow))
	if err != nil {
		return tail{}, err
	}
	recs, err := toRecs(raw)
	if err != nil {
		return tail{}, err
	}
	if !exists {
		return tail{}, nil
	}
	if len(recs) == 0 {
		// The stream exists but shows no event: it was truncated (stream
		// metadata $tb or $maxCount) to nothing. Its head cannot be read.
		return tail{}, &domain.Error{Op: opAppend, Kind: domain.ErrFailedPrecondition, Item: stream,
			Msg: "the stream exists in EventStoreDB but has no readable event (truncated?); its head revision cannot be read"}
	}
	for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
		recs[i], recs[j] = recs[j], recs[i]
	}
	return tail{exists: true, head: recs[len(recs)-1].rev, recs: recs}, nil
}

// readRecs reads up to n events of stream from revision from on.
func (l *Log) readRecs(ctx context.Context, stream string, from uint64, n int) ([]rec, error) {
	if from > math.MaxInt64 {
		return nil, nil
	}
	raw, _, err := l.readStream(ctx, opAppend, stream, esdbclient.Revision(from), false, uint64(n))
	if err != nil {
		return nil, err
	}
	return toRecs(raw)
}

func toRecs(raw []*esdbclient.RecordedEvent) ([]rec, error) {
	out := make([]rec, len(raw))
	for i, r := range raw {
		pos, err := eventPosition(r)
		if err != nil {
			return nil, err
		}
		out[i] = rec{id: domain.EventID(r.EventID), rev: r.EventNumber, pos: pos}
	}
	return out, nil
}

// findRetry looks for the batch ids among recs. All found: the batch was
// appended before, and res is its result (first and last position, last
// revision). None found: found is false. Some found: ErrInvalidArgument.
func findRetry(stream string, ids []domain.EventID, recs []rec) (res commands.AppendResult, found bool, err error) {
	want := make(map[domain.EventID]struct{}, len(ids))
	for _, id := range ids {
		want[id] = struct{}{}
	}
	hit := make(map[domain.EventID]struct{}, len(ids))
	for _, r := range recs {
		if _, ok := want[r.id]; !ok {
			continue
		}
		if _, dup := hit[r.id]; dup {
			continue
		}
		if len(hit) == 0 {
			res = commands.AppendResult{FirstPosition: r.pos, LastPosition: r.pos, LastRevision: r.rev}
		}
		hit[r.id] = struct{}{}
		res.FirstPosition = min(res.FirstPosition, r.pos)
		res.LastPosition = max(res.LastPosition, r.pos)
		res.LastRevision = max(res.LastRevision, r.rev)
	}
	switch {
	case len(hit) == 0:
		return commands.AppendResult{}, false, nil
	case len(hit) < len(ids):
		return commands.AppendResult{}, false, &domain.Error{Op: opAppend, Kind: domain.ErrInvalidArgument, Item: stream,
			Msg:  fmt.Sprintf("%d of the batch's %d event IDs are already in the stream", len(hit), len(ids)),
			Hint: "a retry must resend the same batch; new events need new IDs"}
	}
	return res, true, nil
}

// confirm reads back the batch EventStoreDB reports ending at revision
// last, for its positions. When the events there are not the batch (an
// idempotent answer for a batch written at other revisions), it looks for
// the batch at the end of the stream.
func (l *Log) confirm(ctx context.Context, stream string, ids []domain.EventID, last uint64) (commands.AppendResult, error) {
	n := uint64(len(ids))
	if last+1 >= n {
		recs, err := l.readRecs(ctx, stream, last+1-n, len(ids))
		if err != nil {
			return commands.AppendResult{}, l.mapErr(ctx, opAppend, stream, err)
		}
		if sameIDs(recs, ids) {
			return commands.AppendResult{FirstPosition: recs[0].pos, LastPosition: recs[len(recs)-1].pos, LastRevision: recs[len(recs)-1].rev}, nil
		}
	}
	t, err := l.readTail(ctx, stream)
	if err != nil {
		return commands.AppendResult{}, l.mapErr(ctx, opAppend, stream, err)
	}
	if res, found, err := findRetry(stream, ids, t.recs); err != nil || found {
		return res, err
	}
	return commands.AppendResult{}, &domain.Error{Op: opAppend, Kind: domain.ErrUnavailable, Item: stream,
		Msg:  fmt.Sprintf("EventStoreDB acknowledged the batch at revision %d, but it cannot be read back", last),
		Hint: "read the stream before retrying"}
}

func sameIDs(recs []rec, ids []domain.EventID) bool {
	if len(recs) != len(ids) {
		return false
	}
	for i := range recs {
		if recs[i].id != ids[i] {
			return false
		}
	}
	return true
}
