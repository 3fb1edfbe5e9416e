package main

import (
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/domain"
)

func newDevCmd(a *app) *cobra.Command {
	return newGroupCmd("dev", "Development tools of a --dev server",
		newGroupCmd("clock", "Show the server's clock, or move a manual one forward",
			newDevClockShowCmd(a),
			newDevClockAdvanceCmd(a),
		),
		newDevScrubCmd(a),
	)
}

func newDevScrubCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "scrub",
		Short: "Verify every backup instance now, as the background scrub does",
		Long: `Run the background verification of every backup instance of every account
on a --dev server now (the chain of checkpoints, every checksum, every key version
opens), and print how many instances it verified, found damaged, could not read,
or skipped (reset or released meanwhile). The results go where the scheduled
scrub's go: /metrics (kmsbackup_verify_*), "backup-instance show" and the server
log. A server on the real clock also scrubs every --scrub-interval; one on a
manual clock only when asked.`,
		Example: `  kmsbackup dev scrub
  kmsbackup dev scrub -o json`,
		Annotations: map[string]string{noIDOutput: "has no ID to print"},
		Args:        noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			run, err := c.DevScrub(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(run, func(w io.Writer) error {
				return writeFields(w, []field{{"Started", fmtTime(run.StartedAt)}, {"Ended", fmtTime(run.EndedAt)},
					{"Verified", itoa(run.Checked)}, {"With findings", itoa(run.WithFindings)},
					{"Could not verify", itoa(run.Errors)}, {"Skipped", itoa(run.Skipped)}})
			})
		},
	}
}

func newDevClockShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the server's clock and whether it is manual",
		Long: `Show the clock of a --dev server: its time, and whether it is manual
(started with --clock manual, so that only "kmsbackup dev clock advance" moves
it). A server without --dev has no dev clock and answers not found.`,
		Example:     `  kmsbackup dev clock show`,
		Annotations: map[string]string{noIDOutput: "has no ID to print"},
		Args:        noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			v, err := c.DevClock(cmd.Context())
			if err != nil {
				return err
			}
			return a.render(v, func(w io.Writer) error {
				return writeFields(w, []field{{"Now", fmtTime(v.Now)}, {"Manual", strconv.FormatBool(v.Manual)}})
			})
		},
	}
}

func newDevClockAdvanceCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "advance DURATION",
		Short: "Move a manual clock forward, running the backups that fall due",
		Long: `Move the manual clock of a --dev --clock manual server forward by DURATION:
a whole number and one unit, s, m, h or d (such as 90s, 5m, 48h or 31d; not
1h30m or 500ms), at most 400 days. It stops at each scheduled piece of work
on the way (full and incremental backups, expiries, releases) to do it, in
order. Prints the new time and how much work was done. The clock is kept in
the server's event log: a restart continues from it.`,
		Example: `  kmsbackup dev clock advance 5m
  kmsbackup dev clock advance 48h
  kmsbackup dev clock advance 31d -o json`,
		Annotations:       map[string]string{noIDOutput: "has no ID to print"},
		Args:              exactArgs("DURATION"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := domain.ParseClockAdvance(args[0]); err != nil {
				return usagef("DURATION must be %s, at most %d days (not 1h30m, not 500ms)",
					domain.ClockAdvanceForm, int(domain.MaxClockAdvance.Hours()/24))
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			res, err := c.AdvanceClock(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.render(res, func(w io.Writer) error {
				return writeFields(w, []field{{"Now", fmtTime(res.Now)}, {"Work done", itoa(res.Work)}})
			})
		},
	}
}
