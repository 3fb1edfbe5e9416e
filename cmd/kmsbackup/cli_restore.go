package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
)

// timeFlag checks an optional flag holding an RFC 3339 instant.
func timeFlag(name, value string) error {
	if value == "" {
		return nil
	}
	if _, err := time.Parse(time.RFC3339, value); err != nil {
		return usagef("--%s must be an RFC 3339 time such as 2026-05-01T10:05:00Z", name)
	}
	return nil
}

// restoreFlags are the flags of kmsbackup restore.
type restoreFlags struct {
	from, day, at        string
	keys, secrets        []string
	all, dryRun          bool
	toInstance, toRegion string
}

// validate parses the command line, before any request, with the parsers
// the server uses.
func (f *restoreFlags) validate() error {
	if err := requireFlag("from", f.from, "the ID of the backup instance to restore from (see kmsbackup backup-instance list)"); err != nil {
		return err
	}
	if f.day != "" { // an upload holds one day, and --at names its own: neither needs --day
		if err := dayFlag("day", f.day, "the viewable day to restore from"); err != nil {
			return err
		}
	}
	if err := timeFlag("at", f.at); err != nil {
		return err
	}
	if _, err := domain.ParseRestoreSelection(f.all, f.keys, f.secrets); err != nil {
		return usagef("%v (--key KEY_ID and --secret NAME are repeatable; --all restores everything)", err)
	}
	return requireFlag("to-instance", f.toInstance, "the ID of the KMS instance to restore into (see kmsbackup kms instance list)")
}

func (f *restoreFlags) request() httpapi.RestoreRequest {
	return httpapi.RestoreRequest{From: f.from, Day: f.day, At: f.at, Keys: f.keys, Secrets: f.secrets, All: f.all,
		ToInstance: f.toInstance, ToRegion: f.toRegion, DryRun: f.dryRun}
}

func newRestoreCmd(a *app) *cobra.Command {
	var f restoreFlags
	cmd := &cobra.Command{
		Use:   "restore --from BACKUP_ID --day YYYY-MM-DD (--key KEY_ID ... | --secret NAME ... | --all) --to-instance KMS_ID",
		Short: "Restore keys and secrets from a backup instance's viewable day into a KMS instance (--dry-run only plans)",
		Long: `Restore keys (--key, repeatable) and secrets (--secret, repeatable), or
everything (--all), from the data a backup instance holds for a viewable day
into a KMS instance of the same account (--to-instance). Each item is restored
as it last stood within the day, before any deletion, with all its versions:
ciphertexts made before a deletion decrypt again. --at restores the state at
an RFC 3339 instant of a viewable day (--day may then be left out: it is the
instant's day in the backup instance's time zone): every change that occurred
at or before it, not only the 5-minute checkpoints (kmsbackup data checkpoints
lists them as a guide). An instant after the day's last checkpoint restores
that checkpoint's state: the backup holds nothing later yet.

Before anything is written, a plan checks every condition and reports all
failures together: the target instance exists (another account's is reported
as missing) and is in --to-region when given; it has key and secret quota
left; no key with that ID and no secret with that name exists in its region
(delete it there first); a secret's key is in the target or restored with it;
the backup instance is not expired and the day is viewable; every item is in
that day's data. --dry-run prints the plan and writes nothing.

--from may name an upload (see kmsbackup upload): it holds one day, so --day
is left out.

Keys are restored before secrets, in batches each written all or nothing
with one audit record listing its items (kmsbackup audit list). Repeating a
restore is safe, also after one was cut short: items the target already holds,
identical to the backup's, are skipped (status already-present) and the rest
is written, nothing twice. Afterwards the target is validated: the restored
versions match the backup and every secret decrypts.

With --all and a terminal on stderr, a progress bar there shows each phase
(plan, apply, validate) as the server reports it; otherwise nothing is
printed until the restore returns.

Exit status: 0 when restored and validated (or, with --dry-run, when the plan
has no finding); 6 when the plan has findings (they are printed, nothing is
restored); 9 when the validation after the restore finds a problem.`,
		Example: `  kmsbackup restore --from BACKUP_ID --day 2026-05-01 --key KEY_ID --to-instance KMS_ID --dry-run
  kmsbackup restore --from BACKUP_ID --day 2026-05-01 --key KEY_ID --secret db-password --to-instance KMS_ID
  kmsbackup restore --from BACKUP_ID --at 2026-05-01T10:05:00Z --all --to-instance KMS_ID --to-region cn-hangzhou
  kmsbackup restore --from BACKUP_ID --day 2026-05-01 --all --to-instance KMS_ID -o json | jq '.plan.findings'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			var res httpapi.RestoreResult
			if f.all && isTerminal(a.stderr) {
				bar := newRestoreBar(a.stderr)
				res, err = c.RestoreWithProgress(cmd.Context(), f.request(), bar.show)
				bar.close()
			} else {
				res, err = c.Restore(cmd.Context(), f.request())
			}
			if err != nil {
				return err
			}
			normalizeRestore(&res)
			if a.output == formatID {
				err = writeIDs(a.stdout, httpapi.List[httpapi.RestoreItem]{Items: res.Plan.Items})
			} else {
				err = a.render(res, func(w io.Writer) error { return writeRestore(w, res) })
			}
			if err != nil {
				return err
			}
			return restoreOutcome(res)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "ID of the backup instance to restore from (required)")
	fl.StringVar(&f.day, "day", "", "the viewable day, YYYY-MM-DD in the backup instance's time zone (required, except from an upload or with --at)")
	fl.StringVar(&f.at, "at", "", "restore the state at this RFC 3339 instant of a viewable day")
	fl.StringArrayVar(&f.keys, "key", nil, "key ID to restore (repeatable)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "secret name to restore (repeatable)")
	fl.BoolVar(&f.all, "all", false, "restore every key and secret of the day's data")
	fl.StringVar(&f.toInstance, "to-instance", "", "ID of the KMS instance to restore into (required)")
	fl.StringVar(&f.toRegion, "to-region", "", "the target's region, checked against it")
	fl.BoolVar(&f.dryRun, "dry-run", false, "only plan: check every condition and print the plan, restore nothing")
	for _, name := range []string{"from", "day", "at", "key", "secret", "to-instance", "to-region"} {
		_ = cmd.RegisterFlagCompletionFunc(name, cobra.NoFileCompletions)
	}
	return cmd
}

// normalizeRestore makes absent lists empty, so that -o json prints [].
func normalizeRestore(res *httpapi.RestoreResult) {
	if res.Plan.Items == nil {
		res.Plan.Items = []httpapi.RestoreItem{}
	}
	if res.Plan.Findings == nil {
		res.Plan.Findings = []httpapi.RestoreFinding{}
	}
	if res.Validation == nil {
		res.Validation = []httpapi.RestoreFinding{}
	}
}

// restoreOutcome is the error, hence the exit status, of a restore that
// the server answered: findings of the plan are a failed precondition (6),
// findings of the validation corrupt data (9).
func restoreOutcome(res httpapi.RestoreResult) error {
	if n := len(res.Plan.Findings); n > 0 {
		return domain.Errorf(domain.ErrFailedPrecondition, "restore", "", "resolve them and repeat; --dry-run checks without restoring",
			"the plan has %d %s: nothing restored", n, plural(n, "finding", "findings"))
	}
	if n := len(res.Validation); n > 0 {
		return domain.Errorf(domain.ErrCorrupt, "restore", "", "",
			"validation found %d %s: the target does not match the backup", n, plural(n, "problem", "problems"))
	}
	return nil
}

// checkpoints says which checkpoints the items come from, and when the
// last was taken.
func checkpoints(p httpapi.RestorePlan) string {
	if p.ToSeq == 0 {
		return "-"
	}
	s := itoa(p.ToSeq)
	if p.FromSeq != p.ToSeq {
		s = itoa(p.FromSeq) + " to " + s
	}
	if !p.At.IsZero() {
		s += " (" + fmtTime(p.At) + ")"
	}
	return s
}

func writeRestore(w io.Writer, res httpapi.RestoreResult) error {
	p := res.Plan
	fields := []field{
		{"Target", p.Target},
		{"Region", orDash(p.Region)},
		{"From backup", p.Backup},
		{"Day", p.Day},
		{"Checkpoint", checkpoints(p)},
	}
	switch n := len(p.Findings); {
	case n > 0:
		fields = append(fields, field{"Result", fmt.Sprintf("%d %s: nothing restored", n, plural(n, "finding", "findings"))})
	case res.DryRun || !res.Applied:
		fields = append(fields, field{"Result", "OK, no findings (dry run: nothing restored)"})
	default:
		validation := "OK"
		if n := len(res.Validation); n > 0 {
			validation = fmt.Sprintf("%d %s", n, plural(n, "problem", "problems"))
		}
		fields = append(fields, field{"Restored", itoa(res.Restored)}, field{"Already present", itoa(res.AlreadyPresent)},
			field{"Validation", validation})
	}
	if err := writeFields(w, fields); err != nil {
		return err
	}
	if len(p.Items) > 0 {
		rows := make([][]string, 0, len(p.Items))
		for _, it := range p.Items {
			rows = append(rows, []string{it.Kind, it.ID, itoa(it.Versions), it.Status})
		}
		fmt.Fprintln(w)
		if err := writeTable(w, []string{"KIND", "ID", "VERSIONS", "STATUS"}, rows); err != nil {
			return err
		}
	}
	for _, fs := range [][]httpapi.RestoreFinding{p.Findings, res.Validation} {
		if len(fs) == 0 {
			continue
		}
		rows := make([][]string, 0, len(fs))
		for _, f := range fs {
			rows = append(rows, []string{f.Code, orDash(f.Item), f.Message})
		}
		fmt.Fprintln(w)
		if err := writeTable(w, []string{"CODE", "ITEM", "MESSAGE"}, rows); err != nil {
			return err
		}
	}
	return nil
}

func newReplayCmd(a *app) *cobra.Command {
	var day, at string
	cmd := &cobra.Command{
		Use:   "replay BACKUP_ID (--day YYYY-MM-DD | --at RFC3339)",
		Short: "Show a backup instance's state at a checkpoint: items, version digests and an overall digest",
		Long: `Replay a backup instance's data to the end of a viewable day (--day), or to the
last checkpoint at or before an instant (--at, whose day, in the instance's
time zone, must be viewable), and print every key and secret live there with
a digest of each version and a digest of the whole state.

The digests never reveal key material or secret values (a key version's is of
its material, a secret version's of its stored ciphertext). Two replays that
print the same digest describe the same state: compare a replay with what a
restore brought back, or two points in time.`,
		Example: `  kmsbackup replay BACKUP_ID --day 2026-05-01
  kmsbackup replay BACKUP_ID --at 2026-05-01T10:05:00Z
  kmsbackup replay BACKUP_ID --day 2026-05-01 -o json | jq -r .digest`,
		Args:              exactArgs("BACKUP_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case day != "" && at != "":
				return usagef("--day and --at are mutually exclusive: --at alone replays to its checkpoint")
			case day == "" && at == "":
				return usagef("pass --day YYYY-MM-DD (the end of a viewable day) or --at RFC3339 (the last checkpoint at or before it)")
			case day != "":
				if err := dayFlag("day", day, "the day to replay"); err != nil {
					return err
				}
			default:
				if err := timeFlag("at", at); err != nil {
					return err
				}
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			st, err := c.Replay(cmd.Context(), args[0], day, at)
			if err != nil {
				return err
			}
			if st.Items == nil {
				st.Items = []httpapi.ReplayItem{}
			}
			return a.render(st, func(w io.Writer) error { return writeReplay(w, st) })
		},
	}
	cmd.Flags().StringVar(&day, "day", "", "replay to the end of this viewable day, YYYY-MM-DD")
	cmd.Flags().StringVar(&at, "at", "", "replay to the last checkpoint at or before this RFC 3339 time")
	_ = cmd.RegisterFlagCompletionFunc("day", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("at", cobra.NoFileCompletions)
	return cmd
}

// shortDigest is the first 12 hex characters of a digest.
func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func writeReplay(w io.Writer, st httpapi.ReplayState) error {
	rows := make([][]string, 0, len(st.Items))
	for _, it := range st.Items {
		ds := make([]string, 0, len(it.Versions))
		for _, v := range it.Versions {
			ds = append(ds, itoa(v.Version)+":"+shortDigest(v.Digest))
		}
		rows = append(rows, []string{it.Kind, it.ID, itoa(len(it.Versions)), strings.Join(ds, " ")})
	}
	if err := writeTable(w, []string{"KIND", "ID", "VERSIONS", "DIGESTS"}, rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nCheckpoint: %s at %s (day %s)\nDigest: %s\n", itoa(st.Seq), fmtTime(st.At), cell(st.Day), cell(st.Digest))
	return err
}

// restoreBar shows a restore's progress on a terminal: one bar per phase.
type restoreBar struct {
	w     io.Writer
	phase string
	bar   *progressbar.ProgressBar
}

func newRestoreBar(w io.Writer) *restoreBar { return &restoreBar{w: w} }

// show draws one progress report.
func (b *restoreBar) show(p httpapi.RestoreProgress) {
	if p.Phase != b.phase || b.bar == nil {
		b.close()
		b.phase = p.Phase
		b.bar = progressbar.NewOptions64(int64(max(p.Total, 1)), progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetDescription(fmt.Sprintf("%-8s", p.Phase)), progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30), progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionSetRenderBlankState(true))
	}
	if int64(p.Total) > b.bar.GetMax64() {
		b.bar.ChangeMax64(int64(p.Total))
	}
	_ = b.bar.Set64(int64(p.Done))
}

// close ends the current bar on its own line.
func (b *restoreBar) close() {
	if b.bar == nil {
		return
	}
	if !b.bar.IsFinished() {
		_ = b.bar.Exit()
	}
	fmt.Fprintln(b.w)
	b.bar = nil
}
