package httpedge

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Limits.
const (
	DefaultReadHeaderTimeout  = 10 * time.Second
	DefaultIdleTimeout        = 2 * time.Minute
	DefaultBodyGrace          = 10 * time.Second
	DefaultBodyIdle           = 30 * time.Second
	DefaultBodyMinRate        = 16 << 10 // bytes a second
	DefaultMaxUnauthenticated = 128
	DefaultFailureBurst       = 10
	DefaultFailureInterval    = 3 * time.Second
	DefaultMaxClients         = 10000
)

// Limits bound what one connection or client may hold of the server. Zero
// fields take the defaults above.
type Limits struct {
	// ReadHeaderTimeout bounds the time to send a request's headers;
	// IdleTimeout how long a kept-alive connection may wait for its next
	// request.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// A request body must keep arriving: by BodyGrace after the headers,
	// plus one second per BodyMinRate bytes received, and never more than
	// BodyIdle after the last bytes that arrived. So a 16 GiB upload
	// streams as long as it moves, and a body sent a byte at a time is cut
	// after BodyGrace. (No ReadTimeout: it would cut large uploads.)
	BodyGrace   time.Duration
	BodyIdle    time.Duration
	BodyMinRate int64
	// MaxUnauthenticated bounds the requests in progress that have not
	// authenticated: those without credentials (no Authorization header,
	// no session cookie), and every sign-in until it succeeds. Beyond it a
	// request is answered 503 with Retry-After at once.
	MaxUnauthenticated int
	// A client (an IPv4 address, an IPv6 /64) may fail to authenticate
	// FailureBurst times, then once per FailureInterval; beyond that its
	// attempts are refused (429) before they are checked. MaxClients bounds
	// the clients remembered (least recently failed forgotten first).
	FailureBurst    int
	FailureInterval time.Duration
	MaxClients      int
}

func (l Limits) withDefaults() Limits {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	def(&l.BodyGrace, DefaultBodyGrace)
	def(&l.BodyIdle, DefaultBodyIdle)
	def(&l.FailureInterval, DefaultFailureInterval)
	if l.BodyMinRate <= 0 {
		l.BodyMinRate = DefaultBodyMinRate
	}
	if l.MaxUnauthenticated <= 0 {
		l.MaxUnauthenticated = DefaultMaxUnauthenticated
	}
	if l.FailureBurst <= 0 {
		l.FailureBurst = DefaultFailureBurst
	}
	if l.MaxClients <= 0 {
		l.MaxClients = DefaultMaxClients
	}
	return l
}

// Options configures an Edge.
type Options struct {
	Limits
	// TrustedProxies are the peers whose X-Forwarded-For and
	// X-Forwarded-Proto are believed. From any other peer these headers
	// (and Forwarded, X-Forwarded-Host, X-Real-Ip) are removed before the
	// handlers see the request.
	TrustedProxies []netip.Prefix
	// CredentialCookie is the name of the console's session cookie: a
	// request that carries it, or an Authorization header, authenticates
	// from its headers before reading any body, so it holds no
	// unauthenticated slot.
	CredentialCookie string
	// SignInPaths are the paths whose requests read a body before they
	// authenticate (the console's sign-in form): they hold a slot whatever
	// their headers carry, until Authenticated or their end.
	SignInPaths []string
	// Now is the clock of the failure limits (default time.Now). Body
	// deadlines are on the network's clock.
	Now func() time.Time
	// Registerer, when set, receives kmsbackup_http_refused_total by
	// reason.
	Registerer prometheus.Registerer
}

// Edge wraps the server's handler (Handler) and answers the handlers'
// questions about a request's client (Admit, Failed, Authenticated,
// Client). Safe for concurrent use.
type Edge struct {
	o       Options
	slots   chan struct{}
	clients *limiters
	refused *prometheus.CounterVec
}

// New builds an Edge; zero limits take their defaults.
func New(o Options) *Edge {
	o.Limits = o.Limits.withDefaults()
	if o.Now == nil {
		o.Now = time.Now
	}
	e := &Edge{o: o, slots: make(chan struct{}, o.MaxUnauthenticated),
		clients: newLimiters(o.FailureBurst, o.FailureInterval, o.MaxClients),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kmsbackup_http_refused_total",
			Help: "Requests refused at the HTTP edge, by reason: busy (too many unauthenticated requests in progress), failed-authentications (the client failed to authenticate too often).",
		}, []string{"reason"})}
	for _, reason := range []string{reasonBusy, reasonFailures} {
		e.refused.WithLabelValues(reason)
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(e.refused)
	}
	return e
}

const (
	reasonBusy     = "busy"
	reasonFailures = "failed-authentications"
)

// Server returns an http.Server serving h behind the edge, with its
// header and idle timeouts.
func (e *Edge) Server(h http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{Handler: e.Handler(h), ReadHeaderTimeout: e.o.ReadHeaderTimeout,
		IdleTimeout: e.o.IdleTimeout, ErrorLog: errorLog}
}

// state is what the edge knows of one request.
type state struct {
	client netip.Addr
	slot   atomic.Bool // holds an unauthenticated slot
}

type stateKey struct{}

// Handler puts the edge in front of next: forwarded headers from untrusted
// peers removed, the cap on unauthenticated requests, the body deadline.
func (e *Edge) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &state{client: e.client(r)}
		if !e.trusted(peer(r)) {
			for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Real-Ip"} {
				r.Header.Del(h)
			}
		}
		if e.needsSlot(r) {
			select {
			case e.slots <- struct{}{}:
				st.slot.Store(true)
				defer e.release(st)
			default:
				e.refused.WithLabelValues(reasonBusy).Inc()
				busy(w, r)
				return
			}
		}
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			r.Body = e.deadlineBody(w, r.Body)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	})
}

// needsSlot reports whether r counts among the unauthenticated requests.
func (e *Edge) needsSlot(r *http.Request) bool {
	if slices.Contains(e.o.SignInPaths, r.URL.Path) {
		return true
	}
	if r.Header.Get("Authorization") != "" {
		return false
	}
	if e.o.CredentialCookie != "" {
		if _, err := r.Cookie(e.o.CredentialCookie); err == nil {
			return false
		}
	}
	return true
}

func (e *Edge) release(st *state) {
	if st.slot.CompareAndSwap(true, false) {
		<-e.slots
	}
}

// Authenticated tells the edge that r authenticated: it no longer counts
// among the unauthenticated requests.
func (e *Edge) Authenticated(r *http.Request) {
	if st, ok := r.Context().Value(stateKey{}).(*state); ok {
		e.release(st)
	}
}

// Admit reports whether r's client may try to authenticate now; when not,
// how long until it may, in whole seconds (at least one), as Retry-After
// says it.
func (e *Edge) Admit(r *http.Request) (retryAfter time.Duration, ok bool) {
	wait, ok := e.clients.admit(clientKey(e.Client(r)), e.o.Now())
	if ok {
		return 0, true
	}
	e.refused.WithLabelValues(reasonFailures).Inc()
	return max(time.Second, (wait+time.Second-1)/time.Second*time.Second), false
}

// Failed records that r's client failed to authenticate.
func (e *Edge) Failed(r *http.Request) { e.clients.fail(clientKey(e.Client(r)), e.o.Now()) }

// Client is r's client address: the peer, or, when the peer is a trusted
// proxy, the address X-Forwarded-For names (the nearest one that is not a
// trusted proxy itself). Invalid when the peer's address cannot be read.
func (e *Edge) Client(r *http.Request) netip.Addr {
	if st, ok := r.Context().Value(stateKey{}).(*state); ok {
		return st.client
	}
	return e.client(r)
}

func (e *Edge) client(r *http.Request) netip.Addr {
	addr := peer(r)
	if !e.trusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			break
		}
		addr = hop
		if !e.trusted(hop) {
			break
		}
	}
	return addr
}

func (e *Edge) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range e.o.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peer is the address of the connection's other end.
func peer(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		a, _ := netip.ParseAddr(r.RemoteAddr)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

// parseHop reads one address of X-Forwarded-For (a port, as some proxies
// add, is dropped).
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// clientKey is the unit the failure limits count: an IPv4 address, or an
// IPv6 /64 (one host commonly holds a whole /64).
func clientKey(a netip.Addr) string {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// ParseTrustedProxies reads addresses and CIDR prefixes (such as 10.0.0.1,
// 10.0.0.0/8 or fd00::/8).
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		for f := range strings.SplitSeq(s, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if strings.Contains(f, "/") {
				p, err := netip.ParsePrefix(f)
				if err != nil {
					return nil, &ProxyError{Value: f}
				}
				out = append(out, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, &ProxyError{Value: f}
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, nil
}

// ProxyError is a trusted proxy that is neither an address nor a prefix.
type ProxyError struct{ Value string }

func (e *ProxyError) Error() string {
	return "trusted proxy " + strconv.Quote(e.Value) + " is neither an IP address nor a CIDR prefix (such as 10.0.0.1 or 10.0.0.0/8)"
}

// busy answers a request refused because too many unauthenticated
// requests are in progress: JSON under /v1/, text elsewhere.
func busy(w http.ResponseWriter, r *http.Request) {
	const msg = "the server has too many requests in progress that have not authenticated; try again"
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Connection", "close")
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"code":"unavailable","message":"`+msg+`"}}`+"\n")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, msg+"\n")
}

// deadlineBody is a request body whose connection read deadline follows
// Limits: BodyGrace, plus a second per BodyMinRate bytes received, at most
// BodyIdle after the last progress. Once the body has ended it sets no
// deadline: net/http then watches the connection for a close (without a
// deadline), and a deadline there would cancel a long handler.
type deadlineBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	read  int64
	l     *Limits
	ended bool
}

func (e *Edge) deadlineBody(w http.ResponseWriter, body io.ReadCloser) io.ReadCloser {
	b := &deadlineBody{ReadCloser: body, rc: http.NewResponseController(w), start: time.Now(), l: &e.o.Limits}
	if err := b.rc.SetReadDeadline(b.deadline(b.start)); err != nil {
		return body // a writer without deadlines (tests): nothing to bound
	}
	return b
}

func (b *deadlineBody) deadline(now time.Time) time.Time {
	d := b.start.Add(b.l.BodyGrace + time.Duration(float64(b.read)/float64(b.l.BodyMinRate)*float64(time.Second)))
	if idle := now.Add(b.l.BodyIdle); idle.Before(d) {
		return idle
	}
	return d
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.ended {
		return n, err
	}
	if err == io.EOF {
		b.ended = true
		return n, err
	}
	if n > 0 {
		b.read += int64(n)
		_ = b.rc.SetReadDeadline(b.deadline(time.Now()))
	}
	return n, err
}
