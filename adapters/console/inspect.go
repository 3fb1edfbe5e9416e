package console

import (
	"net/http"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

type diffView struct {
	Backup   *domain.Backup
	From, To string
	Changes  []backupdata.Change
}

// diff lists what was created, rotated and deleted between the ends of two
// viewable days, given in either order.
func (c *Console) diff(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	b, err := c.Backups.ShowBackupInstance(a, domain.BackupID(r.PathValue("id")))
	if err != nil {
		c.renderError(w, r, err)
		return
	}
	q := r.URL.Query()
	v := diffView{Backup: b, From: q.Get("from"), To: q.Get("to")}
	if v.From == "" || v.To == "" {
		c.renderError(w, r, domain.Invalid("compare days", "choose two viewable days"))
		return
	}
	if v.To < v.From {
		v.From, v.To = v.To, v.From
	}
	v.Changes, err = c.Days.DiffDays(a, b.ID, v.From, v.To)
	if err != nil {
		c.renderError(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "diff", "Changes of "+string(b.ID), v)
}

type verifyView struct {
	Backup *domain.Backup
	Report *commands.VerifyReport
	Err    *problem
}

func (c *Console) verifyForm(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.showVerify(w, r, a, http.StatusOK, nil, nil)
}

// verify checks the instance's whole chain, checksums and key material
// without restoring anything, and shows every finding.
func (c *Console) verify(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	rep, err := c.Checkpoints.VerifyBackup(r.Context(), a, domain.BackupID(r.PathValue("id")))
	c.showVerify(w, r, a, errorStatus(err), rep, err)
}

func (c *Console) showVerify(w http.ResponseWriter, r *http.Request, a commands.Caller, status int, rep *commands.VerifyReport, err error) {
	b, berr := c.Backups.ShowBackupInstance(a, domain.BackupID(r.PathValue("id")))
	if berr != nil {
		c.renderError(w, r, berr)
		return
	}
	if err == nil {
		status = http.StatusOK
	}
	c.render(w, r, status, "verify", "Verify "+string(b.ID), verifyView{Backup: b, Report: rep, Err: c.describe(r, err)})
}
