package console

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// CookieName is the session cookie: it holds a session reference (never
// the account token), Secure, HttpOnly and SameSite=Strict, until the
// session expires.
const CookieName = "kmsbackup_session"

// SignInPath is the sign-in page and form: its requests read a body before
// they authenticate.
const SignInPath = "/signin"

// handler is a console handler that runs for a signed-in account.
type handler func(w http.ResponseWriter, r *http.Request, a commands.Caller)

// session authenticates a request by its cookie. A request without a valid
// session goes to the sign-in page (and back afterwards, for a page).
func (c *Console) session(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, err := c.signedIn(w, r)
		if domain.Kind(err) == domain.ErrTooManyRequests {
			c.renderError(w, r, err)
			return
		}
		if err != nil {
			next := "/backups"
			if r.Method == http.MethodGet && !isHTMX(r) {
				next = r.URL.RequestURI()
			}
			to := "/signin?next=" + url.QueryEscape(next)
			if r.Method != http.MethodGet && !isHTMX(r) {
				c.renderError(w, r, domain.Errorf(domain.ErrUnauthenticated, "", "", "sign in again, then repeat what you were doing",
					"your session has ended"))
				return
			}
			redirect(w, r, to)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller)), caller)
	})
}

// signedIn returns the account of r's session cookie, within the limit on
// failed authentications of its client. Errors: ErrUnauthenticated without
// a valid session (a cookie that is not one counts as a failure of the
// client); ErrTooManyRequests, with Retry-After set on w, when the client
// failed too often, before the cookie is checked.
func (c *Console) signedIn(w http.ResponseWriter, r *http.Request) (commands.Caller, error) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return commands.Caller{}, domain.Errorf(domain.ErrUnauthenticated, "sign in", "", "", "not signed in")
	}
	if err := c.admit(w, r, "requests with a session that is not valid"); err != nil {
		return commands.Caller{}, err
	}
	caller, err := c.Sessions.SessionCaller(r.Context(), ck.Value)
	if err != nil {
		if domain.Kind(err) == domain.ErrUnauthenticated {
			c.Guard.Failed(r)
		}
		return commands.Caller{}, err
	}
	c.Guard.Authenticated(r)
	return caller, nil
}

// admit refuses, with ErrTooManyRequests and Retry-After set on w, a
// client that failed to authenticate too often; what names its failures.
func (c *Console) admit(w http.ResponseWriter, r *http.Request, what string) error {
	wait, ok := c.Guard.Admit(r)
	if ok {
		return nil
	}
	secs := int(wait / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return domain.Errorf(domain.ErrTooManyRequests, "", "", fmt.Sprintf("wait %d seconds, then try again", secs),
		"too many failed sign-ins or %s from this address", what)
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	if _, err := c.signedIn(w, r); err == nil {
		http.Redirect(w, r, "/backups", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

type signInView struct {
	Next string
	Err  *problem
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "signin", "Sign in", signInView{Next: localPath(r.URL.Query().Get("next"), "/backups")})
}

// signIn checks the token, opens a session and keeps its reference in the
// session cookie. The cookie is always Secure, so a browser keeps it only
// over HTTPS or on a loopback address: on plain HTTP elsewhere, sign-in
// says so instead of looping.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	v := signInView{Next: localPath(r.PostFormValue("next"), "/backups")}
	token := strings.TrimSpace(r.PostFormValue("token"))
	var sess commands.Session
	err := c.admit(w, r, "requests with a session that is not valid")
	switch {
	case err != nil:
	case !secureOrigin(r):
		err = domain.Errorf(domain.ErrFailedPrecondition, "sign in", "", "serve the console over HTTPS (a TLS-terminating proxy that sets X-Forwarded-Proto: https), or open it on a loopback address",
			"the console keeps its session in a Secure cookie, which browsers do not store over plain HTTP")
	case token == "":
		err = domain.Invalid("sign in", "enter your account token (kmsb_...)")
	default:
		sess, err = c.Sessions.StartSession(r.Context(), token)
		if err != nil && domain.Kind(err) == domain.ErrUnauthenticated {
			c.Guard.Failed(r)
			err = domain.Errorf(domain.ErrUnauthenticated, "sign in", "", "check the token; `kmsbackup account create` prints a new account's token",
				"that token is not valid")
		}
	}
	if err != nil {
		v.Err = c.describe(r, err)
		c.render(w, r, errorStatus(err), "signin", "Sign in", v)
		return
	}
	c.Guard.Authenticated(r)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: sess.Ref, Path: "/", MaxAge: int(sess.ExpiresAt.Sub(c.Now()) / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	redirect(w, r, v.Next)
}

// signOut ends the session on the server (every copy of the cookie stops
// working) and clears the cookie.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(CookieName); err == nil {
		if err := c.Sessions.EndSession(r.Context(), ck.Value); err != nil {
			c.renderError(w, r, err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	redirect(w, r, "/signin")
}

// secureOrigin reports whether the browser will keep a Secure cookie from
// this request: HTTPS (directly or behind a proxy) or a loopback host.
func secureOrigin(r *http.Request) bool {
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
