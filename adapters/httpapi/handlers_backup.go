package httpapi

import (
	"net/http"
	"strings"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// requireQuery returns a required query parameter, or an invalid argument
// naming it and what it takes.
func requireQuery(r *http.Request, op, name, what string) (string, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return "", domain.Invalid(op, "query parameter %s is required: %s", name, what)
	}
	return v, nil
}

// tabList names the valid tabs, for messages.
func tabList() string { return strings.Join(DataTabs(), ", ") }

func backupID(r *http.Request) domain.BackupID { return domain.BackupID(r.PathValue("id")) }

// backupRoutes serves backup instances: list, create, show, and their
// lifecycle (enable, extend, renew, reset).
func (s *Server) backupRoutes(rt *Router) {
	b := s.Backups
	rt.Handle("GET", "/v1/backup-instances", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		size, err := queryInt(r, "page_size", 1000)
		if err != nil {
			return nil, err
		}
		all, err := queryBool(r, "all")
		if err != nil {
			return nil, err
		}
		p, err := b.ListBackupInstances(c, all, r.URL.Query().Get("page_token"), size)
		if err != nil {
			return nil, err
		}
		return listView(p, backupView), nil
	})
	rt.Handle("POST", "/v1/backup-instances", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		const op = "create backup instance"
		var req CreateBackupInstanceRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		switch {
		case req.Region == "":
			return nil, domain.Invalid(op, "region is required")
		case req.ViewableDays == 0:
			return nil, domain.Invalid(op, "viewable_days is required: %d to %d", domain.MinViewableDays, domain.MaxViewableDays)
		case req.Term == "":
			return nil, domain.Invalid(op, "term is required: months or years, such as 1mo, 12mo or 1y")
		}
		bk, err := b.CreateBackupInstance(r.Context(), c, commands.CreateBackupInput{Region: req.Region,
			ViewableDays: req.ViewableDays, Term: req.Term})
		if err != nil {
			return nil, err
		}
		return backupView(bk), nil
	})
	rt.Handle("GET", "/v1/backup-instances/{id}", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		bk, err := b.ShowBackupInstance(c, backupID(r))
		if err != nil {
			return nil, err
		}
		v := backupView(bk)
		if s.LastScrub != nil {
			if res, ok := s.LastScrub(bk.ID); ok {
				v.LastScrub = lastScrubView(bk, res)
			}
		}
		return v, nil
	})
	rt.Handle("POST", "/v1/backup-instances/{id}/enable", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		var req EnableBackupInstanceRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		if req.KMSInstance == "" {
			return nil, domain.Invalid("enable backup instance", "kms_instance is required: the ID of the KMS instance to back up")
		}
		bk, err := b.EnableBackupInstance(r.Context(), c, backupID(r), commands.EnableInput{
			KMSInstance: domain.InstanceID(req.KMSInstance), Alias: req.Alias, TimeZone: req.TimeZone})
		if err != nil {
			return nil, err
		}
		return backupView(bk), nil
	})
	rt.Handle("POST", "/v1/backup-instances/{id}/extend", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		var req ExtendViewableDaysRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		if req.ViewableDays == 0 {
			return nil, domain.Invalid("extend viewable days", "viewable_days is required: the new number of viewable days, up to %d", domain.MaxViewableDays)
		}
		bk, err := b.ExtendViewableDays(r.Context(), c, backupID(r), req.ViewableDays)
		if err != nil {
			return nil, err
		}
		return backupView(bk), nil
	})
	rt.Handle("POST", "/v1/backup-instances/{id}/renew", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		var req RenewBackupInstanceRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		if req.Term == "" {
			return nil, domain.Invalid("renew backup instance", "term is required: months or years, such as 1mo, 12mo or 1y")
		}
		bk, err := b.RenewBackupInstance(r.Context(), c, backupID(r), req.Term)
		if err != nil {
			return nil, err
		}
		return backupView(bk), nil
	})
	rt.Handle("POST", "/v1/backup-instances/{id}/reset", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		var req ResetBackupInstanceRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		if !req.Confirm {
			return nil, domain.Errorf(domain.ErrInvalidArgument, "reset backup instance", string(backupID(r)),
				`send {"confirm": true} to confirm`,
				"reset destroys every full and incremental backup of the instance and unbinds it from its KMS instance; it cannot be undone")
		}
		bk, err := b.ResetBackupInstance(r.Context(), c, backupID(r), true)
		if err != nil {
			return nil, err
		}
		return backupView(bk), nil
	})
}

// dayRoutes serves what a backup instance holds: a day's lists, its
// checkpoints, the difference of two days.
func (s *Server) dayRoutes(rt *Router) {
	d := s.Days
	rt.Handle("GET", "/v1/backup-instances/{id}/data", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		const op = "list data"
		day := r.URL.Query().Get("day") // optional for an upload, which holds one day
		tab, err := requireQuery(r, op, "tab", "one of "+tabList())
		if err != nil {
			return nil, err
		}
		size, err := queryInt(r, "page_size", 1000)
		if err != nil {
			return nil, err
		}
		p, err := d.ListDayData(c, backupID(r), day, tab, r.URL.Query().Get("page_token"), size)
		if err != nil {
			return nil, err
		}
		return listView(p, dataItemView), nil
	})
	rt.Handle("GET", "/v1/backup-instances/{id}/checkpoints", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		day := r.URL.Query().Get("day") // optional for an upload, which holds one day
		cs, err := d.ListDayCheckpoints(c, backupID(r), day)
		if err != nil {
			return nil, err
		}
		return checkpointsView(cs), nil
	})
	rt.Handle("GET", "/v1/backup-instances/{id}/diff", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		const op = "diff days"
		from, err := requireQuery(r, op, "from", "a viewable day as YYYY-MM-DD")
		if err != nil {
			return nil, err
		}
		to, err := requireQuery(r, op, "to", "a viewable day as YYYY-MM-DD, not before from")
		if err != nil {
			return nil, err
		}
		cs, err := d.DiffDays(c, backupID(r), from, to)
		if err != nil {
			return nil, err
		}
		return diffView(cs), nil
	})
}

// verifyRoutes serves the verification of a backup instance's data.
func (s *Server) verifyRoutes(rt *Router) {
	b := s.Checkpoints
	rt.Handle("POST", "/v1/backup-instances/{id}/verify", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		rep, err := b.VerifyBackup(r.Context(), c, backupID(r))
		if err != nil {
			return nil, err
		}
		return verifyView(rep), nil
	})
}
