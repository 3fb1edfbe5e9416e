package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func newEventsCmd(a *app) *cobra.Command {
	return newGroupCmd("events", "Follow the public event stream",
		newEventsTailCmd(a),
	)
}

// errLimitReached ends a tail that has printed the events asked for.
var errLimitReached = errors.New("events tail: limit reached")

func newEventsTailCmd(a *app) *cobra.Command {
	var from uint64
	var limit int
	cmd := &cobra.Command{
		Use:   "tail [--from POSITION] [--limit N]",
		Short: "Print events as they happen, one JSON document per line",
		Long: `Print the public events the token may see (an account's own; the admin's:
every account's) after log position --from (0: from the start), then new ones
as they happen, one JSON document per line, until interrupted (Ctrl-C ends it
with exit code 0) or, with --limit N, once it has printed N events (exit code
0: a script can run it). The format is the same with -o table and -o json.

If the stream breaks, start again with --from the position of the last
event printed.`,
		Example: `  kmsbackup events tail
  kmsbackup events tail --from 0 --limit 5
  kmsbackup events tail --from 1200 | jq -c 'select(.type == "KeyRotated")'`,
		Annotations: map[string]string{noIDOutput: "prints events, not IDs"},
		Args:        noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("limit") && limit < 1 {
				return usagef("--limit must be at least 1 (leave it out to follow until interrupted)")
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			printed := 0
			err = c.TailEvents(ctx, from, func(ev json.RawMessage) error {
				if _, err := fmt.Fprintf(a.stdout, "%s\n", ev); err != nil {
					return err
				}
				if printed++; limit > 0 && printed >= limit {
					return errLimitReached
				}
				return nil
			})
			if ctx.Err() != nil || errors.Is(err, errLimitReached) {
				return nil // interrupted, or as many as asked: the normal ends of a tail
			}
			return err
		},
	}
	cmd.Flags().Uint64Var(&from, "from", 0, "log position to start after (0: from the start)")
	cmd.Flags().IntVar(&limit, "limit", 0, "end after printing this many events (default: follow until interrupted)")
	return cmd
}
