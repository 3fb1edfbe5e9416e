package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
)

// downloadView is what download prints: the one place the data key is ever
// shown.
type downloadView struct {
	ID      string `json:"id"` // the file's ID
	File    string `json:"file"`
	DataKey string `json:"data_key,omitempty"`
	KeyFile string `json:"key_file,omitempty"`
	Backup  string `json:"backup"`
	Day     string `json:"day,omitempty"`
	Bytes   int64  `json:"bytes"`
}

const dataKeyNote = "The data key is shown only this once and is kept nowhere: store it now. Without it the file cannot be read or uploaded."

func newDownloadCmd(a *app) *cobra.Command {
	var day, out, keyOut string
	var force bool
	cmd := &cobra.Command{
		Use:   "download BACKUP_ID --day YYYY-MM-DD --out FILE",
		Short: "Download a viewable day's data as an encrypted file; its data key is printed once",
		Long: `Download the data a backup instance holds for a viewable day (its full
backup and the day's incrementals) as one backup data file, encrypted under a
data key drawn for this download only. The key is printed once and kept
nowhere: store it now, it cannot be shown again, and without it the file
cannot be read. Upload the file later with "kmsbackup upload".

The file is written to --out (an existing file is kept unless --force); a
download that breaks off leaves no file. --key-out writes the key to a new
file (mode 0600) instead of printing it. For an upload, --day may be left
out. See docs/backup-file.md for the format.`,
		Example: `  kmsbackup download BACKUP_ID --day 2026-05-01 --out orders-2026-05-01.kmsbk
  kmsbackup download BACKUP_ID --day 2026-05-01 --out day.kmsbk --key-out day.key
  kmsbackup download BACKUP_ID --day 2026-05-01 --out day.kmsbk -o json | jq -r .data_key`,
		Annotations:       map[string]string{noIDOutput: "would hide the data key, which is shown only once"},
		Args:              exactArgs("BACKUP_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if day != "" {
				if err := dayFlag("day", day, "the viewable day to download"); err != nil {
					return err
				}
			}
			if err := requireFlag("out", out, "the file to write, such as --out day.kmsbk"); err != nil {
				return err
			}
			if _, err := os.Stat(out); err == nil && !force {
				return domain.Errorf(domain.ErrAlreadyExists, "download", "", "choose another --out, or pass --force to replace it",
					"the output file exists")
			}
			if keyOut != "" {
				if _, err := os.Stat(keyOut); err == nil {
					return domain.Errorf(domain.ErrAlreadyExists, "download", "", "choose another --key-out",
						"the key file exists: a key file is never replaced")
				}
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.partial")
			if err != nil {
				return fmt.Errorf("download: create the output file: %w", err)
			}
			done := false
			defer func() {
				if !done {
					_ = tmp.Close()
					_ = os.Remove(tmp.Name())
				}
			}()
			pw := newProgress(a.stderr, "downloading", 0)
			res, err := c.Download(cmd.Context(), args[0], day, io.MultiWriter(tmp, pw))
			pw.finish()
			if err != nil {
				return err
			}
			if err := tmp.Sync(); err != nil {
				return fmt.Errorf("download: write the output file: %w", err)
			}
			if err := tmp.Close(); err != nil {
				return fmt.Errorf("download: write the output file: %w", err)
			}
			if keyOut != "" {
				if err := writeKeyFile(keyOut, res.DataKey); err != nil {
					return err
				}
			}
			if err := os.Rename(tmp.Name(), out); err != nil {
				return fmt.Errorf("download: name the output file: %w", err)
			}
			done = true
			v := downloadView{ID: res.FileID, File: out, DataKey: res.DataKey, Backup: args[0], Day: day, Bytes: res.Bytes}
			if keyOut != "" {
				v.DataKey, v.KeyFile = "", keyOut
				return a.render(v, func(w io.Writer) error {
					return writeFields(w, []field{{"File", v.File}, {"File ID", v.ID}, {"Bytes", fmt.Sprint(v.Bytes)},
						{"Data key", "written to " + keyOut + " (shown nowhere else)"}})
				})
			}
			if a.output == formatJSON {
				fmt.Fprintln(a.stderr, "Note: "+dataKeyNote)
			}
			return a.render(v, func(w io.Writer) error {
				if err := writeFields(w, []field{{"File", v.File}, {"File ID", v.ID}, {"Bytes", fmt.Sprint(v.Bytes)},
					{"Data key", v.DataKey}}); err != nil {
					return err
				}
				_, err := fmt.Fprintln(w, "\n"+dataKeyNote)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&day, "day", "", "the viewable day to download, YYYY-MM-DD (required, except for an upload)")
	cmd.Flags().StringVar(&out, "out", "", "the file to write (required)")
	cmd.Flags().BoolVar(&force, "force", false, "replace --out if it exists")
	cmd.Flags().StringVar(&keyOut, "key-out", "", "write the data key to this new file (mode 0600) instead of printing it")
	return cmd
}

// writeKeyFile writes a data key to a new file only its owner can read.
func writeKeyFile(path, key string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return domain.Errorf(domain.ErrAlreadyExists, "download", "", "choose another --key-out", "the key file cannot be created: %v", errors.Unwrap(err))
	}
	if _, err := fmt.Fprintln(f, key); err != nil {
		_ = f.Close()
		return fmt.Errorf("download: write the key file: %w", err)
	}
	return f.Close()
}

// readKeyFlags returns the data key from --key or --key-file.
func readKeyFlags(key, keyFile string) (string, error) {
	switch {
	case key != "" && keyFile != "":
		return "", usagef("pass the data key with --key or --key-file, not both")
	case keyFile != "":
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return "", usagef("--key-file cannot be read: %v", errors.Unwrap(err))
		}
		return strings.TrimSpace(string(b)), nil
	case key == "":
		return "", usagef("--key or --key-file is required: the data key download printed")
	}
	return key, nil
}

func newUploadCmd(a *app) *cobra.Command {
	var key, keyFile, name string
	cmd := &cobra.Command{
		Use:   "upload FILE --key DATA_KEY --name NAME",
		Short: "Upload a downloaded backup data file; it is listed among the backup instances as kind upload",
		Long: `Upload a backup data file made by "kmsbackup download", with the data key
download printed and a name. The whole file is checked before anything is
stored: a wrong key, any modified byte, a truncated file or a file made for
another account are all refused with the same error, and nothing is kept.

The upload is listed by "kmsbackup backup-instance list" with kind upload.
View its data with "kmsbackup data list UPLOAD_ID --tab TAB" and restore from
it with "kmsbackup restore --from UPLOAD_ID ..." (no --day: an upload holds
one day). "kmsbackup upload list" lists uploads; "upload delete" deletes one.

Pass the key with --key-file to keep it out of your shell history.`,
		Example: `  kmsbackup upload day.kmsbk --key-file day.key --name "orders 2026-05-01"
  kmsbackup upload day.kmsbk --key kbk1_... --name orders-may -o id
  kmsbackup upload list
  kmsbackup upload delete UPLOAD_ID`,
		Args: exactArgs("FILE"),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveDefault
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := readKeyFlags(key, keyFile)
			if err != nil {
				return err
			}
			if err := requireFlag("name", name, "a name for the upload, such as --name orders-may"); err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return domain.Errorf(domain.ErrNotFound, "upload", "", "check the path", "the file cannot be opened: %v", errors.Unwrap(err))
			}
			defer f.Close()
			var size int64
			if st, err := f.Stat(); err == nil {
				size = st.Size()
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			pw := newProgress(a.stderr, "uploading", size)
			b, err := c.Upload(cmd.Context(), name, k, io.TeeReader(f, pw))
			pw.finish()
			if err != nil {
				return err
			}
			return a.renderBackup(b)
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the data key download printed (or --key-file)")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "a file holding the data key")
	cmd.Flags().StringVar(&name, "name", "", "a name for the upload (required)")
	cmd.AddCommand(newUploadListCmd(a), newUploadDeleteCmd(a))
	return cmd
}

func newUploadListCmd(a *app) *cobra.Command {
	return newPagedListCmd(a, &cobra.Command{
		Short:   "List uploads",
		Example: "  kmsbackup upload list\n  kmsbackup upload list -o id",
	}, (*httpapi.Client).ListUploads, uploadHeader, uploadRow)
}

func newUploadDeleteCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:               "delete UPLOAD_ID",
		Short:             "Delete an upload and destroy its data",
		Example:           "  kmsbackup upload delete UPLOAD_ID",
		Annotations:       map[string]string{noIDOutput: "has no ID to print"},
		Args:              exactArgs("UPLOAD_ID"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			if err := c.DeleteUpload(cmd.Context(), args[0]); err != nil {
				return err
			}
			return a.render(map[string]string{"deleted": args[0]}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Deleted upload %s and its data.\n", args[0])
				return err
			})
		},
	}
}

var uploadHeader = []string{"ID", "NAME", "DAY", "REGION", "SOURCE", "CREATED"}

func uploadRow(b httpapi.BackupInstance) []string {
	return []string{b.ID, b.Alias, b.UploadDay, b.Region, orDash(b.SourceBackup), fmtTimeIn(b.CreatedAt, zoneLoc(b.TimeZone))}
}

// progress prints a transfer's progress on a terminal: bytes, share of the
// total when known, and rate, at most five times a second. On anything but
// a terminal it prints nothing.
type progress struct {
	w     io.Writer
	what  string
	total int64
	n     int64
	start time.Time
	last  time.Time
	on    bool
}

func newProgress(w io.Writer, what string, total int64) *progress {
	p := &progress{w: w, what: what, total: total, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.on = true
		}
	}
	return p
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.on && time.Since(p.last) > 200*time.Millisecond {
		p.last = time.Now()
		p.print()
	}
	return len(b), nil
}

func (p *progress) print() {
	rate := float64(p.n) / max(time.Since(p.start).Seconds(), 0.001) / (1 << 20)
	line := fmt.Sprintf("\r%s %.1f MiB", p.what, float64(p.n)/(1<<20))
	if p.total > 0 {
		line += fmt.Sprintf(" of %.1f MiB (%d%%)", float64(p.total)/(1<<20), p.n*100/p.total)
	}
	fmt.Fprintf(p.w, "%s, %.1f MiB/s   ", line, rate)
}

func (p *progress) finish() {
	if p.on {
		p.print()
		fmt.Fprintln(p.w)
	}
}
