package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// eventRoutes serves the public event stream.
func (s *Server) eventRoutes(rt *Router) {
	rt.Handle("GET", "/v1/events", func(w http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		from := uint64(0)
		if v := r.URL.Query().Get("from"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, domain.Invalid("tail events", "from must be a log position (a non-negative integer)")
			}
			from = n
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		flush := func() {
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
		flush()
		enc := json.NewEncoder(w)
		err := s.Events.TailEvents(r.Context(), c, from, func(e publicevent.Event) error {
			if err := enc.Encode(e); err != nil {
				return err
			}
			flush()
			return nil
		})
		if err != nil && r.Context().Err() == nil {
			s.Logger.Warn("event tail ended", "error", err)
		}
		return streamed, nil
	})
}
