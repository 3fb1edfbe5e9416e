package commands

import (
	"context"
	"math"

	"github.com/kmsbackup/kmsbackup/domain"
)

// What unique names (names.go) and bindings (bindings.go) share: each is
// a stream whose last event says who holds it, read before the decision,
// and written, claimed or released, in one MultiAppender.AppendMulti with
// the event of the item or backup instance that holds it.

// lastEvent reads the last event of stream, nil when the stream does not
// exist. Errors: the log's.
func lastEvent(ctx context.Context, log StreamReader, stream string) (*domain.Event, error) {
	evs, err := log.ReadStream(ctx, stream, math.MaxUint64, true, 1)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return &evs[0], nil
}

// eventAt reads the event at revision rev of stream, nil when the stream
// has none there yet: what a claim's ClaimDead needs. Errors: the log's.
func eventAt(ctx context.Context, log StreamReader, stream string, rev uint64) (*domain.Event, error) {
	evs, err := log.ReadStream(ctx, stream, rev, false, 1)
	if err != nil || len(evs) == 0 || evs[0].Revision != rev {
		return nil, err
	}
	return &evs[0], nil
}

// appendHeld appends main together with the claims and releases of holds,
// those first (on a log whose AppendMulti is not atomic, a lost race for
// a hold then writes nothing), in one AppendMulti, and returns the log
// position of the last event written. Errors: the log's.
func appendHeld(ctx context.Context, log MultiAppender, holds []StreamAppend, main StreamAppend) (uint64, error) {
	res, err := log.AppendMulti(ctx, append(holds, main))
	if err != nil {
		return 0, err
	}
	last := uint64(0)
	for _, r := range res {
		last = max(last, r.LastPosition)
	}
	return last, nil
}
