package console

import (
	"net/http"
	"strings"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// restoreView is the restore dialog in each of its steps: the form (target
// region and instance), the plan with its findings, and the result with
// its validation. The selection travels in hidden fields between steps.
type restoreView struct {
	Backup     *domain.Backup
	Day        string
	At         string // RFC 3339: an instant of the day (a listed checkpoint, or typed in); empty for the whole day
	Points     []commands.DayCheckpoint
	Keys       []string
	Secrets    []string
	All        bool
	Instances  []*domain.Instance
	Regions    []string
	ToInstance string
	ToRegion   string
	Plan       *commands.RestorePlan
	Result     *commands.RestoreResult
	Err        *problem
}

// readRestore reads the selection and the target from a query (the form)
// or a posted form (plan and apply).
func readRestore(r *http.Request) restoreView {
	_ = r.ParseForm()
	f := r.Form
	at := strings.TrimSpace(f.Get("at_instant")) // an instant typed in wins over a listed checkpoint
	if at == "" {
		at = f.Get("at")
	}
	return restoreView{Day: f.Get("day"), At: at, Keys: nonEmpty(f["key"]), Secrets: nonEmpty(f["secret"]), All: f.Get("all") != "",
		ToInstance: f.Get("to_instance"), ToRegion: strings.TrimSpace(f.Get("to_region"))}
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// request parses the form into the typed request of the use case.
func (v *restoreView) request(id domain.BackupID) (commands.RestoreRequest, error) {
	const op = "restore"
	if v.ToInstance == "" {
		return commands.RestoreRequest{}, domain.Invalid(op, "choose the KMS instance to restore into")
	}
	return commands.RestoreInput{From: string(id), Day: v.Day, At: v.At, Keys: v.Keys, Secrets: v.Secrets, All: v.All,
		ToInstance: v.ToInstance, ToRegion: v.ToRegion}.Parse()
}

// fill adds what every step shows: the backup and the account's instances.
func (c *Console) fill(r *http.Request, a commands.Caller, v *restoreView) error {
	b, err := c.Backups.ShowBackupInstance(a, domain.BackupID(r.PathValue("id")))
	if err != nil {
		return err
	}
	ins, err := c.instances(a)
	if err != nil {
		return err
	}
	v.Backup, v.Instances, v.Regions = b, ins, regionsOf(ins)
	if v.ToRegion == "" {
		v.ToRegion = b.Region
	}
	if v.Day == "" && b.Kind == domain.BackupUpload {
		v.Day = string(b.UploadDay)
	}
	// A day that cannot be viewed offers no points in time; the plan says
	// why it cannot be restored.
	if points, err := c.Days.ListDayCheckpoints(a, b.ID, v.Day); err == nil {
		v.Points = points
	}
	return nil
}

func (c *Console) restoreForm(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	v := readRestore(r)
	if err := c.fill(r, a, &v); err != nil {
		c.renderError(w, r, err)
		return
	}
	if v.ToInstance == "" && v.Backup.KMSInstance != "" {
		v.ToInstance = string(v.Backup.KMSInstance)
	}
	c.render(w, r, http.StatusOK, "restore", "Restore from "+string(v.Backup.ID), v)
}

// restorePlan checks the restore against its target and shows every
// finding; nothing is written.
func (c *Console) restorePlan(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.restoreStep(w, r, a, false)
}

// restoreApply plans again (the target may have changed since the plan was
// shown), applies a plan without findings and shows the validation.
func (c *Console) restoreApply(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.restoreStep(w, r, a, true)
}

func (c *Console) restoreStep(w http.ResponseWriter, r *http.Request, a commands.Caller, apply bool) {
	v := readRestore(r)
	if err := c.fill(r, a, &v); err != nil {
		c.renderError(w, r, err)
		return
	}
	req, err := v.request(v.Backup.ID)
	switch {
	case err != nil:
	case apply:
		v.Result, err = c.Restores.Restore(r.Context(), a, req, nil)
		if v.Result != nil {
			v.Plan = v.Result.Plan
		}
	default:
		v.Plan, err = c.Restores.PlanRestore(r.Context(), a, req, nil)
	}
	switch {
	case err != nil && v.Plan == nil:
		v.Err = c.describe(r, err)
		c.render(w, r, errorStatus(err), "restore", "Restore from "+string(v.Backup.ID), v)
	case err != nil:
		v.Err = c.describe(r, err)
		c.render(w, r, errorStatus(err), "plan", "Restore plan", v)
	case apply && v.Result.Applied:
		c.render(w, r, http.StatusOK, "result", "Restore result", v)
	case apply:
		c.render(w, r, http.StatusConflict, "plan", "Restore plan", v)
	default:
		c.render(w, r, http.StatusOK, "plan", "Restore plan", v)
	}
}
