package console

import (
	"net/http"
	"strings"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// backupDays reads the backup instance in the path and its viewable days.
func (c *Console) backupDays(r *http.Request, a commands.Caller) (*domain.Backup, []domain.Day, error) {
	id := domain.BackupID(r.PathValue("id"))
	b, err := c.Backups.ShowBackupInstance(a, id)
	if err != nil {
		return nil, nil, err
	}
	days, err := c.Days.ListViewableDays(a, id)
	if err != nil {
		return nil, nil, err
	}
	return b, days, nil
}

type tabInfo struct {
	ID      backupdata.Tab
	Label   string
	Secrets bool // lists secrets only
}

// tabLabels names the seven tabs of SPEC.md section 6, in console order.
var tabLabels = map[backupdata.Tab]string{
	backupdata.FullKeys: "Full keys", backupdata.IncrementalKeys: "Incremental keys", backupdata.RotatedKeys: "Rotated keys",
	backupdata.FullSecrets: "Full secrets", backupdata.IncrementalSecrets: "Incremental secrets",
	backupdata.RotatedSecrets: "Rotated secrets", backupdata.Deleted: "Deleted",
}

func tabs() []tabInfo {
	out := make([]tabInfo, len(backupdata.Tabs))
	for i, t := range backupdata.Tabs {
		out[i] = tabInfo{ID: t, Label: tabLabels[t], Secrets: strings.HasSuffix(string(t), "-secrets")}
	}
	return out
}

type dataView struct {
	Backup *domain.Backup
	Days   []domain.Day
	Day    domain.Day
	Tabs   []tabInfo
	Tab    tabInfo
	Items  []backupdata.Item
	Page   string
	Next   string
	Err    *problem
}

// data is the data page of a backup instance: a day of its viewable window
// (the newest by default), one of the seven tabs, a page of its items.
func (c *Console) data(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	b, days, err := c.backupDays(r, a)
	if err != nil {
		c.renderError(w, r, err)
		return
	}
	id := b.ID
	q := r.URL.Query()
	v := dataView{Backup: b, Days: days, Tabs: tabs(), Page: q.Get("page")}
	v.Tab = v.Tabs[0]
	if t := q.Get("tab"); t != "" {
		pt, err := backupdata.ParseTab(t)
		if err != nil {
			c.renderError(w, r, err)
			return
		}
		v.Tab = tabInfo{ID: pt, Label: tabLabels[pt], Secrets: strings.HasSuffix(t, "-secrets")}
	}
	title := "Data of " + string(id)
	if len(days) == 0 {
		c.render(w, r, http.StatusOK, "data", title, v)
		return
	}
	v.Day = days[0]
	if d := q.Get("day"); d != "" {
		v.Day = domain.Day(d)
	}
	p, err := c.Days.ListDayData(a, id, string(v.Day), string(v.Tab.ID), v.Page, pageSize)
	if err != nil {
		v.Err = c.describe(r, err)
		c.render(w, r, errorStatus(err), "data", title, v)
		return
	}
	v.Items, v.Next = p.Items, p.Next
	c.render(w, r, http.StatusOK, "data", title, v)
}
