package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
)

func newVerifyCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "verify BACKUP_ID",
		Short: "Verify a backup instance's data without restoring it (exit 9 on any finding)",
		Long: `Verify the data a backup instance holds, without restoring anything: the
chain of checkpoints (no gap, overlap, reordering or rollback), every digest
and checksum, that every backed-up key version opens under the instance's
data key, and that the read model agrees with the data.

Prints a summary and each finding. Exits with 0 when there is no finding and
with 9 (corrupt data) when there is any, whatever the output format. An
instance that holds no backup yet (never enabled, or reset since) has nothing
to verify: it says so and exits with 0 (in JSON: "checkpoints": 0).`,
		Example: `  kmsbackup verify BACKUP_ID
  kmsbackup verify BACKUP_ID -o json | jq '.findings[]'`,
		Args:              exactArgs("BACKUP_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			rep, err := c.VerifyBackup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if rep.Findings == nil {
				rep.Findings = []httpapi.Finding{}
			}
			if err := a.render(rep, func(w io.Writer) error { return writeVerify(w, rep) }); err != nil {
				return err
			}
			if n := len(rep.Findings); n > 0 {
				return domain.Errorf(domain.ErrCorrupt, "verify", cell(rep.ID), "", "%d %s: the backup data is not intact", n, plural(n, "finding", "findings"))
			}
			return nil
		},
	}
}

func writeVerify(w io.Writer, rep httpapi.VerifyReport) error {
	result := "OK, no findings"
	switch n := len(rep.Findings); {
	case n > 0:
		result = fmt.Sprintf("%d %s", n, plural(n, "finding", "findings"))
	case rep.Checkpoints == 0:
		result = "nothing to verify: " + rep.ID + " holds no backup yet (enabling it takes the first full backup)"
	}
	err := writeFields(w, []field{
		{"Backup instance", rep.ID},
		{"Generation", itoa(rep.Generation)},
		{"Checkpoints", itoa(rep.Checkpoints)},
		{"Events", itoa(rep.Events)},
		{"Key versions opened", itoa(rep.Sealed)},
		{"Result", result},
	})
	if err != nil || len(rep.Findings) == 0 {
		return err
	}
	rows := make([][]string, 0, len(rep.Findings))
	for _, f := range rep.Findings {
		rows = append(rows, []string{f.Kind, itoa(f.Seq), f.Detail})
	}
	fmt.Fprintln(w)
	return writeTable(w, []string{"KIND", "CHECKPOINT", "DETAIL"}, rows)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
