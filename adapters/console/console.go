package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// HTMX is the embedded htmx release; a test checks that it is the one the
// layout loads.
const HTMX = "htmx-2.0.11.min.js"

// Sessions are the console's sign-ins (commands.Accounts implements them).
// Every method is safe for concurrent use.
type Sessions interface {
	// StartSession checks an account token and opens a session; its Ref
	// goes into the cookie. Errors: ErrUnauthenticated for a token that is
	// not valid, ErrPermissionDenied for the admin token.
	StartSession(ctx context.Context, token string) (commands.Session, error)
	// SessionCaller maps a cookie's session reference to its account.
	// Errors: ErrUnauthenticated when it is not a live session.
	SessionCaller(ctx context.Context, ref string) (commands.Caller, error)
	// EndSession signs a session out on the server. Idempotent.
	EndSession(ctx context.Context, ref string) error
}

// Guard is the HTTP edge as the console sees it (adapters/httpedge
// implements it). Its methods are safe for concurrent use.
type Guard interface {
	// Admit reports whether r's client may try to authenticate now; when
	// not, how long until it may (whole seconds, for Retry-After).
	Admit(r *http.Request) (retryAfter time.Duration, ok bool)
	// Failed records that r's client failed to sign in, or presented a
	// session that is not valid.
	Failed(r *http.Request)
	// Authenticated records that r authenticated: it stops counting among
	// the unauthenticated requests.
	Authenticated(r *http.Request)
}

// openGuard admits everyone (a Console without a Guard).
type openGuard struct{}

func (openGuard) Admit(*http.Request) (time.Duration, bool) { return 0, true }
func (openGuard) Failed(*http.Request)                      {}
func (openGuard) Authenticated(*http.Request)               {}

// DevClock is the clock of a --dev server; a manual one can be advanced
// from the console's development bar.
type DevClock interface {
	Now() time.Time
	Manual() bool
	Advance(ctx context.Context, d time.Duration) (now time.Time, work int, err error)
}

// Console serves the web console. Set its use cases, then serve Handler().
// A download it prepares waits in the shared blob store (Files), so that
// any node serves its link.
type Console struct {
	// The use cases: backup instances, their days, the verification of
	// their data (Checkpoints), downloads and uploads (Files), restores,
	// the KMS.
	Backups     *commands.BackupInstances
	Days        *commands.DayData
	Checkpoints *commands.Checkpoints
	Files       *commands.DayFiles
	Restores    *commands.Restores
	KMS         *commands.KMS
	Sessions    Sessions
	// Guard limits failed sign-ins per client (429 with Retry-After) and
	// learns which requests authenticated; nil admits everyone.
	Guard Guard
	// DevClock, when set (--dev), shows the development bar with the clock
	// and, for a manual clock, buttons to advance it.
	DevClock DevClock
	Logger   *slog.Logger
	// MaxUpload bounds an uploaded file (default 16 GiB). SpoolDir holds
	// uploads, still encrypted, while they are checked (default
	// os.TempDir()).
	MaxUpload int64
	SpoolDir  string
	// Now is the wall clock for session and download expiry (default
	// time.Now); the dev clock does not move them.
	Now func() time.Time
	// Registry, when set, receives kmsbackup_console_requests_total by
	// route and status code.
	Registry prometheus.Registerer

	pages    map[string]*template.Template
	requests *prometheus.CounterVec
	once     sync.Once
}

// pageSize is the number of rows a list page shows.
const pageSize = 50

// Handler builds the console's handler. Every route is protected against
// cross-origin requests (net/http's CrossOriginProtection, which reads
// Sec-Fetch-Site and Origin); every page but sign-in needs a session.
func (c *Console) Handler() http.Handler {
	c.init()
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(static)))
	mux.Handle("GET /{$}", c.count("GET /", http.HandlerFunc(c.home)))
	mux.Handle("GET /signin", c.count("GET /signin", http.HandlerFunc(c.signInPage)))
	mux.Handle("POST /signin", c.count("POST /signin", http.HandlerFunc(c.signIn)))
	mux.Handle("POST /signout", c.count("POST /signout", http.HandlerFunc(c.signOut)))
	for _, r := range []struct {
		pattern string
		h       handler
	}{
		{"GET /backups", c.listBackups},
		{"GET /backups/new", c.createForm},
		{"POST /backups", c.create},
		{"GET /backups/{id}/enable", c.enableForm},
		{"POST /backups/{id}/enable", c.enable},
		{"GET /backups/{id}/extend", c.extendForm},
		{"POST /backups/{id}/extend", c.extend},
		{"GET /backups/{id}/renew", c.renewForm},
		{"POST /backups/{id}/renew", c.renew},
		{"GET /backups/{id}/reset", c.resetForm},
		{"POST /backups/{id}/reset", c.reset},
		{"GET /backups/{id}/delete", c.deleteForm},
		{"POST /backups/{id}/delete", c.deleteUpload},
		{"GET /backups/{id}/data", c.data},
		{"GET /backups/{id}/diff", c.diff},
		{"GET /backups/{id}/verify", c.verifyForm},
		{"POST /backups/{id}/verify", c.verify},
		{"GET /backups/{id}/restore", c.restoreForm},
		{"POST /backups/{id}/restore/plan", c.restorePlan},
		{"POST /backups/{id}/restore/apply", c.restoreApply},
		{"GET /backups/{id}/download", c.downloadForm},
		{"POST /backups/{id}/download", c.download},
		{"GET /downloads/{ticket}", c.fetchDownload},
		{"GET /uploads/new", c.uploadForm},
		{"POST /uploads", c.upload},
		{"POST /dev/clock", c.advanceClock},
	} {
		mux.Handle(r.pattern, c.count(r.pattern, c.session(r.h)))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.renderError(w, r, domain.Errorf(domain.ErrNotFound, "", r.URL.Path, "go back to the backup list", "no such page"))
	})
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.WithLabelValues("cross-origin", "403").Inc()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("cross-origin request refused: the console accepts changes only from its own pages\n"))
	}))
	return securityHeaders(cop.Handler(mux))
}

func (c *Console) init() {
	c.once.Do(func() {
		if c.Logger == nil {
			c.Logger = slog.New(slog.DiscardHandler)
		}
		if c.Now == nil {
			c.Now = time.Now
		}
		if c.Guard == nil {
			c.Guard = openGuard{}
		}
		if c.MaxUpload <= 0 {
			c.MaxUpload = 16 << 30
		}
		c.pages = parsePages()
		c.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmsbackup_console_requests_total", Help: "Web console requests by route and status code.",
		}, []string{"route", "code"})
		if c.Registry != nil {
			c.Registry.MustRegister(c.requests)
		}
	})
}

// count counts a route's responses by status code.
func (c *Console) count(route string, next http.Handler) http.Handler {
	return promhttp.InstrumentHandlerCounter(c.requests.MustCurryWith(prometheus.Labels{"route": route}), next)
}

// securityHeaders sets what every console response carries: a strict
// content security policy (scripts and styles only from /static, no inline
// code), no framing, no sniffing, no referrer, and no caching of pages.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// staticHandler serves the embedded assets; they change only with the
// binary, so browsers may keep them for an hour.
func staticHandler(root fs.FS) http.Handler {
	files := http.FileServerFS(root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// isHTMX reports whether a request comes from htmx, which takes a page's
// content alone (into the dialog or the main area) rather than the whole
// page.
func isHTMX(r *http.Request) bool {
	return r.Header.Get("HX-Request") == "true" && r.Header.Get("HX-Boosted") != "true"
}

// redirect sends the browser to a page after a change: a 303 for a plain
// form, an HX-Redirect for htmx (which then loads the page whole).
func redirect(w http.ResponseWriter, r *http.Request, to string) {
	if isHTMX(r) {
		w.Header().Set("HX-Redirect", to)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// localPath returns p when it is a path on this server (for a return
// address carried in a form or query), else fallback.
func localPath(p, fallback string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") || strings.ContainsAny(p, "\r\n") {
		return fallback
	}
	return p
}

// errorStatus maps an error to the status of the page that shows it.
func errorStatus(err error) int {
	switch domain.Kind(err) {
	case domain.ErrInvalidArgument:
		return http.StatusBadRequest
	case domain.ErrUnauthenticated:
		return http.StatusUnauthorized
	case domain.ErrPermissionDenied:
		return http.StatusForbidden
	case domain.ErrNotFound:
		return http.StatusNotFound
	case domain.ErrAlreadyExists, domain.ErrWrongExpectedRevision, domain.ErrFailedPrecondition:
		return http.StatusConflict
	case domain.ErrQuotaExceeded, domain.ErrCorrupt:
		return http.StatusUnprocessableEntity
	case domain.ErrUnavailable:
		return http.StatusServiceUnavailable
	case domain.ErrTooManyRequests:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// problem is an error as a page shows it: what went wrong and what to do.
type problem struct {
	Message string
	Hint    string
}

// describe turns an error into a problem. Errors that wrap no sentinel are
// internal: they are logged and their text is not shown.
func (c *Console) describe(r *http.Request, err error) *problem {
	if err == nil {
		return nil
	}
	if domain.Kind(err) == nil {
		c.Logger.Error("console request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		return &problem{Message: "Internal error.", Hint: "The server log has the details; try again."}
	}
	var de *domain.Error
	if errors.As(err, &de) {
		msg := de.Msg
		if de.Op != "" || de.Item != "" {
			msg = strings.TrimSpace(de.Op+" "+de.Item) + ": " + msg
		}
		return &problem{Message: capitalize(msg), Hint: capitalize(de.Hint)}
	}
	return &problem{Message: capitalize(strings.TrimPrefix(err.Error(), "domain: "))}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// callerFrom is set by session on every authenticated request.
type callerKey struct{}

func callerFrom(r *http.Request) commands.Caller {
	c, _ := r.Context().Value(callerKey{}).(commands.Caller)
	return c
}
