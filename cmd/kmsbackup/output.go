package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Output formats (-o).
const (
	formatTable = "table"
	formatJSON  = "json"
	formatID    = "id"
)

// noIDOutput annotates a command whose result has no id field: -o id is
// refused before any request, with the annotation's value as the reason.
const noIDOutput = "kmsbackup/no-id-output"

// render prints v as one indented JSON document in json mode, only its IDs
// in id mode, or calls table in table mode.
func (a *app) render(v any, table func(w io.Writer) error) error {
	switch a.output {
	case formatJSON:
		return writeJSON(a.stdout, v)
	case formatID:
		return writeIDs(a.stdout, v)
	}
	return table(a.stdout)
}

// writeIDs prints the id field of v's JSON document, or, for a list, the
// id of every item, one per line (none for an empty list).
func writeIDs(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var doc struct {
		ID    *string `json:"id"`
		Items *[]struct {
			ID *string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("-o id: %w", err)
	}
	var ids []string
	switch {
	case doc.ID != nil:
		ids = []string{*doc.ID}
	case doc.Items != nil:
		for _, it := range *doc.Items {
			if it.ID == nil {
				return errors.New("-o id: an item of the result has no id; use -o json")
			}
			ids = append(ids, *it.ID)
		}
	default:
		return errors.New("-o id: the result has no id; use -o json")
	}
	for _, id := range ids {
		if _, err := fmt.Fprintln(w, cell(id)); err != nil {
			return err
		}
	}
	return nil
}

// writeJSON writes v as one indented JSON document and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// deleted is the JSON document of a successful delete.
type deleted struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

// field is one "Name: value" line of a show view.
type field struct{ name, value string }

// writeFields prints aligned "Name:  value" lines.
func writeFields(w io.Writer, fields []field) error {
	tw := newTabWriter(w)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f.name, cell(f.value))
	}
	return tw.Flush()
}

// writeTable prints a header row and one row per item, aligned.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := newTabWriter(w)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = cell(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// cell makes s safe for one table cell: control characters (tabs, newlines,
// terminal escapes) become spaces, so server-supplied text can neither break
// the columns nor drive the terminal.
func cell(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// fmtTime formats t as RFC 3339 in UTC; the zero time is empty.
func fmtTime(t time.Time) string { return fmtTimeIn(t, time.UTC) }

// fmtTimeIn formats t as RFC 3339 in loc, with its offset
// (2026-05-02T00:00:00+08:00); the zero time is empty.
func fmtTimeIn(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	return t.In(loc).Format(time.RFC3339)
}

// zoneLoc is the time zone a backup's times are shown in: its own (an IANA
// name, as the API gives it), or UTC when it has none.
func zoneLoc(name string) *time.Location {
	if name == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC
	}
	return loc
}

func itoa[T ~uint32 | ~int | ~uint64](n T) string { return strconv.FormatInt(int64(n), 10) }

// writeNextPage tells, on stderr so that stdout stays the table, how to get
// the next page.
func (a *app) writeNextPage(token string) {
	if token != "" {
		fmt.Fprintf(a.stderr, "More items: repeat with --page-token %s\n", token)
	}
}

// renderList prints a page: in json mode the API's document, in id mode
// the items' IDs, in table mode the rows; in id and table mode the next
// page's token goes to stderr.
func renderList[T any](a *app, l httpapi.List[T], header []string, row func(T) []string) error {
	if l.Items == nil {
		l.Items = []T{}
	}
	if a.output == formatID {
		if err := writeIDs(a.stdout, l); err != nil {
			return err
		}
		a.writeNextPage(l.NextPageToken)
		return nil
	}
	return a.render(l, func(w io.Writer) error {
		rows := make([][]string, 0, len(l.Items))
		for _, it := range l.Items {
			rows = append(rows, row(it))
		}
		if err := writeTable(w, header, rows); err != nil {
			return err
		}
		a.writeNextPage(l.NextPageToken)
		return nil
	})
}

// writeRaw prints plaintext bytes exactly; on a terminal it ends the line
// so that the prompt does not stick to the value.
func (a *app) writeRaw(b []byte) error {
	if _, err := a.stdout.Write(b); err != nil {
		return err
	}
	if isTerminal(a.stdout) && (len(b) == 0 || b[len(b)-1] != '\n') {
		_, err := io.WriteString(a.stdout, "\n")
		return err
	}
	return nil
}

// isTerminal reports whether f is an *os.File (or anything with Stat) on a
// character device other than /dev/null, which for stdin and stdout means a
// terminal in practice. (golang.org/x/term is not a dependency.)
func isTerminal(f any) bool {
	s, ok := f.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return false
	}
	fi, err := s.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}

// Views of the API's types.

func accountFields(acc httpapi.Account) []field {
	f := []field{{"ID", acc.ID}, {"Name", acc.Name}, {"Created", fmtTime(acc.CreatedAt)}}
	if acc.Token != "" {
		f = append(f, field{"Token", acc.Token})
	}
	return f
}

var accountHeader = []string{"ID", "NAME", "CREATED"}

func accountRow(acc httpapi.Account) []string {
	return []string{acc.ID, acc.Name, fmtTime(acc.CreatedAt)}
}

func whoAmIFields(w httpapi.WhoAmI) []field {
	acc := w.Account
	if acc == "" {
		acc = "-"
	}
	return []field{{"Account", acc}, {"Admin", strconv.FormatBool(w.Admin)}}
}

func instanceFields(in httpapi.Instance) []field {
	f := []field{
		{"ID", in.ID},
		{"Account", in.Account},
		{"Region", in.Region},
		{"State", in.State},
		{"Keys", itoa(in.Keys) + " of " + itoa(in.KeyQuota)},
		{"Secrets", itoa(in.Secrets) + " of " + itoa(in.SecretQuota)},
		{"Created", fmtTime(in.CreatedAt)},
	}
	if in.ReleasedAt != nil {
		f = append(f, field{"Released", fmtTime(*in.ReleasedAt)})
	}
	return f
}

var instanceHeader = []string{"ID", "REGION", "STATE", "KEYS", "SECRETS", "CREATED"}

func instanceRow(in httpapi.Instance) []string {
	return []string{in.ID, in.Region, in.State, itoa(in.Keys) + "/" + itoa(in.KeyQuota),
		itoa(in.Secrets) + "/" + itoa(in.SecretQuota), fmtTime(in.CreatedAt)}
}

func writeKey(w io.Writer, k httpapi.Key) error {
	err := writeFields(w, []field{
		{"ID", k.ID},
		{"Instance", k.Instance},
		{"Region", k.Region},
		{"Spec", k.Spec},
		{"Description", k.Description},
		{"Primary version", itoa(k.PrimaryVersion)},
		{"Created", fmtTime(k.CreatedAt)},
		{"Updated", fmtTime(k.UpdatedAt)},
	})
	if err != nil || len(k.Versions) == 0 {
		return err
	}
	rows := make([][]string, 0, len(k.Versions))
	for _, v := range k.Versions {
		rows = append(rows, []string{itoa(v.Version), fmtTime(v.CreatedAt)})
	}
	fmt.Fprintln(w)
	return writeTable(w, []string{"VERSION", "CREATED"}, rows)
}

var keyHeader = []string{"ID", "REGION", "SPEC", "PRIMARY", "VERSIONS", "UPDATED", "DESCRIPTION"}

func keyRow(k httpapi.Key) []string {
	return []string{k.ID, k.Region, k.Spec, itoa(k.PrimaryVersion), itoa(len(k.Versions)), fmtTime(k.UpdatedAt), k.Description}
}

func writeSecret(w io.Writer, s httpapi.Secret) error {
	err := writeFields(w, []field{
		{"Name", s.Name},
		{"Instance", s.Instance},
		{"Region", s.Region},
		{"Key", s.KeyID},
		{"Current version", itoa(s.CurrentVersion)},
		{"Created", fmtTime(s.CreatedAt)},
		{"Updated", fmtTime(s.UpdatedAt)},
	})
	if err != nil || len(s.Versions) == 0 {
		return err
	}
	rows := make([][]string, 0, len(s.Versions))
	for _, v := range s.Versions {
		rows = append(rows, []string{itoa(v.Version), v.KeyID, fmtTime(v.CreatedAt)})
	}
	fmt.Fprintln(w)
	return writeTable(w, []string{"VERSION", "KEY", "CREATED"}, rows)
}

var secretHeader = []string{"NAME", "REGION", "KEY", "VERSION", "UPDATED"}

func secretRow(s httpapi.Secret) []string {
	return []string{s.Name, s.Region, s.KeyID, itoa(s.CurrentVersion), fmtTime(s.UpdatedAt)}
}

// orDash shows an absent value as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// latest is the later of two times.
func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func backupExpires(b httpapi.BackupInstance, loc *time.Location) string {
	if b.ExpiresAt.IsZero() {
		return "never"
	}
	return fmtTimeIn(b.ExpiresAt, loc)
}

// backupFields shows a backup instance, its times in its time zone.
func backupFields(b httpapi.BackupInstance) []field {
	loc := zoneLoc(b.TimeZone)
	f := []field{
		{"ID", b.ID},
		{"Alias", orDash(b.Alias)},
		{"Kind", b.Kind},
		{"Region", b.Region},
		{"KMS instance", orDash(b.KMSInstance)},
		{"State", b.State},
		{"Viewable days", itoa(b.ViewableDays)},
		{"Time zone", orDash(b.TimeZone)},
		{"Expires", backupExpires(b, loc)},
	}
	if b.Kind == string(domain.BackupUpload) {
		return append(f,
			field{"Day", b.UploadDay},
			field{"Source backup", orDash(b.SourceBackup)},
			field{"Source KMS instance", orDash(b.SourceKMSInstance)},
			field{"File ID", orDash(b.FileID)},
			field{"Uploaded", fmtTimeIn(b.CreatedAt, loc)},
			field{"Last scrub", lastScrub(b, loc)},
		)
	}
	if b.State == string(domain.StateExpired) && !b.ExpiresAt.IsZero() {
		f = append(f, field{"Released", fmtTimeIn(b.ExpiresAt.Add(domain.ReleaseAfterExpiry), loc) + " unless renewed"})
	}
	if sr := b.SourceReleased; sr != nil {
		f = append(f, field{"Source", sourceReleasedText(sr, loc)})
	}
	if fl := b.Failing; fl != nil {
		f = append(f,
			field{"Failing", fmt.Sprintf("since %s: the %s backup work failed %d times, retried with backoff", fmtTimeIn(fl.Since, loc), fl.Work, fl.Attempts)},
			field{"Failure reason", fl.Reason})
	}
	return append(f,
		field{"Created", fmtTimeIn(b.CreatedAt, loc)},
		field{"Enabled", orDash(fmtTimeIn(b.EnabledAt, loc))},
		field{"Enabled day", orDash(b.EnabledDay)},
		field{"Generation", itoa(b.Generation)},
		field{"Checkpoints", itoa(b.Checkpoints)},
		field{"Last full", orDash(fmtTimeIn(b.LastFullAt, loc))},
		field{"Last incremental", orDash(fmtTimeIn(b.LastIncrementalAt, loc))},
		field{"Last scrub", lastScrub(b, loc)},
	)
}

// sourceReleasedText says that a backup instance's KMS instance was
// released, and what of it was never backed up.
func sourceReleasedText(sr *httpapi.SourceReleased, loc *time.Location) string {
	s := fmt.Sprintf("KMS instance %s was released (recorded %s); ", sr.KMSInstance, fmtTimeIn(sr.At, loc))
	switch sr.NeverBackedUp {
	case 0:
		s += "everything it recorded is backed up"
	case 1:
		s += fmt.Sprintf("its last event (revision %d) was never backed up", sr.NextRevision)
	default:
		s += fmt.Sprintf("its last %d events (revisions %d to %d) were never backed up", sr.NeverBackedUp, sr.NextRevision, sr.EndRevision-1)
	}
	return s + "; only the daily full backup is taken now"
}

// backupState is the state column: the state, and "failing" or "source
// released" when that is so.
func backupState(b httpapi.BackupInstance) string {
	s := b.State
	if b.SourceReleased != nil {
		s += ", source released"
	}
	if b.Failing != nil {
		s += ", failing"
	}
	return s
}

// lastScrub describes the instance's last background verification.
func lastScrub(b httpapi.BackupInstance, loc *time.Location) string {
	s := b.LastScrub
	if s == nil {
		return "-"
	}
	at := fmtTimeIn(s.At, loc)
	switch s.Outcome {
	case "findings":
		return fmt.Sprintf("%s: %d findings (%s); kmsbackup verify %s lists them", at, s.Findings, strings.Join(s.Kinds, ", "), b.ID)
	case "error":
		return at + ": could not be verified (its data could not be read; the server log says why)"
	}
	return at + ": clean"
}

var backupHeader = []string{"ID", "ALIAS", "KIND", "REGION", "KMS INSTANCE", "VIEWABLE", "EXPIRES", "STATE", "LAST FULL", "LAST INCREMENTAL"}

func backupRow(b httpapi.BackupInstance) []string {
	loc := zoneLoc(b.TimeZone)
	return []string{b.ID, orDash(b.Alias), b.Kind, b.Region, orDash(b.KMSInstance), itoa(b.ViewableDays) + "d",
		backupExpires(b, loc), backupState(b), orDash(fmtTimeIn(b.LastFullAt, loc)), orDash(fmtTimeIn(b.LastIncrementalAt, loc))}
}

var dataHeader = []string{"ID", "KIND", "VERSIONS", "CHANGED"}

func dataRow(it httpapi.DataItem) []string {
	return []string{it.ID, it.Kind, itoa(it.Versions), fmtTime(it.ChangedAt)}
}

var checkpointHeader = []string{"SEQ", "AT", "BACKUP"}

// checkpointRow shows a checkpoint at its time in the backup's zone, with
// its offset (an instant restore --at takes as it is).
func checkpointRow(c httpapi.Checkpoint) []string {
	kind := "incremental"
	if c.Full {
		kind = "full"
	}
	at := c.At
	if t, err := time.Parse(time.RFC3339, c.At); err == nil {
		at = fmtTimeIn(t, zoneLoc(c.TimeZone))
	}
	return []string{strconv.FormatUint(c.Seq, 10), at, kind}
}

var diffHeader = []string{"ID", "KIND", "CHANGE", "VERSIONS"}

func diffRow(it httpapi.DiffItem) []string {
	return []string{it.ID, it.Kind, it.Change, itoa(it.Versions)}
}
