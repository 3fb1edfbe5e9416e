package console

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// action is a link in a backup instance's row; a dialog action opens in
// the page's dialog when JavaScript runs, else on a page of its own.
type action struct {
	Label, Href string
	Dialog      bool
}

type backupRow struct {
	*domain.Backup
	Actions []action
}

type backupsView struct {
	Rows       []backupRow
	Next       string
	NotFirst   bool
	All        bool // released instances listed too
	Notice     string
	NoticeItem string
}

// actionsFor lists what a row offers in its state: a not-enabled instance
// can be enabled; an enabled one viewed, downloaded and reset; a
// provisioned one extended and renewed; an expired one only renewed; an
// upload viewed, downloaded and deleted.
func actionsFor(b *domain.Backup) []action {
	base := "/backups/" + string(b.ID)
	view := action{Label: "View data", Href: base + "/data"}
	download := action{Label: "Download", Href: base + "/download", Dialog: true}
	extend := action{Label: "Extend", Href: base + "/extend", Dialog: true}
	renew := action{Label: "Renew", Href: base + "/renew", Dialog: true}
	verify := action{Label: "Verify", Href: base + "/verify", Dialog: true}
	provisioned := b.Kind == domain.BackupProvisioned
	var as []action
	switch b.State {
	case domain.StateUploaded:
		return []action{view, download, verify, {Label: "Delete", Href: base + "/delete", Dialog: true}}
	case domain.StateNotEnabled:
		as = append(as, action{Label: "Enable", Href: base + "/enable", Dialog: true})
		if provisioned {
			as = append(as, extend, renew)
		}
	case domain.StateEnabled:
		as = append(as, view, download, verify)
		if provisioned {
			as = append(as, extend, renew)
		}
		as = append(as, action{Label: "Reset", Href: base + "/reset", Dialog: true})
	case domain.StateExpired:
		as = append(as, renew)
	}
	return as
}

// notices are the messages a change leaves on the list, by code: the list
// shows only these, never text from the URL.
var notices = map[string]string{
	"created":  "Created backup instance",
	"enabled":  "Enabled backup instance",
	"extended": "Extended the viewable days of",
	"renewed":  "Renewed",
	"reset":    "Reset backup instance",
	"uploaded": "Uploaded the file as",
	"deleted":  "Deleted upload",
}

func done(code string, id domain.BackupID) string {
	return "/backups?done=" + code + "&id=" + string(id)
}

// listBackups lists the account's backup instances and uploads, a page at
// a time; released instances only with all=1.
func (c *Console) listBackups(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	q := r.URL.Query()
	all := q.Get("all") == "1"
	p, err := c.Backups.ListBackupInstances(a, all, q.Get("page"), pageSize)
	if err != nil {
		c.renderError(w, r, err)
		return
	}
	v := backupsView{Next: p.Next, NotFirst: q.Get("page") != "", All: all}
	if n, ok := notices[q.Get("done")]; ok && validID(q.Get("id")) {
		v.Notice, v.NoticeItem = n, q.Get("id")
	}
	for _, b := range p.Items {
		v.Rows = append(v.Rows, backupRow{Backup: b, Actions: actionsFor(b)})
	}
	c.render(w, r, http.StatusOK, "backups", "Backups", v)
}

// validID reports whether s looks like an ID (prefix_ and letters or
// digits), so that a notice names only what could be an object.
func validID(s string) bool {
	if len(s) < 5 || len(s) > 64 || !strings.Contains(s, "_") {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// instances lists the caller's KMS instances that are not released.
func (c *Console) instances(a commands.Caller) ([]*domain.Instance, error) {
	var out []*domain.Instance
	cursor := ""
	for range 20 { // 20,000 instances: more than a form's select can offer
		p, err := c.KMS.ListInstances(a, cursor, 1000)
		if err != nil {
			return nil, err
		}
		for _, in := range p.Items {
			if !in.Released {
				out = append(out, in)
			}
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	return out, nil
}

// regionsOf lists the distinct regions of instances, in order.
func regionsOf(ins []*domain.Instance) []string {
	var rs []string
	seen := map[string]bool{}
	for _, in := range ins {
		if !seen[in.Region] {
			seen[in.Region] = true
			rs = append(rs, in.Region)
		}
	}
	return rs
}

// terms offered by the create and renew forms; the API takes any term up
// to domain.MaxTermMonths.
var terms = []string{"1mo", "3mo", "6mo", "1y", "2y", "3y", "5y"}

type createView struct {
	Regions            []string
	Region, Days, Term string
	MinDays, MaxDays   int
	Terms              []string
	Err                *problem
}

func (c *Console) createForm(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.showCreate(w, r, a, http.StatusOK, createView{Days: "30", Term: "1y"}, nil)
}

func (c *Console) showCreate(w http.ResponseWriter, r *http.Request, a commands.Caller, status int, v createView, err error) {
	ins, lerr := c.instances(a)
	if lerr != nil {
		c.renderError(w, r, lerr)
		return
	}
	v.Regions, v.Terms, v.MinDays, v.MaxDays, v.Err = regionsOf(ins), terms, domain.MinViewableDays, domain.MaxViewableDays, c.describe(r, err)
	c.render(w, r, status, "create", "Create a backup instance", v)
}

func (c *Console) create(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	const op = "create backup instance"
	v := createView{Region: strings.TrimSpace(r.PostFormValue("region")), Days: r.PostFormValue("viewable_days"), Term: r.PostFormValue("term")}
	days, err := formInt(op, "viewable days", v.Days)
	if err == nil && v.Region == "" {
		err = domain.Invalid(op, "choose a region")
	}
	if err == nil && v.Term == "" {
		err = domain.Invalid(op, "choose a term")
	}
	var b *domain.Backup
	if err == nil {
		b, err = c.Backups.CreateBackupInstance(r.Context(), a, commands.CreateBackupInput{Region: v.Region, ViewableDays: days, Term: v.Term})
	}
	if err != nil {
		c.showCreate(w, r, a, errorStatus(err), v, err)
		return
	}
	redirect(w, r, done("created", b.ID))
}

// formInt reads a whole number a form field holds.
func formInt(op, field, s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, domain.Invalid(op, "%s must be a whole number", field)
	}
	return n, nil
}

type enableView struct {
	Backup    *domain.Backup
	Instances []*domain.Instance
	Instance  string
	Alias     string
	TimeZone  string
	Zones     []string
	Err       *problem
}

// zones are offered as suggestions; any IANA time zone name is accepted,
// and the form starts with the region's.
var zones = []string{"UTC", "Asia/Shanghai", "Asia/Singapore", "Asia/Tokyo", "Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles"}

func (c *Console) enableForm(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.showEnable(w, r, a, http.StatusOK, enableView{}, nil)
}

func (c *Console) showEnable(w http.ResponseWriter, r *http.Request, a commands.Caller, status int, v enableView, err error) {
	b, berr := c.Backups.ShowBackupInstance(a, domain.BackupID(r.PathValue("id")))
	if berr != nil {
		c.renderError(w, r, berr)
		return
	}
	ins, lerr := c.instances(a)
	if lerr != nil {
		c.renderError(w, r, lerr)
		return
	}
	v.Backup, v.Zones, v.Err = b, zones, c.describe(r, err)
	if v.TimeZone == "" && err == nil {
		v.TimeZone = domain.RegionTimeZone(b.Region) // the default: local midnight
	}
	for _, in := range ins {
		if in.Region == b.Region {
			v.Instances = append(v.Instances, in)
		}
	}
	c.render(w, r, status, "enable", "Enable "+string(b.ID), v)
}

func (c *Console) enable(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	id := domain.BackupID(r.PathValue("id"))
	v := enableView{Instance: r.PostFormValue("kms_instance"), Alias: strings.TrimSpace(r.PostFormValue("alias")),
		TimeZone: strings.TrimSpace(r.PostFormValue("time_zone"))}
	var err error
	if v.Instance == "" {
		err = domain.Invalid("enable backup instance", "choose the KMS instance to back up")
	} else {
		_, err = c.Backups.EnableBackupInstance(r.Context(), a, id, commands.EnableInput{KMSInstance: domain.InstanceID(v.Instance),
			Alias: v.Alias, TimeZone: v.TimeZone})
	}
	if err != nil {
		c.showEnable(w, r, a, errorStatus(err), v, err)
		return
	}
	redirect(w, r, done("enabled", id))
}

type changeView struct {
	Backup  *domain.Backup
	Days    string
	MaxDays int
	Term    string
	Terms   []string
	Err     *problem
}

// showChange renders one of the single-field change forms (extend, renew,
// reset, delete) for the instance in the path.
func (c *Console) showChange(w http.ResponseWriter, r *http.Request, a commands.Caller, page, title string, status int, v changeView, err error) {
	b, berr := c.Backups.ShowBackupInstance(a, domain.BackupID(r.PathValue("id")))
	if berr != nil {
		c.renderError(w, r, berr)
		return
	}
	v.Backup, v.MaxDays, v.Terms, v.Err = b, domain.MaxViewableDays, terms, c.describe(r, err)
	c.render(w, r, status, page, title+" "+string(b.ID), v)
}

func (c *Console) extendForm(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.showChange(w, r, a, "extend", "Extend", http.StatusOK, changeView{}, nil)
}

// change applies one lifecycle change posted from its form and returns to
// the list, or shows the form again with what was wrong.
func (c *Console) change(w http.ResponseWriter, r *http.Request, a commands.Caller, page, title, code string, v changeView,
	apply func(id domain.BackupID) error) {
	id := domain.BackupID(r.PathValue("id"))
	if err := apply(id); err != nil {
		c.showChange(w, r, a, page, title, errorStatus(err), v, err)
		return
	}
	redirect(w, r, done(code, id))
}

func (c *Console) extend(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	v := changeView{Days: r.PostFormValue("viewable_days")}
	c.change(w, r, a, "extend", "Extend", "extended", v, func(id domain.BackupID) error {
		days, err := formInt("extend viewable days", "viewable days", v.Days)
		if err == nil {
			_, err = c.Backups.ExtendViewableDays(r.Context(), a, id, days)
		}
		return err
	})
}

func (c *Console) renewForm(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.showChange(w, r, a, "renew", "Renew", http.StatusOK, changeView{Term: "1y"}, nil)
}

func (c *Console) renew(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	v := changeView{Term: r.PostFormValue("term")}
	c.change(w, r, a, "renew", "Renew", "renewed", v, func(id domain.BackupID) error {
		if v.Term == "" {
			return domain.Invalid("renew backup instance", "choose a term")
		}
		_, err := c.Backups.RenewBackupInstance(r.Context(), a, id, v.Term)
		return err
	})
}

func (c *Console) resetForm(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.showChange(w, r, a, "reset", "Reset", http.StatusOK, changeView{}, nil)
}

// reset destroys the instance's data only when the form's confirmation box
// is ticked.
func (c *Console) reset(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.change(w, r, a, "reset", "Reset", "reset", changeView{}, func(id domain.BackupID) error {
		if r.PostFormValue("confirm") != "yes" {
			return domain.Invalid("reset backup instance", "tick the box to confirm that the data will be destroyed")
		}
		_, err := c.Backups.ResetBackupInstance(r.Context(), a, id, true)
		return err
	})
}

func (c *Console) deleteForm(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.showChange(w, r, a, "delete", "Delete", http.StatusOK, changeView{}, nil)
}

func (c *Console) deleteUpload(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.change(w, r, a, "delete", "Delete", "deleted", changeView{}, func(id domain.BackupID) error {
		return c.Files.DeleteUpload(r.Context(), a, id)
	})
}
