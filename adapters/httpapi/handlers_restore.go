package httpapi

import (
	"net/http"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// rfc3339 parses an RFC 3339 instant given in field or query parameter
// name, or refuses it saying what it takes.
func rfc3339(op, name, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, domain.Invalid(op, "%s must be an RFC 3339 time such as 2026-05-01T10:05:00Z", name)
	}
	return t, nil
}

// input checks the shape of a restore request (required fields, formats, a
// selection) and translates it; the use case checks the rest against the
// backup and the target, and reports it as findings.
func (req RestoreRequest) input(op string) (commands.RestoreRequest, error) {
	switch {
	case req.From == "":
		return commands.RestoreRequest{}, domain.Invalid(op, "from is required: the ID of the backup instance to restore from (bkp_...)")
	case req.ToInstance == "":
		return commands.RestoreRequest{}, domain.Invalid(op, "to_instance is required: the ID of the KMS instance to restore into (kms_...)")
	case req.All && (len(req.Keys) > 0 || len(req.Secrets) > 0):
		return commands.RestoreRequest{}, domain.Invalid(op, "all restores everything: do not also list keys or secrets")
	case !req.All && len(req.Keys) == 0 && len(req.Secrets) == 0:
		return commands.RestoreRequest{}, domain.Invalid(op, "name what to restore: keys, secrets, or all: true")
	}
	if _, err := domain.ParseDay(req.Day); err != nil && req.Day != "" { // an upload needs no day
		return commands.RestoreRequest{}, domain.Invalid(op, "day must be a date as YYYY-MM-DD, such as 2026-05-01")
	}
	if req.At != "" {
		if _, err := rfc3339(op, "at", req.At); err != nil {
			return commands.RestoreRequest{}, err
		}
	}
	for _, l := range []struct {
		field string
		ids   []string
	}{{"keys", req.Keys}, {"secrets", req.Secrets}} {
		for i, id := range l.ids {
			if id == "" {
				return commands.RestoreRequest{}, domain.Invalid(op, "%s[%d] is empty", l.field, i)
			}
		}
	}
	return commands.RestoreRequest{From: domain.BackupID(req.From), Day: req.Day, At: req.At, Keys: req.Keys,
		Secrets: req.Secrets, All: req.All, ToInstance: domain.InstanceID(req.ToInstance), ToRegion: req.ToRegion}, nil
}

// restoreRoutes serves restores and replays of backup instances.
func (s *Server) restoreRoutes(rt *Router) {
	rs := s.Restores
	rt.Handle("POST", "/v1/restores", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		const op = "restore"
		var req RestoreRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		in, err := req.input(op)
		if err != nil {
			return nil, err
		}
		if req.DryRun {
			plan, err := rs.PlanRestore(r.Context(), c, in)
			if err != nil {
				return nil, err
			}
			return restoreView(&commands.RestoreResult{Plan: plan}, true), nil
		}
		res, err := rs.Restore(r.Context(), c, in)
		if err != nil {
			return nil, err
		}
		return restoreView(res, false), nil
	})
	rt.Handle("GET", "/v1/backup-instances/{id}/replay", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		const op = "replay"
		day, at := r.URL.Query().Get("day"), r.URL.Query().Get("at")
		if day == "" && at == "" {
			return nil, domain.Invalid(op, "query parameter day or at is required: a viewable day as YYYY-MM-DD, or an RFC 3339 instant")
		}
		if day != "" {
			if _, err := domain.ParseDay(day); err != nil {
				return nil, domain.Invalid(op, "query parameter day must be a date as YYYY-MM-DD, such as 2026-05-01")
			}
		}
		if at != "" {
			if _, err := rfc3339(op, "query parameter at", at); err != nil {
				return nil, err
			}
		}
		st, err := rs.Replay(r.Context(), c, backupID(r), day, at)
		if err != nil {
			return nil, err
		}
		return replayView(st), nil
	})
}

// auditRoutes serves the account's audit records.
func (s *Server) auditRoutes(rt *Router) {
	rt.Handle("GET", "/v1/audit", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		const op = "list audit"
		q := r.URL.Query()
		var since time.Time
		if v := q.Get("since"); v != "" {
			t, err := rfc3339(op, "query parameter since", v)
			if err != nil {
				return nil, err
			}
			since = t
		}
		size, err := queryInt(r, "page_size", 1000)
		if err != nil {
			return nil, err
		}
		p, err := s.Audit.ListAudit(c, domain.BackupID(q.Get("backup")), since, q.Get("page_token"), size)
		if err != nil {
			return nil, err
		}
		return listView(p, auditView), nil
	})
}
