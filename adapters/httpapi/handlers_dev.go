package httpapi

import (
	"net/http"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// devRoutes serves the --dev clock: any account may read it and, when it
// is manual, move it forward (the scheduled backups run on the way).
func (s *Server) devRoutes(rt *Router) {
	clk := s.DevClock
	rt.Handle("GET", "/v1/dev/clock", func(_ http.ResponseWriter, _ *http.Request, _ commands.Caller) (any, error) {
		return DevClockView{Now: clk.Now().UTC(), Manual: clk.Manual()}, nil
	})
	rt.Handle("POST", "/v1/dev/clock/advance", func(_ http.ResponseWriter, r *http.Request, _ commands.Caller) (any, error) {
		var req AdvanceClockRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		d, err := domain.ParseClockAdvance(req.Duration)
		if err != nil {
			return nil, err
		}
		if !clk.Manual() {
			return nil, domain.Errorf(domain.ErrFailedPrecondition, "advance clock", "", "start the server with --clock manual",
				"the server runs on the real clock, which cannot be advanced")
		}
		now, work, err := clk.Advance(r.Context(), d)
		if err != nil {
			return nil, err
		}
		return AdvanceClockResponse{Now: now.UTC(), Work: work}, nil
	})
}

// devScrubRoutes serves the --dev scrub: any account may run one. Like an
// advance of the dev clock, it works on every account's instances and
// answers with counts only.
func (s *Server) devScrubRoutes(rt *Router) {
	rt.Handle("POST", "/v1/dev/scrub", func(_ http.ResponseWriter, r *http.Request, _ commands.Caller) (any, error) {
		run, err := s.DevScrub.RunOnce(r.Context())
		if err != nil {
			return nil, err
		}
		return ScrubRunView{StartedAt: run.Started.UTC(), EndedAt: run.Ended.UTC(), DurationSeconds: run.Duration().Seconds(),
			Checked: run.Checked, WithFindings: run.WithFindings, Errors: run.Errors, Skipped: run.Skipped}, nil
	})
}
