package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
)

func newBackupInstanceCmd(a *app) *cobra.Command {
	return newGroupCmd("backup-instance", "Create, enable, extend, renew, reset, show and list backup instances",
		newBackupListCmd(a),
		newBackupShowCmd(a),
		newBackupCreateCmd(a),
		newBackupEnableCmd(a),
		newBackupExtendCmd(a),
		newBackupRenewCmd(a),
		newBackupResetCmd(a),
	)
}

func (a *app) renderBackup(b httpapi.BackupInstance) error {
	return a.render(b, func(w io.Writer) error { return writeFields(w, backupFields(b)) })
}

// viewableDaysFlag requires --viewable-days, within the product's bounds.
func viewableDaysFlag(cmd *cobra.Command, days int) error {
	if !cmd.Flags().Changed("viewable-days") {
		return usagef("--viewable-days is required: pass how many days of data stay viewable, %d to %d", domain.MinViewableDays, domain.MaxViewableDays)
	}
	if days < domain.MinViewableDays || days > domain.MaxViewableDays {
		return usagef("--viewable-days must be between %d and %d", domain.MinViewableDays, domain.MaxViewableDays)
	}
	return nil
}

// termFlag checks --term.
func termFlag(term string) error {
	if err := requireFlag("term", term, "the term in months or years, such as 1mo, 12mo or 1y"); err != nil {
		return err
	}
	if _, err := domain.ParseTerm(term); err != nil {
		return usagef("--term must be a number of months or years, such as 1mo, 12mo or 1y, at most %d months", domain.MaxTermMonths)
	}
	return nil
}

func newBackupListCmd(a *app) *cobra.Command {
	var all bool
	cmd := newPagedListCmd(a, &cobra.Command{
		Short: "List backup instances: kind, binding, viewable days, expiry, state and last backups",
		Long: `List the account's backup instances: the free default one of each region
(created with the region's first KMS instance), the provisioned ones and the
uploads. Released instances (their data destroyed, their KMS instance no
longer bound) are left out; --all lists them too. Times are shown in each
instance's time zone, with its offset.`,
		Example: `  kmsbackup backup-instance list
  kmsbackup backup-instance list --all
  kmsbackup backup-instance list -o id
  kmsbackup backup-instance list --page-size 20 --page-token TOKEN -o json`,
	}, func(c *httpapi.Client, ctx context.Context, size int, token string) (httpapi.List[httpapi.BackupInstance], error) {
		return c.ListBackupInstances(ctx, all, size, token)
	}, backupHeader, backupRow)
	cmd.Flags().BoolVar(&all, "all", false, "list released backup instances too")
	return cmd
}

func newBackupShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:               "show BACKUP_ID",
		Short:             "Show a backup instance",
		Example:           `  kmsbackup backup-instance show BACKUP_ID -o json`,
		Args:              exactArgs("BACKUP_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			b, err := c.GetBackupInstance(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.renderBackup(b)
		},
	}
}

func newBackupCreateCmd(a *app) *cobra.Command {
	var (
		region, term string
		days         int
	)
	cmd := &cobra.Command{
		Use:   "create --region REGION --viewable-days N --term TERM",
		Short: "Create a provisioned backup instance (then enable it)",
		Long: `Create a provisioned backup instance in a region. It keeps --viewable-days
days of data viewable (7 to 600; extend raises it later) and expires at the
end of --term (months or years, such as 1mo or 1y; renew extends it).

It backs up nothing until "kmsbackup backup-instance enable" binds it to a
KMS instance of the same region.`,
		Example: `  kmsbackup backup-instance create --region cn-hangzhou --viewable-days 30 --term 1y
  BACKUP=$(kmsbackup backup-instance create --region cn-hangzhou --viewable-days 30 --term 1y -o id)`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("region", region, "the region of the new instance, e.g. --region cn-hangzhou"); err != nil {
				return err
			}
			if err := viewableDaysFlag(cmd, days); err != nil {
				return err
			}
			if err := termFlag(term); err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			b, err := c.CreateBackupInstance(cmd.Context(), httpapi.CreateBackupInstanceRequest{Region: region, ViewableDays: days, Term: term})
			if err != nil {
				return err
			}
			return a.renderBackup(b)
		},
	}
	cmd.Flags().StringVar(&region, "region", "", "region of the backup instance (required)")
	cmd.Flags().IntVar(&days, "viewable-days", 0, fmt.Sprintf("days of data that stay viewable, %d to %d (required)", domain.MinViewableDays, domain.MaxViewableDays))
	cmd.Flags().StringVar(&term, "term", "", "term: months or years, such as 1mo, 12mo or 1y (required)")
	_ = cmd.RegisterFlagCompletionFunc("region", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("viewable-days", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("term", cobra.FixedCompletions([]string{"1mo", "3mo", "6mo", "1y", "2y", "3y"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func newBackupEnableCmd(a *app) *cobra.Command {
	var kms, alias, zone string
	cmd := &cobra.Command{
		Use:   "enable BACKUP_ID --kms-instance KMS_ID --alias ALIAS [--time-zone TZ]",
		Short: "Bind a backup instance to a KMS instance and take the first full backup",
		Long: `Enable a backup instance: bind it to a KMS instance of the same account and
region (a KMS instance is backed up by at most one backup instance), and take
the first full backup at once. Then a full backup runs every day at 00:00 in
--time-zone (an IANA name; by default the region's: Asia/Shanghai for
cn-hangzhou, UTC for a region kmsbackup does not know) and an incremental
every 5 minutes. Keys and secrets are backed up. The alias is kept without
surrounding spaces and may hold no control or bidi characters.`,
		Example: `  kmsbackup backup-instance enable BACKUP_ID --kms-instance KMS_ID --alias prod
  kmsbackup backup-instance enable BACKUP_ID --kms-instance KMS_ID --alias prod --time-zone Asia/Shanghai`,
		Args:              exactArgs("BACKUP_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("kms-instance", kms, "the ID of the KMS instance to back up (see kmsbackup kms instance list)"); err != nil {
				return err
			}
			if err := requireFlag("alias", alias, "a name for the backup instance, such as --alias prod"); err != nil {
				return err
			}
			if _, err := domain.CleanAlias("alias", alias); err != nil {
				return usagef("--alias must be 1 to %d characters without control or bidi characters", domain.MaxAliasLength)
			}
			if zone != "" && domain.ValidateTimeZone(zone) != nil {
				return usagef("--time-zone must be an IANA time zone name such as Asia/Shanghai, Europe/Berlin or UTC (leave it out for the region's)")
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			b, err := c.EnableBackupInstance(cmd.Context(), args[0], httpapi.EnableBackupInstanceRequest{KMSInstance: kms, Alias: alias, TimeZone: zone})
			if err != nil {
				return err
			}
			return a.renderBackup(b)
		},
	}
	cmd.Flags().StringVar(&kms, "kms-instance", "", "ID of the KMS instance to back up (required)")
	cmd.Flags().StringVar(&alias, "alias", "", "alias of the backup instance (required)")
	cmd.Flags().StringVar(&zone, "time-zone", "", "IANA time zone of the days and the midnight full backups (default: the region's)")
	for _, f := range []string{"kms-instance", "alias", "time-zone"} {
		_ = cmd.RegisterFlagCompletionFunc(f, cobra.NoFileCompletions)
	}
	return cmd
}

func newBackupExtendCmd(a *app) *cobra.Command {
	var days int
	cmd := &cobra.Command{
		Use:   "extend BACKUP_ID --viewable-days N",
		Short: "Raise the viewable days of a provisioned backup instance",
		Long: `Raise the viewable days of a provisioned backup instance, up to 600. They
never go down, the default instance keeps 7, and no extension ever shows data
from before the instance was enabled.`,
		Example:           `  kmsbackup backup-instance extend BACKUP_ID --viewable-days 60`,
		Args:              exactArgs("BACKUP_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := viewableDaysFlag(cmd, days); err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			b, err := c.ExtendViewableDays(cmd.Context(), args[0], days)
			if err != nil {
				return err
			}
			return a.renderBackup(b)
		},
	}
	cmd.Flags().IntVar(&days, "viewable-days", 0, fmt.Sprintf("the new viewable days, more than now and at most %d (required)", domain.MaxViewableDays))
	_ = cmd.RegisterFlagCompletionFunc("viewable-days", cobra.NoFileCompletions)
	return cmd
}

func newBackupRenewCmd(a *app) *cobra.Command {
	var term string
	cmd := &cobra.Command{
		Use:   "renew BACKUP_ID --term TERM",
		Short: "Extend the term of a provisioned backup instance; an expired one resumes",
		Long: `Extend the term of a provisioned backup instance by --term (months or
years). An expired instance that is not yet released (15 days after expiry)
returns to the state it had and resumes backing up.`,
		Example:           `  kmsbackup backup-instance renew BACKUP_ID --term 1y`,
		Args:              exactArgs("BACKUP_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := termFlag(term); err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			b, err := c.RenewBackupInstance(cmd.Context(), args[0], term)
			if err != nil {
				return err
			}
			return a.renderBackup(b)
		},
	}
	cmd.Flags().StringVar(&term, "term", "", "how much longer: months or years, such as 1mo or 1y (required)")
	_ = cmd.RegisterFlagCompletionFunc("term", cobra.FixedCompletions([]string{"1mo", "3mo", "6mo", "1y", "2y", "3y"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func newBackupResetCmd(a *app) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "reset BACKUP_ID --yes",
		Short: "Destroy every backup of a backup instance and unbind it (asks for --yes)",
		Long: `Reset a backup instance: destroy every full and incremental backup it holds
and unbind it from its KMS instance. It becomes not-enabled and can be enabled
again, for any KMS instance, starting with a new first full backup.

This cannot be undone. Without --yes nothing is changed: the command shows
what would be destroyed and exits with status 2.`,
		Example: `  kmsbackup backup-instance reset BACKUP_ID
  kmsbackup backup-instance reset BACKUP_ID --yes`,
		Args:              exactArgs("BACKUP_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			if !yes {
				b, err := c.GetBackupInstance(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return resetRefusal(b)
			}
			b, err := c.ResetBackupInstance(cmd.Context(), args[0], true)
			if err != nil {
				return err
			}
			return a.renderBackup(b)
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm: destroy the backups")
	return cmd
}

// resetRefusal names what a reset of b would destroy.
func resetRefusal(b httpapi.BackupInstance) error {
	what := "every full and incremental backup of backup instance " + cell(b.ID)
	if b.Checkpoints > 0 {
		what += fmt.Sprintf(" (%d checkpoints", b.Checkpoints)
		if b.EnabledDay != "" {
			what += " since " + cell(b.EnabledDay)
		}
		if last := latest(b.LastFullAt, b.LastIncrementalAt); !last.IsZero() {
			what += ", the last at " + fmtTime(last)
		}
		what += ")"
	}
	if b.KMSInstance != "" {
		what += " and unbind it from KMS instance " + cell(b.KMSInstance)
	}
	return usagef("reset would destroy %s; this cannot be undone: repeat with --yes to confirm", what)
}
