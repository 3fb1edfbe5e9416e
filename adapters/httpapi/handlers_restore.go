package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
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

// input parses a restore request into the typed request of the use case:
// the only place the API checks it (the use case checks the rest against
// the backup and the target, and reports it as findings).
func (req RestoreRequest) input(op string) (commands.RestoreRequest, error) {
	switch {
	case req.From == "":
		return commands.RestoreRequest{}, domain.Invalid(op, "from is required: the ID of the backup instance to restore from (bkp_...)")
	case req.ToInstance == "":
		return commands.RestoreRequest{}, domain.Invalid(op, "to_instance is required: the ID of the KMS instance to restore into (kms_...)")
	}
	return commands.RestoreInput{From: req.From, Day: req.Day, At: req.At, Keys: req.Keys, Secrets: req.Secrets, All: req.All,
		ToInstance: req.ToInstance, ToRegion: req.ToRegion}.Parse()
}

// wantsNDJSON reports whether the client asked for a stream of progress
// lines (Accept: application/x-ndjson).
func wantsNDJSON(r *http.Request) bool {
	for _, a := range r.Header.Values("Accept") {
		for _, part := range strings.Split(a, ",") {
			if mt, _, _ := strings.Cut(strings.TrimSpace(part), ";"); strings.EqualFold(mt, "application/x-ndjson") {
				return true
			}
		}
	}
	return false
}

// restoreStream answers a restore as NDJSON: a line per progress report,
// then the result or the error. Until the first line the answer is
// undecided, so that a request refused before any progress gets its
// status code (returned as the handler's error).
type restoreStream struct {
	w       http.ResponseWriter
	enc     *json.Encoder
	started bool
}

func (st *restoreStream) line(l RestoreStreamLine) {
	if !st.started {
		st.started = true
		st.w.Header().Set("Content-Type", "application/x-ndjson")
		st.w.Header().Set("Cache-Control", "no-store")
		st.w.WriteHeader(http.StatusOK)
		st.enc = json.NewEncoder(st.w)
	}
	_ = st.enc.Encode(l) // a client gone stops reading; the restore goes on
	if f, ok := st.w.(http.Flusher); ok {
		f.Flush()
	}
}

// restoreRoutes serves restores and replays of backup instances.
func (s *Server) restoreRoutes(rt *Router) {
	rs := s.Restores
	rt.Handle("POST", "/v1/restores", func(w http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		const op = "restore"
		var req RestoreRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		in, err := req.input(op)
		if err != nil {
			return nil, err
		}
		var st *restoreStream
		var progress commands.ProgressFunc
		if wantsNDJSON(r) {
			st = &restoreStream{w: w}
			progress = func(p commands.RestoreProgress) {
				st.line(RestoreStreamLine{Progress: &RestoreProgress{Phase: p.Phase, Done: p.Done, Total: p.Total}})
			}
		}
		var res *commands.RestoreResult
		if req.DryRun {
			var plan *commands.RestorePlan
			if plan, err = rs.PlanRestore(r.Context(), c, in, progress); plan != nil {
				res = &commands.RestoreResult{Plan: plan}
			}
		} else {
			res, err = rs.Restore(r.Context(), c, in, progress)
		}
		switch {
		case st == nil || !st.started:
			if err != nil {
				return nil, err
			}
			return restoreView(res, req.DryRun), nil
		case err != nil:
			_, body := errorBody(err)
			st.line(RestoreStreamLine{Error: &body.Error})
		default:
			v := restoreView(res, req.DryRun)
			st.line(RestoreStreamLine{Result: &v})
		}
		return streamed, nil
	})
	rt.Handle("GET", "/v1/backup-instances/{id}/replay", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		const op = "replay"
		q := r.URL.Query()
		var day domain.Day
		var at time.Time
		if q.Get("day") == "" && q.Get("at") == "" {
			return nil, domain.Invalid(op, "query parameter day or at is required: a viewable day as YYYY-MM-DD, or an RFC 3339 instant")
		}
		if v := q.Get("day"); v != "" {
			d, err := domain.ParseDay(v)
			if err != nil {
				return nil, domain.Invalid(op, "query parameter day must be a date as YYYY-MM-DD, such as 2026-05-01")
			}
			day = d
		}
		if v := q.Get("at"); v != "" {
			t, err := rfc3339(op, "query parameter at", v)
			if err != nil {
				return nil, err
			}
			at = t
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
