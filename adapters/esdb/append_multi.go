package esdb

import (
	"context"
	"fmt"

	"github.com/kmsbackup/kmsbackup/commands"
)

// AppendMulti appends the parts one after the other, in the order given,
// each with Append (its expected revision, its idempotency): EventStoreDB's
// client (v4) has no append that spans streams, so the call is NOT atomic.
// When a part is refused, the parts before it stay written and the error
// says so; a retry of the same call writes what is missing (each part is
// idempotent on its event IDs). Callers that keep a name unique put the
// claim of the name first, so that a lost race writes nothing, and resolve
// a claim whose item never followed (commands: see NameClaimed).
//
// Errors: Append's, and domain.ErrInvalidArgument for a call of the wrong
// shape (commands.CheckMultiAppend). Safe for concurrent use.
func (l *Log) AppendMulti(ctx context.Context, parts []commands.StreamAppend) ([]commands.AppendResult, error) {
	if err := commands.CheckMultiAppend(opAppend, parts); err != nil {
		return nil, err
	}
	out := make([]commands.AppendResult, len(parts))
	for i, p := range parts {
		res, err := l.Append(ctx, p.Stream, p.Expected, p.Events)
		if err != nil {
			if i > 0 {
				return nil, fmt.Errorf("part %d of %d of a multi-stream append (the %d before it are written): %w", i+1, len(parts), i, err)
			}
			return nil, err
		}
		out[i] = res
	}
	return out, nil
}

var _ commands.MultiAppender = (*Log)(nil)
