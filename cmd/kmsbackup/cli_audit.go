package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
)

func newAuditCmd(a *app) *cobra.Command {
	return newGroupCmd("audit", "List the audit records of restores and other backup operations",
		newAuditListCmd(a),
	)
}

func newAuditListCmd(a *app) *cobra.Command {
	var (
		backup, since string
		page          pageFlags
	)
	cmd := &cobra.Command{
		Use:   "list [--backup BACKUP_ID] [--since RFC3339]",
		Short: "List the account's audit records: who restored what, from which backup and day, into which instance",
		Long: `List the account's audit records, oldest first: when, what was done (such as
a restore: one record per batch of items it wrote, which -o json lists),
by whom, to which target instance and item, from which backup instance and
day. --backup keeps the records about one
backup instance, --since those at or after an RFC 3339 time.`,
		Example: `  kmsbackup audit list
  kmsbackup audit list --backup BACKUP_ID --since 2026-05-01T00:00:00Z
  kmsbackup audit list --page-size 50 --page-token TOKEN -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := timeFlag("since", since); err != nil {
				return err
			}
			if err := page.validate(cmd); err != nil {
				return err
			}
			var t time.Time
			if since != "" {
				t, _ = time.Parse(time.RFC3339, since) // checked above
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			l, err := c.ListAudit(cmd.Context(), backup, t, page.size, page.token)
			if err != nil {
				return err
			}
			return renderList(a, l, auditHeader, auditRow)
		},
	}
	cmd.Flags().StringVar(&backup, "backup", "", "only the records about this backup instance")
	cmd.Flags().StringVar(&since, "since", "", "only the records at or after this RFC 3339 time")
	page.register(cmd)
	_ = cmd.RegisterFlagCompletionFunc("backup", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("since", cobra.NoFileCompletions)
	return cmd
}

var auditHeader = []string{"AT", "ACTION", "ITEM", "TARGET", "BACKUP", "DAY", "ACTOR"}

func auditRow(r httpapi.AuditRecord) []string {
	item := r.Item
	if n := len(r.Keys) + len(r.Secrets); n > 0 { // one batch of a restore
		item = itoa(n) + " " + plural(n, "item", "items")
	}
	return []string{fmtTime(r.At), r.Action, orDash(item), orDash(r.Target), orDash(r.Backup), orDash(r.Day), r.Actor}
}
