package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Read sizes.
const (
	// readSlack is how many records a page of $all asks for beyond the
	// events still wanted, for the system and foreign events in between.
	readSlack = 64
	// maxReadBatch bounds one read request.
	maxReadBatch = 4096
	// headBatch is how many records Head reads backwards at a time.
	headBatch = 64
	// readPageBytes ends a page of $all early once the records it received
	// hold this many bytes: $all also holds the blob store's chunks (up to
	// 512 KiB each), which would otherwise make one page (one call, bounded
	// by Options.Timeout) up to maxReadBatch chunks.
	readPageBytes = 16 << 20
)

// ReadStream returns at most max events of stream from revision from
// (inclusive), forwards or backwards (from = math.MaxUint64 starts at the
// end). A stream that does not exist reads as empty.
//
// Errors: domain.ErrInvalidArgument for max < 1, an empty stream name, or a
// stream of the key or blob stores; domain.ErrCorrupt for an event of the
// stream that this adapter did not write (no or another envelope);
// domain.ErrFailedPrecondition when the stream was deleted in EventStoreDB,
// or the server reports no positions on stream reads (older than 22.6);
// domain.ErrUnavailable when the server fails or the log is closed;
// ctx.Err(). Safe for concurrent use.
func (l *Log) ReadStream(ctx context.Context, stream string, from uint64, backwards bool, max int) ([]domain.Event, error) {
	if max < 1 {
		return nil, domain.Invalid(opReadStream, "max %d is less than 1", max)
	}
	if stream == "" {
		return nil, domain.Invalid(opReadStream, "the stream name is empty")
	}
	if isStoreStream(stream) {
		return nil, &domain.Error{Op: opReadStream, Kind: domain.ErrInvalidArgument, Item: stream,
			Msg: fmt.Sprintf("streams starting with %q belong to the key and blob stores, never to the log", storeStreamPrefixes)}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start, ok := streamFrom(from, backwards)
	if !ok {
		return nil, nil
	}
	recs, _, err := l.readStream(ctx, opReadStream, stream, start, backwards, uint64(max))
	if err != nil {
		return nil, l.mapErr(ctx, opReadStream, stream, err)
	}
	out := make([]domain.Event, len(recs))
	for i, r := range recs {
		if out[i], err = fromRecorded(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readStream reads up to count records of stream; exists is false when
// the stream does not exist (it then reads as empty).
func (l *Log) readStream(ctx context.Context, op, stream string, from esdbclient.StreamPosition, backwards bool, count uint64) (recs []*esdbclient.RecordedEvent, exists bool, err error) {
	err = l.do(ctx, op, func(ctx context.Context, c *esdbclient.Client) error {
		recs, exists = recs[:0], true // do may run this twice (see do)
		rs, err := c.ReadStream(ctx, stream, esdbclient.ReadStreamOptions{Direction: direction(backwards), From: from}, count)
		if err != nil {
			return err
		}
		defer rs.Close()
		for {
			re, err := rs.Recv()
			switch {
			case errors.Is(err, io.EOF):
				return nil
			case isStreamNotFound(err):
				exists = false
				return nil
			case err != nil:
				return err
			}
			if re.Event != nil {
				recs = append(recs, re.Event)
			}
		}
	})
	if err != nil {
		return nil, false, err
	}
	return recs, exists, nil
}

// ReadAll returns at most max events of the log's streams whose position is
// greater than after, in position order. System events, and events of
// streams outside Options.StreamPrefixes, are skipped.
//
// EventStoreDB reads $all from the position of a record only. after is
// normally such a position (0, an event's position, or Head); when the
// server refuses it, ReadAll reads from the start of the chunk holding it
// (Options.ChunkSize), which costs up to a chunk of reading.
//
// Errors: domain.ErrInvalidArgument for max < 1; domain.ErrCorrupt for an
// event of the log's streams that this adapter did not write;
// domain.ErrUnavailable; ctx.Err(). Safe for concurrent use.
func (l *Log) ReadAll(ctx context.Context, after uint64, max int) ([]domain.Event, error) {
	if max < 1 {
		return nil, domain.Invalid(opReadAll, "max %d is less than 1", max)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	recs, err := l.readAll(ctx, after, max)
	if err != nil {
		return nil, l.mapErr(ctx, opReadAll, "", err)
	}
	out := make([]domain.Event, len(recs))
	for i := range recs {
		out[i] = recs[i].ev
	}
	return out, nil
}

// allRec is an event of $all with its full EventStoreDB position.
type allRec struct {
	key esdbclient.Position
	ev  domain.Event
}

// readAll is ReadAll with the positions kept, and unmapped errors.
func (l *Log) readAll(ctx context.Context, after uint64, max int) ([]allRec, error) {
	if after > math.MaxInt64 {
		return nil, nil // beyond any position EventStoreDB can have
	}
	recs, err := l.readAllFrom(ctx, allFrom(after), after, max)
	if err != nil && after != 0 && isBadPosition(err) && ctx.Err() == nil {
		from := chunkStart(after, l.opts.ChunkSize)
		l.logger.Debug("esdb: $all refused a read from a position; reading from its chunk's start", "after", after, "from", from, "err", err)
		recs, err = l.readAllFrom(ctx, allFrom(from), after, max)
	}
	return recs, err
}

// readAllFrom reads $all forwards from from, keeping up to max events of
// the log whose position is greater than after. It goes on page after page
// while it has fewer than max and $all goes on.
func (l *Log) readAllFrom(ctx context.Context, from esdbclient.AllPosition, after uint64, max int) ([]allRec, error) {
	var (
		out     []allRec
		lastKey esdbclient.Position
		seen    bool
	)
	for {
		batch := min(uint64(max-len(out))+readSlack, maxReadBatch)
		var (
			page     []*esdbclient.RecordedEvent
			got      uint64
			pageLast esdbclient.Position
			pageSeen bool
			cut      bool // the page ended early, at readPageBytes
		)
		err := l.do(ctx, opReadAll, func(ctx context.Context, c *esdbclient.Client) error {
			// do may run this twice (see do): start afresh.
			page, got, pageLast, pageSeen, cut = page[:0], 0, lastKey, seen, false
			size := 0
			opts := esdbclient.ReadAllOptions{Direction: esdbclient.Forwards, From: from}
			return eachOfAll(ctx, c, opts, batch, func(re *esdbclient.ResolvedEvent) bool {
				got++
				r := re.Event
				if r == nil {
					return true
				}
				if pageSeen && !keyAfter(r.Position, pageLast) {
					return true // the record a page starts from ended the page before
				}
				pageSeen, pageLast = true, r.Position
				size += len(r.Data) + len(r.UserMetadata)
				if r.Position.Commit > after && l.wanted(r.StreamID, r.EventType) {
					page = append(page, r)
					if len(out)+len(page) == max {
						return false
					}
				}
				if size >= readPageBytes {
					cut = true // go on from pageLast in another call
					return false
				}
				return true
			})
		})
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			e, err := fromRecorded(r)
			if err != nil {
				return nil, err
			}
			out = append(out, allRec{key: r.Position, ev: e})
		}
		if len(out) == max || (got < batch && !cut) {
			return out, nil
		}
		from, lastKey, seen = pageLast, pageLast, pageSeen
	}
}

// Head returns the position of the last event of the log's streams (0 when
// there is none). Errors: domain.ErrUnavailable; ctx.Err(). Safe for
// concurrent use.
func (l *Log) Head(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	key, _, err := l.head(ctx)
	if err != nil {
		return 0, l.mapErr(ctx, opHead, "", err)
	}
	return key.Commit, nil
}

// head reads $all backwards from its end to the last event of the log.
func (l *Log) head(ctx context.Context) (esdbclient.Position, bool, error) {
	var (
		from    esdbclient.AllPosition = esdbclient.End{}
		lastKey esdbclient.Position
		seen    bool
	)
	for {
		var (
			got      uint64
			found    bool
			pageLast esdbclient.Position
			pageSeen bool
		)
		err := l.do(ctx, opHead, func(ctx context.Context, c *esdbclient.Client) error {
			got, found, pageLast, pageSeen = 0, false, lastKey, seen // do may run this twice
			opts := esdbclient.ReadAllOptions{Direction: esdbclient.Backwards, From: from}
			return eachOfAll(ctx, c, opts, headBatch, func(re *esdbclient.ResolvedEvent) bool {
				got++
				r := re.Event
				if r == nil {
					return true
				}
				if pageSeen && !keyAfter(pageLast, r.Position) {
					return true
				}
				pageSeen, pageLast = true, r.Position
				found = l.wanted(r.StreamID, r.EventType)
				return !found
			})
		})
		if err != nil {
			return esdbclient.Position{}, false, err
		}
		if found {
			return pageLast, true, nil
		}
		if got < headBatch {
			return esdbclient.Position{}, false, nil
		}
		from, lastKey, seen = pageLast, pageLast, pageSeen
	}
}

// eachOfAll reads up to count records of $all as opts says and calls fn
// for each, in order, until $all ends or fn returns false. Errors are the
// client's, unmapped.
func eachOfAll(ctx context.Context, c *esdbclient.Client, opts esdbclient.ReadAllOptions, count uint64, fn func(*esdbclient.ResolvedEvent) bool) error {
	rs, err := c.ReadAll(ctx, opts, count)
	if err != nil {
		return err
	}
	defer rs.Close()
	for {
		re, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !fn(re) {
			return nil
		}
	}
}
