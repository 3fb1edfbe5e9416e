package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func newEventsCmd(a *app) *cobra.Command {
	return newGroupCmd("events", "Follow the public event stream",
		newEventsTailCmd(a),
	)
}

func newEventsTailCmd(a *app) *cobra.Command {
	var from uint64
	cmd := &cobra.Command{
		Use:   "tail [--from POSITION]",
		Short: "Print events as they happen, one JSON document per line",
		Long: `Print the public events the token may see (an account's own; the admin's:
every account's) after log position --from (0: from the start), then new ones
as they happen, one JSON document per line, until interrupted (Ctrl-C ends it
with exit code 0). The format is the same with -o table and -o json.

If the stream breaks, start again with --from the position of the last
event printed.`,
		Example: `  kmsbackup events tail
  kmsbackup events tail --from 1200 | jq -c 'select(.type == "KeyRotated")'`,
		Annotations: map[string]string{noIDOutput: "prints events, not IDs"},
		Args:        noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			err = c.TailEvents(ctx, from, func(ev json.RawMessage) error {
				_, err := fmt.Fprintf(a.stdout, "%s\n", ev)
				return err
			})
			if ctx.Err() != nil {
				return nil // interrupted: the normal end of a tail
			}
			return err
		},
	}
	cmd.Flags().Uint64Var(&from, "from", 0, "log position to start after (0: from the start)")
	return cmd
}
