package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// maxBody bounds every request body.
const maxBody = 1 << 20

// Authenticator maps a bearer token to a caller.
type Authenticator interface {
	Authenticate(token string) (commands.Caller, error)
}

// Guard is the HTTP edge as the API sees it (adapters/httpedge implements
// it). Its methods are safe for concurrent use.
type Guard interface {
	// Admit reports whether r's client may try to authenticate now; when
	// not, how long until it may (whole seconds, for Retry-After).
	Admit(r *http.Request) (retryAfter time.Duration, ok bool)
	// Failed records that r's client presented a credential that did not
	// authenticate.
	Failed(r *http.Request)
	// Authenticated records that r authenticated: it stops counting among
	// the unauthenticated requests.
	Authenticated(r *http.Request)
}

// openGuard admits everyone (a Server without a Guard).
type openGuard struct{}

func (openGuard) Admit(*http.Request) (time.Duration, bool) { return 0, true }
func (openGuard) Failed(*http.Request)                      {}
func (openGuard) Authenticated(*http.Request)               {}

// EventTailer streams public events for a caller after a position.
type EventTailer interface {
	TailEvents(ctx context.Context, c commands.Caller, from uint64, emit func(publicevent.Event) error) error
}

// Server is the HTTP API. Build it with its use cases, then serve Handler().
type Server struct {
	KMS      *commands.KMS
	Accounts *commands.Accounts
	Auth     Authenticator
	// Guard limits failed authentications per client (429 with
	// Retry-After) and learns which requests authenticated; nil admits
	// everyone.
	Guard  Guard
	Events EventTailer
	// Ready lists what /readyz checks, by name (the projections, the
	// scheduler, the event log, the stores, the bus): the server is ready
	// when every check passes.
	Ready []ReadyCheck
	// FailingBackups, when set, lists the backup instances whose scheduled
	// work fails, which /readyz?verbose names with their reasons. They never
	// make the server unready: a failing backup instance is its own problem,
	// and the others are backed up on time.
	FailingBackups func() ([]*domain.Backup, error)
	// ClockBehind, when set, tells whether the clock is behind the newest
	// checkpoint (a system clock set back): /readyz?verbose says so on a
	// "[!]clock" line. It never makes the server unready: backups wait
	// until the clock passes that checkpoint, nothing else does.
	ClockBehind func() (commands.ClockLag, bool, error)
	// BackupFailures, when set, counts the failures of each backup
	// instance's scheduled work since the process started, which /metrics
	// exports as kmsbackup_backup_failures_total.
	BackupFailures func() map[domain.BackupID]uint64
	// Registry receives the API's metrics and is served at /metrics to
	// anyone: nothing in it names an account or a backup instance.
	Registry *prometheus.Registry
	// Tenants receives the metrics of each backup instance (labelled by
	// backup and account), added to /metrics only for the metrics token
	// or the admin token; nil makes a registry of its own.
	Tenants *prometheus.Registry
	// MetricsToken, when set, is a token that reads every metric of
	// /metrics and nothing else (Prometheus sends it as a bearer token).
	MetricsToken string
	Logger       *slog.Logger
	// Backups serves the backup instances under /v1/backup-instances; nil
	// leaves those routes and the backup metrics out.
	Backups *commands.BackupInstances
	// Days serves what a backup instance holds (a day's lists, its
	// checkpoints, the difference of two days); nil leaves those routes
	// out.
	Days *commands.DayData
	// Checkpoints serves the verification of a backup instance (POST
	// /v1/backup-instances/{id}/verify); nil leaves it out.
	Checkpoints *commands.Checkpoints
	// Files serves downloads of a day and uploads (POST
	// /v1/backup-instances/{id}/download, /v1/uploads); nil leaves those
	// routes out.
	Files *commands.DayFiles
	// BackupGauges lists the backup instances /metrics reports on, every
	// account's, read at each scrape: their last backup times
	// (kmsbackup_backup_last_full_timestamp_seconds and
	// kmsbackup_backup_last_incremental_timestamp_seconds, for the enabled
	// and expired ones) and whether their scheduled work fails
	// (kmsbackup_backup_failing). Wire it to
	// BackupInstances.ScheduledBackups. Nil exports none.
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
	if s.Guard == nil {
		s.Guard = openGuard{}
	}
	if s.Tenants == nil {
		s.Tenants = prometheus.NewRegistry()
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
	mux.Handle("GET /metrics", s.metrics())
	mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(OpenAPI)
	})
	s.accountRoutes(rt)
	s.instanceRoutes(rt)
	s.keyRoutes(rt)
	s.secretRoutes(rt)
	s.eventRoutes(rt)
	if s.Backups != nil {
		s.backupRoutes(rt)
		src := backupSource{list: s.BackupGauges, failures: s.BackupFailures, logger: s.Logger}
		s.Registry.MustRegister(&backupSummary{src})
		s.Tenants.MustRegister(&backupCollector{src})
	}
	// The other optional routes, each served when its use cases are set.
	for _, o := range []struct {
		set    bool
		routes func(*Router)
	}{
		{s.Days != nil, s.dayRoutes},
		{s.Checkpoints != nil, s.verifyRoutes},
		{s.Files != nil, s.fileRoutes},
		{s.Restores != nil, s.restoreRoutes},
		{s.Audit != nil, s.auditRoutes},
		{s.DevClock != nil, s.devRoutes},
		{s.DevScrub != nil, s.devScrubRoutes},
	} {
		if o.set {
			o.routes(rt)
		}
	}
	if s.ScrubStatus != nil {
		s.Registry.MustRegister(&scrubCollector{status: s.ScrubStatus})
		s.Tenants.MustRegister(&scrubFindings{status: s.ScrubStatus})
	}
	if s.Extra != nil {
		s.Extra(rt)
	}
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, domain.Errorf(domain.ErrNotFound, r.Method+" "+r.URL.Path, "", "see /v1/openapi.json for the API", "no such API route"))
	})
	return s.recoverPanics(noSniff(mux))
}

// noSniff tells browsers to take every answer of the API (JSON, event
// streams, files, /metrics) as the type it says it is.
func noSniff(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
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
// does not make the server unready) and a clock behind the newest
// checkpoint ("[!]clock ..."; informational too), then "readyz check
// passed" or "readyz check failed". The failing backup instances are named
// only for the metrics token or the admin token; anyone else is told how
// many.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	verbose := r.URL.Query().Has("verbose")
	tenants := false
	if verbose && r.Header.Get("Authorization") != "" {
		if err := s.readsTenants(w, r); err != nil {
			writeError(w, err)
			return
		}
		tenants = true
	}
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
		if !tenants && len(bs) > 0 {
			fmt.Fprintf(&out, "[!]backups: %d failing (which, and why: /readyz?verbose with the metrics token or the admin token)\n", len(bs))
			bs = nil
		}
		for _, b := range bs {
			fmt.Fprintf(&out, "[!]backup %s of account %s failing since %s (%s, %d attempts): %s\n", b.ID, b.Account,
				b.Failing.Since.UTC().Format(time.RFC3339), b.Failing.Work, b.Failing.Attempts, b.Failing.Reason)
		}
	}
	if verbose && s.ClockBehind != nil {
		lag, behind, err := s.ClockBehind()
		switch {
		case err != nil:
			s.Logger.Error("readyz: compare the clock with the last checkpoint", "error", err)
			out.WriteString("[!]clock: cannot compare it with the last checkpoint; the server log has the details\n")
		case behind:
			fmt.Fprintf(&out, "[!]clock %s is behind the last checkpoint, %s (backup %s), by %s: no backup is taken until it passes it\n",
				lag.Now.UTC().Format(time.RFC3339), lag.Checkpoint.UTC().Format(time.RFC3339), lag.Backup, lag.Behind().Round(time.Second))
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
		c, err := s.authenticate(w, r)
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

// authenticate maps r's bearer token to a caller, within the limit on
// failed authentications of its client: over it, ErrTooManyRequests (with
// Retry-After set on w) before the token is checked.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (commands.Caller, error) {
	c, _, err := s.authenticateOr(w, r, "")
	return c, err
}

// authenticateOr is authenticate that also accepts the token other, when
// set (it then reports other as true and no caller).
func (s *Server) authenticateOr(w http.ResponseWriter, r *http.Request, other string) (commands.Caller, bool, error) {
	if wait, ok := s.Guard.Admit(r); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
		return commands.Caller{}, false, domain.Errorf(domain.ErrTooManyRequests, "authenticate", "",
			fmt.Sprintf("wait %d seconds, then check the token", int(wait/time.Second)),
			"too many failed authentications from this address")
	}
	header := r.Header.Get("Authorization")
	token := BearerToken(header)
	if other != "" && token != "" && sameToken(token, other) {
		s.Guard.Authenticated(r)
		return commands.Caller{}, true, nil
	}
	c, err := s.Auth.Authenticate(token)
	if err != nil {
		if header != "" && domain.Kind(err) == domain.ErrUnauthenticated {
			s.Guard.Failed(r)
		}
		return commands.Caller{}, false, err
	}
	s.Guard.Authenticated(r)
	return c, false, nil
}

// sameToken compares two tokens in constant time (of their hashes).
func sameToken(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// metrics serves /metrics: to anyone, the metrics that name no tenant;
// with the metrics token or the admin token, those of every backup
// instance too. A wrong token is refused (and counts as a failed
// authentication of its client); an account token is not enough.
func (s *Server) metrics() http.Handler {
	open := promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{})
	all := promhttp.HandlerFor(prometheus.Gatherers{s.Registry, s.Tenants}, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			open.ServeHTTP(w, r)
			return
		}
		if err := s.readsTenants(w, r); err != nil {
			writeError(w, err)
			return
		}
		all.ServeHTTP(w, r)
	})
}

// readsTenants checks that r carries the metrics token or the admin
// token, which read what /metrics and /readyz?verbose say of every
// account's backup instances.
func (s *Server) readsTenants(w http.ResponseWriter, r *http.Request) error {
	c, metrics, err := s.authenticateOr(w, r, s.MetricsToken)
	if err == nil && !metrics && !c.Admin {
		err = domain.Errorf(domain.ErrPermissionDenied, "read "+r.URL.Path, "", "use the metrics token (--metrics-token-file) or the admin token",
			"an account token does not read what concerns every account")
	}
	return err
}

// BearerToken is the token of an Authorization header value of the form
// "Bearer <token>" (RFC 6750: the scheme in any case, exactly one space, a
// token without spaces), else "", which authenticates no one.
func BearerToken(header string) string {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return ""
	}
	return token
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

// decode reads a strict JSON body into v, a pointer to a request struct.
// Its errors name the JSON field and the form it takes ("a whole number",
// "a base64 string"), never a Go type, and repeat at most a short part of
// what was sent (domain.Quote).
func decode(r *http.Request, v any) error {
	const op = "read request"
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return domain.Invalid(op, "content type must be application/json, got %s", domain.Quote(ct))
	}
	body, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return domain.Invalid(op, "request body is larger than %d bytes", maxBody)
	case err != nil:
		return fmt.Errorf("%s: %w", op, err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		var be base64.CorruptInputError
		switch {
		case errors.Is(err, io.EOF):
			return domain.Invalid(op, "request body is empty; send a JSON object")
		case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
			if se == nil {
				return domain.Invalid(op, "request body is not valid JSON (it ends too early)")
			}
			return domain.Invalid(op, "request body is not valid JSON (at byte %d)", se.Offset)
		case errors.As(err, &te) && te.Field == "":
			return domain.Invalid(op, "request body must be a JSON object, not %s", jsonKind(te.Value))
		case errors.As(err, &te):
			return domain.Invalid(op, "field %s must be %s, not %s", domain.Quote(te.Field), jsonForm(te.Type), jsonKind(te.Value))
		case errors.As(err, &be):
			field := "a field of bytes"
			if name := base64Field(body, v); name != "" {
				field = "field " + domain.Quote(name)
			}
			return domain.Invalid(op, "%s must be a base64 string (standard alphabet, with padding)", field)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
			return domain.Errorf(domain.ErrInvalidArgument, op, "", "see /v1/openapi.json for the fields of this request",
				"request has an unknown field %s", domain.Quote(name))
		}
		return domain.Invalid(op, "request body is not a valid JSON object of this request")
	}
	if dec.More() {
		return domain.Invalid(op, "request body must hold exactly one JSON object")
	}
	return nil
}

// jsonKind names the kind of JSON value a decoding error met ("string",
// "number 1.5", ...), without the value.
func jsonKind(value string) string {
	kind, _, _ := strings.Cut(value, " ")
	switch kind {
	case "array", "object", "string", "number":
		return "an " + kind
	}
	return "a " + kind
}

// jsonForm says, in JSON's words, what a request field of Go type t takes.
func jsonForm(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	}
	return "an object"
}

// base64Field names the field of body that should hold base64 and does
// not: v's byte-slice fields are the only ones JSON reads as base64.
func base64Field(body []byte, v any) string {
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) != nil {
		return ""
	}
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return ""
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() != reflect.Slice || f.Type.Elem().Kind() != reflect.Uint8 {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		var b []byte
		if m, ok := raw[name]; ok && json.Unmarshal(m, &b) != nil {
			return name
		}
	}
	return ""
}

// queryBool parses an optional boolean query parameter: true or 1, false
// or 0; absent or empty is false.
func queryBool(r *http.Request, name string) (bool, error) {
	switch r.URL.Query().Get(name) {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, domain.Invalid("read request", "query parameter %s must be true or false", name)
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
