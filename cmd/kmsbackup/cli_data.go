package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
)

func newDataCmd(a *app) *cobra.Command {
	return newGroupCmd("data", "View the backed-up data of a viewable day, and the difference between days",
		newDataListCmd(a),
		newDataCheckpointsCmd(a),
		newDataDiffCmd(a),
	)
}

// dayFlag requires a flag holding a day as YYYY-MM-DD.
func dayFlag(name, value, what string) error {
	if err := requireFlag(name, value, what+" as YYYY-MM-DD"); err != nil {
		return err
	}
	if _, err := domain.ParseDay(value); err != nil {
		return usagef("--%s must be a date as YYYY-MM-DD, such as 2026-05-01", name)
	}
	return nil
}

// tabFlag requires --tab to name one of the day's lists.
func tabFlag(tab string) error {
	tabs := httpapi.DataTabs()
	if tab == "" {
		return usagef("--tab is required: pass one of %s", strings.Join(tabs, ", "))
	}
	for _, t := range tabs {
		if t == tab {
			return nil
		}
	}
	return usagef("--tab must be one of %s", strings.Join(tabs, ", "))
}

func newDataListCmd(a *app) *cobra.Command {
	var (
		day, tab string
		page     pageFlags
	)
	cmd := &cobra.Command{
		Use:   "list BACKUP_ID --day YYYY-MM-DD --tab TAB",
		Short: "List one tab of a viewable day's data: IDs, versions and change times",
		Long: `List one tab of the data a backup instance holds for a viewable day (a date
in the instance's time zone): IDs or names, versions and the time of the
change, never key material or secret values. The tabs:

  full-keys            every key in the day's full backup
  incremental-keys     keys created during the day
  rotated-keys         keys rotated during the day
  full-secrets         every secret in the day's full backup
  incremental-secrets  secrets created during the day
  rotated-secrets      secrets rotated during the day
  deleted              keys and secrets deleted during the day

A day is viewable from the day the instance was enabled, for its viewable
days up to today. An upload holds one day: leave --day out for it.`,
		Example: `  kmsbackup data list BACKUP_ID --day 2026-05-01 --tab full-keys
  kmsbackup data list BACKUP_ID --day 2026-05-01 --tab deleted -o id
  kmsbackup data list BACKUP_ID --day 2026-05-01 --tab full-secrets --page-size 100 -o json
  kmsbackup data list UPLOAD_ID --tab full-keys`,
		Args:              exactArgs("BACKUP_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if day != "" { // an upload holds one day: it needs none
				if err := dayFlag("day", day, "the day to view"); err != nil {
					return err
				}
			}
			if err := tabFlag(tab); err != nil {
				return err
			}
			if err := page.validate(cmd); err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			l, err := c.ListDayData(cmd.Context(), args[0], day, tab, page.size, page.token)
			if err != nil {
				return err
			}
			return renderList(a, l, dataHeader, dataRow)
		},
	}
	cmd.Flags().StringVar(&day, "day", "", "the day, YYYY-MM-DD in the instance's time zone (required, except for an upload)")
	cmd.Flags().StringVar(&tab, "tab", "", "the list: "+strings.Join(httpapi.DataTabs(), ", ")+" (required)")
	page.register(cmd)
	_ = cmd.RegisterFlagCompletionFunc("day", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("tab", cobra.FixedCompletions(httpapi.DataTabs(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func newDataCheckpointsCmd(a *app) *cobra.Command {
	var day string
	cmd := &cobra.Command{
		Use:   "checkpoints BACKUP_ID --day YYYY-MM-DD",
		Short: "List a viewable day's backups: the points in time restore --at can choose",
		Long: `List the checkpoints of a viewable day, oldest first: its full backup (or,
on the day of a catch-up, the first checkpoint) and an incremental every 5
minutes. Pass a checkpoint's time to restore --at to restore the state it
holds. An upload holds one day: leave --day out for it.`,
		Example: `  kmsbackup data checkpoints BACKUP_ID --day 2026-05-01
  kmsbackup restore --from BACKUP_ID --day 2026-05-01 --at 2026-05-01T09:40:00Z --key KEY_ID --to-instance KMS_ID`,
		Args:              exactArgs("BACKUP_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if day != "" { // an upload holds one day: it needs none
				if err := dayFlag("day", day, "the day"); err != nil {
					return err
				}
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			l, err := c.ListDayCheckpoints(cmd.Context(), args[0], day)
			if err != nil {
				return err
			}
			return renderList(a, l, checkpointHeader, checkpointRow)
		},
	}
	cmd.Flags().StringVar(&day, "day", "", "the day, YYYY-MM-DD in the instance's time zone (required, except for an upload)")
	_ = cmd.RegisterFlagCompletionFunc("day", cobra.NoFileCompletions)
	return cmd
}

func newDataDiffCmd(a *app) *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "diff BACKUP_ID --from YYYY-MM-DD --to YYYY-MM-DD",
		Short: "List what was created, rotated and deleted between two viewable days",
		Long: `List the keys and secrets created, rotated and deleted between the end of day
--from and the end of day --to (both viewable, --to not before --from).`,
		Example: `  kmsbackup data diff BACKUP_ID --from 2026-05-01 --to 2026-05-02
  kmsbackup data diff BACKUP_ID --from 2026-05-01 --to 2026-05-07 -o json`,
		Args:              exactArgs("BACKUP_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := dayFlag("from", from, "the earlier day"); err != nil {
				return err
			}
			if err := dayFlag("to", to, "the later day"); err != nil {
				return err
			}
			if to < from {
				return usagef("--to must not be before --from")
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			l, err := c.DiffDays(cmd.Context(), args[0], from, to)
			if err != nil {
				return err
			}
			return renderList(a, l, diffHeader, diffRow)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the earlier day, YYYY-MM-DD (required)")
	cmd.Flags().StringVar(&to, "to", "", "the later day, YYYY-MM-DD (required)")
	_ = cmd.RegisterFlagCompletionFunc("from", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("to", cobra.NoFileCompletions)
	return cmd
}
