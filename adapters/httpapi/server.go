package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/publicevent"
)

// maxBody bounds every request body.
const maxBody = 1 << 20

// Authenticator maps a bearer token to a caller.
type Authenticator interface {
	Authenticate(token string) (commands.Caller, error)
}

// EventTailer streams public events for a caller after a position.
type EventTailer interface {
	TailEvents(ctx context.Context, c commands.Caller, from uint64, emit func(publicevent.Event) error) error
}

// Server is the HTTP API. Build it with its use cases, then serve Handler().
type Server struct {
	KMS      *commands.KMS
	Accounts *commands.Accounts
	Auth     Authenticator
	Events   EventTailer
	// Ready lists what /readyz checks, by name (the projections, the
	// scheduler, the event log, the stores, the bus): the server is ready
	// when every check passes.
	Ready []ReadyCheck
	// FailingBackups, when set, lists the backup instances whose scheduled
	// work fails, which /readyz?verbose names with their reasons. They never
	// make the server unready: a failing backup instance is its own problem,
	// and the others are backed up on time.
	FailingBackups func() ([]*domain.Backup, error)
	// BackupFailures, when set, counts the failures of each backup
	// instance's scheduled work since the process started, which /metrics
	// exports as kmsbackup_backup_failures_total.
	BackupFailures func() map[domain.BackupID]uint64
	// Registry receives the API's metrics and is served at /metrics.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// Backups serves the backup instances under /v1/backup-instances; nil
	// leaves those routes and the backup metrics out.
	Backups *commands.Backups
	// BackupGauges lists the backup instances /metrics reports on, every
	// account's, read at each scrape: their last backup times
	// (kmsbackup_backup_last_full_timestamp_seconds and
	// kmsbackup_backup_last_incremental_timestamp_seconds, for the enabled
	// and expired ones) and whether their scheduled work fails
	// (kmsbackup_backup_failing). Wire it to Backups.ScheduledBackups. Nil
	// exports none.
	BackupGauges func() ([]*domain.Backup, error)
	// Restores serves POST /v1/restores and GET
	// /v1/backup-instances/{id}/replay; nil leaves them out.
	Restores *commands.Restores
	// Audit serves GET /v1/audit; nil leaves it out.
	Audit *commands.Audit
	// ScrubStatus, when set, is read at each scrape of /metrics for the
	// background verification of every backup (kmsbackup_verify_*); wire it
	// to the scrub runner's Status.
	ScrubStatus func() commands.ScrubStatus
	// LastScrub, when set, gives the last background verification of a
	// backup instance, shown by GET /v1/backup-instances/{id} as last_scrub
	// (after the caller's access to the instance is checked).
	LastScrub func(domain.BackupID) (commands.ScrubResult, bool)
	// DevClock, when set (--dev), serves /v1/dev/clock; nil leaves the dev
	// routes out, so that they answer not_found.
	DevClock DevClock
	// DevScrub, when set (--dev), serves POST /v1/dev/scrub, which runs a
	// background verification of every backup at once; nil leaves it out.
	DevScrub DevScrub
	// MaxUpload bounds an uploaded backup data file (default 16 GiB);
	// SpoolDir is where an upload waits, still encrypted, while it is
	// checked and stored (default os.TempDir()).
	MaxUpload int64
	SpoolDir  string
	// Extra registers more routes (later capabilities).
	Extra func(r *Router)

	routes   []Route
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// DevClock is the clock of a --dev server, which development and
// end-to-end tests can read and, when it is manual, move forward.
type DevClock interface {
	// Now is the clock's time.
	Now() time.Time
	// Manual reports whether the clock moves only when advanced (--clock
	// manual); a real clock cannot be advanced.
	Manual() bool
	// AdvanceReporting moves a manual clock forward by d (positive), doing
	// the scheduled backup work that falls due on the way, in order; it
	// returns the new time and how many pieces of work it did. progress,
	// when not nil, is called from the advancing goroutine as the clock
	// reaches each instant of work: the advance goes from from to to and
	// has reached now. Safe for concurrent use (advances happen one at a
	// time); not idempotent.
	AdvanceReporting(ctx context.Context, d time.Duration, progress func(from, now, to time.Time)) (now time.Time, work int, err error)
}

// DevScrub runs the background verification of every backup on request,
// for development and end-to-end tests.
type DevScrub interface {
	// RunOnce verifies every backup instance that holds data, after the
	// run in progress if there is one, and returns the run. Safe for
	// concurrent use; not idempotent (each call is a run).
	RunOnce(ctx context.Context) (commands.ScrubRun, error)
}

// Route is one registered method and path pattern.
type Route struct{ Method, Pattern string }

// Router registers routes on the server's mux with authentication and
// instrumentation.
type Router struct {
	s   *Server
	mux *http.ServeMux
}

// HandlerFunc is an authenticated handler: it returns the value to encode
// as JSON (or nil for 204) or an error.
type HandlerFunc func(w http.ResponseWriter, r *http.Request, c commands.Caller) (any, error)

// Handle registers an authenticated JSON route.
func (rt *Router) Handle(method, pattern string, h HandlerFunc) {
	rt.s.routes = append(rt.s.routes, Route{method, pattern})
	rt.mux.Handle(method+" "+pattern, rt.s.instrument(pattern, rt.s.authenticated(h)))
}

// HandleUpTo registers an authenticated route whose request body may hold
// up to limit bytes (streamed uploads).
func (rt *Router) HandleUpTo(method, pattern string, limit int64, h HandlerFunc) {
	rt.s.routes = append(rt.s.routes, Route{method, pattern})
	rt.mux.Handle(method+" "+pattern, rt.s.instrument(pattern, rt.s.authenticatedUpTo(limit, h)))
}

// Routes lists every /v1 route, for the OpenAPI consistency test.
func (s *Server) Routes() []Route { return s.routes }

// Handler builds the API's handler.
func (s *Server) Handler() http.Handler {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Registry == nil {
		s.Registry = prometheus.NewRegistry()
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kmsbackup_http_requests_total", Help: "API requests by route and status code.",
	}, []string{"route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "kmsbackup_http_request_duration_seconds", Help: "API request latency by route.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"route"})
	s.Registry.MustRegister(s.requests, s.latency)

	mux := http.NewServeMux()
	rt := &Router{s: s, mux: mux}
	s.routes = nil
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(OpenAPI)
	})
	s.kmsRoutes(rt)
	if s.Backups != nil {
		s.backupRoutes(rt)
		s.fileRoutes(rt)
		s.Registry.MustRegister(&backupCollector{list: s.BackupGauges, failures: s.BackupFailures, logger: s.Logger})
	}
	if s.Restores != nil {
		s.restoreRoutes(rt)
	}
	if s.Audit != nil {
		s.auditRoutes(rt)
	}
	if s.DevClock != nil {
		s.devRoutes(rt)
	}
	if s.DevScrub != nil {
		s.devScrubRoutes(rt)
	}
	if s.ScrubStatus != nil {
		s.Registry.MustRegister(&scrubCollector{status: s.ScrubStatus})
	}
	if s.Extra != nil {
		s.Extra(rt)
	}
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, domain.Errorf(domain.ErrNotFound, r.Method+" "+r.URL.Path, "", "see /v1/openapi.json for the API", "no such API route"))
	})
	return s.recoverPanics(mux)
}

// ReadyCheck is one named check of /readyz.
type ReadyCheck struct {
	Name  string // e.g. "projection kmsstate", "scheduler", "event log"
	Check func(ctx context.Context) error
}

// readyz answers 200 "ok" when every check passes, else 503 "not ready:"
// and the first failure. With ?verbose it lists every check by name, as
// Kubernetes does ("[+]name ok", "[-]name failed: why"), then each backup
// instance whose scheduled work fails ("[!]backup ..."; informational: it
// does not make the server unready), then "readyz check passed" or
// "readyz check failed".
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	verbose := r.URL.Query().Has("verbose")
	var out strings.Builder
	var first error
	for _, c := range s.Ready {
		err := c.Check(r.Context())
		if err != nil {
			if first == nil {
				first = fmt.Errorf("%s: %w", c.Name, err)
			}
			fmt.Fprintf(&out, "[-]%s failed: %s\n", c.Name, domain.CleanReason(err.Error()))
			continue
		}
		fmt.Fprintf(&out, "[+]%s ok\n", c.Name)
	}
	if verbose && s.FailingBackups != nil {
		bs, err := s.FailingBackups()
		if err != nil {
			s.Logger.Error("readyz: read failing backup instances", "error", err)
			out.WriteString("[!]backups: cannot read the failing backup instances; the server log has the details\n")
		}
		for _, b := range bs {
			fmt.Fprintf(&out, "[!]backup %s of account %s failing since %s (%s, %d attempts): %s\n", b.ID, b.Account,
				b.Failing.Since.UTC().Format(time.RFC3339), b.Failing.Work, b.Failing.Attempts, b.Failing.Reason)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if first != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	switch {
	case verbose && first != nil:
		_, _ = io.WriteString(w, out.String()+"readyz check failed\n")
	case verbose:
		_, _ = io.WriteString(w, out.String()+"readyz check passed\n")
	case first != nil:
		_, _ = fmt.Fprintf(w, "not ready: %s\n", domain.CleanReason(first.Error()))
	default:
		_, _ = io.WriteString(w, "ok\n")
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streaming handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// instrument counts and times requests and logs one line each: method,
// route pattern, status and duration; never bodies, tokens or query values.
func (s *Server) instrument(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		d := time.Since(start)
		s.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		s.latency.WithLabelValues(route).Observe(d.Seconds())
		s.Logger.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("method", r.Method),
			slog.String("route", route), slog.Int("status", sw.status), slog.Duration("duration", d))
	})
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				// The panic value may hold request data: log only its type.
				s.Logger.Error("handler panic", "route", r.URL.Path, "type", fmt.Sprintf("%T", v))
				writeError(w, errors.New("panic"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) authenticated(h HandlerFunc) http.Handler { return s.authenticatedUpTo(maxBody, h) }

// authenticatedUpTo is authenticated with a body of at most limit bytes.
func (s *Server) authenticatedUpTo(limit int64, h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		c, err := s.Auth.Authenticate(strings.TrimSpace(token))
		if err != nil {
			writeError(w, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		out, err := h(w, r, c)
		if err != nil {
			if kind := domain.Kind(err); kind == nil || kind == domain.ErrUnavailable {
				s.Logger.Error("request failed", "route", r.Pattern, "error", err)
			}
			writeError(w, err)
			return
		}
		if out == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if out == streamed {
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// streamed is returned by handlers that wrote their own response.
var streamed = new(struct{ streamed bool })

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	status, body := errorBody(err)
	writeJSON(w, status, body)
}

// decode reads a strict JSON body into v.
func decode(r *http.Request, v any) error {
	const op = "read request"
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return domain.Invalid(op, "content type must be application/json, got %q", ct)
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return domain.Invalid(op, "request body is empty; send a JSON object")
		case errors.As(err, &mbe):
			return domain.Invalid(op, "request body is larger than %d bytes", maxBody)
		case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
			if se == nil {
				return domain.Invalid(op, "request body is not valid JSON (it ends too early)")
			}
			return domain.Invalid(op, "request body is not valid JSON (at byte %d)", se.Offset)
		case errors.As(err, &te):
			return domain.Invalid(op, "field %q must be of type %s", te.Field, te.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return domain.Invalid(op, "request has an %s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return domain.Invalid(op, "request body is not valid: %v", err)
	}
	if dec.More() {
		return domain.Invalid(op, "request body must hold exactly one JSON object")
	}
	return nil
}

// queryInt parses an optional non-negative integer query parameter.
func queryInt(r *http.Request, name string, max int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > max {
		return 0, domain.Invalid("read request", "query parameter %s must be an integer from 0 to %d", name, max)
	}
	return n, nil
}
