package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"path"
	"sync"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// pageData is what every template receives: the page's own view in Body,
// and what the layout needs around it.
type pageData struct {
	Title    string
	Account  domain.AccountID // empty on the sign-in page
	Dev      *devView
	Here     string // this page, to come back to after advancing the dev clock
	Fragment bool   // htmx asked for the content alone
	HTMX     string
	Body     any
}

type devView struct {
	Now    time.Time
	Manual bool
}

var funcs = template.FuncMap{
	// when shows an instant in UTC, or a dash for none.
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	// minute shows an instant to the minute, in UTC, for tables.
	"minute": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// local shows an instant to the minute in a backup's time zone (an
	// IANA name; UTC when empty), with the zone's offset, for tables.
	"local": func(t time.Time, zone string) string { return inZone(t, zone, "2006-01-02 15:04 -07:00") },
	// localsec shows an instant to the second in a backup's time zone,
	// with the zone's offset.
	"localsec": func(t time.Time, zone string) string { return inZone(t, zone, "2006-01-02 15:04:05 -07:00") },
	// link builds a path with query parameters from name, value pairs,
	// each escaped: for attributes html/template does not treat as URLs
	// (hx-get) as well as for href.
	"link": func(p string, kv ...any) string {
		q := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			q.Add(fmt.Sprint(kv[i]), fmt.Sprint(kv[i+1]))
		}
		return p + "?" + q.Encode()
	},
}

// zoneCache holds the time zones pages showed times in, by IANA name.
var zoneCache sync.Map

// inZone formats t in the zone named zone (UTC when empty or unknown); a
// dash for the zero time.
func inZone(t time.Time, zone, layout string) string {
	if t.IsZero() {
		return "—"
	}
	if zone == "" {
		zone = "UTC"
	}
	v, ok := zoneCache.Load(zone)
	if !ok {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			loc = time.UTC
		}
		v, _ = zoneCache.LoadOrStore(zone, loc)
	}
	return t.In(v.(*time.Location)).Format(layout)
}

// parsePages parses every page: the layout and partials, each page's
// "content" on a clone of them.
func parsePages() map[string]*template.Template {
	base := template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html"))
	pages := map[string]*template.Template{}
	names, err := templateFS.ReadDir("templates")
	if err != nil {
		panic(err)
	}
	for _, e := range names {
		n := e.Name()
		if n == "layout.html" || n == "partials.html" {
			continue
		}
		t := template.Must(template.Must(base.Clone()).ParseFS(templateFS, "templates/"+n))
		pages[n[:len(n)-len(path.Ext(n))]] = t
	}
	return pages
}

// render writes a page whole, or its content alone for htmx. A template
// that fails is an internal error: logged, and a plain message sent.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page, title string, body any) {
	t, ok := c.pages[page]
	if !ok {
		panic("console: no template " + page)
	}
	d := pageData{Title: title, Fragment: isHTMX(r), HTMX: HTMX, Body: body, Here: "/backups"}
	if a := callerFrom(r).Account; a != "" {
		d.Account = a
		if c.DevClock != nil {
			d.Dev = &devView{Now: c.DevClock.Now(), Manual: c.DevClock.Manual()}
		}
		if r.Method == http.MethodGet {
			d.Here = r.URL.RequestURI()
		}
	}
	name := "layout"
	if d.Fragment {
		name = "content"
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, d); err != nil {
		c.Logger.Error("console template failed", "page", page, "error", err)
		http.Error(w, "internal error; the server log has the details", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError shows an error on a page of its own (or as content for
// htmx), with the status its kind maps to.
func (c *Console) renderError(w http.ResponseWriter, r *http.Request, err error) {
	c.render(w, r, errorStatus(err), "error", "Error", c.describe(r, err))
}
