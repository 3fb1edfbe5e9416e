package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromium finds Debian's Chromium (make test installs it when missing).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: run `make test`, which installs it, or `apt-get install -y chromium`")
	return ""
}

// page drives one headless Chromium tab against a test server.
type page struct {
	t    *testing.T
	ctx  context.Context
	base string
}

// css is shorthand for a CSS selector.
type css = chromedp.CSS

// newPage starts Chromium (its own profile, downloads into downloads) and
// opens a tab; both go away when the test ends.
func newPage(t *testing.T, s *Server, downloads string) *page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1700, 900), chromedp.UserDataDir(t.TempDir()))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	// The first call starts the browser: no timeout on it, which would
	// stop the browser with it.
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads}); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return &page{t: t, ctx: ctx, base: "http://" + s.Addr}
}

// keys hides data keys and tokens from failure output.
var keys = regexp.MustCompile(`(kbk1|kmsb)_[A-Za-z0-9_-]+`)

// get runs one browser action for its value, failing the test with the
// page's text.
func get[T any](p *page, a chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.fail(err)
	}
	return v
}

func (p *page) fail(err error) {
	p.t.Helper()
	dctx, dcancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer dcancel()
	url, _ := chromedp.Run(dctx, chromedp.Location())
	text, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	p.t.Fatalf("browser: %v\nat %s:\n%s", err, url, keys.ReplaceAllString(text, "${1}_[hidden]"))
}

// run runs browser steps in order, failing the test with the page's text.
func (p *page) run(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	get(p, chromedp.Steps(steps...))
}

func (p *page) open(path string) { p.t.Helper(); p.run(chromedp.Navigate(p.base + path)) }

func (p *page) text(sel string) string { p.t.Helper(); return get(p, chromedp.Text(css(sel))) }

// dialog clicks what opens a dialog and waits for the dialog's form or
// content to be shown.
func (p *page) dialog(sel, waitFor string) {
	p.t.Helper()
	p.run(chromedp.Click(css(sel)), chromedp.WaitVisible(css("#dialog[open] "+waitFor)))
	p.labelled()
	p.accessible("the dialog of " + sel)
	// Keyboard users land in the dialog, on its first control.
	if !get(p, chromedp.Evaluate[bool](`document.getElementById("dialog").contains(document.activeElement)`)) {
		p.t.Fatal("the focus is not in the dialog it opened")
	}
}

// wantText fails unless the element's text contains every fragment.
func (p *page) wantText(sel string, fragments ...string) string {
	p.t.Helper()
	got := p.text(sel)
	for _, f := range fragments {
		if !strings.Contains(got, f) {
			p.t.Fatalf("%s says %q; want it to mention %q", sel, keys.ReplaceAllString(got, "${1}_[hidden]"), f)
		}
	}
	return got
}

// until waits until the element exists and its text contains fragment
// (a page that navigates keeps its old content for a moment), then checks
// the rest of the fragments.
func (p *page) until(sel, fragment string, more ...string) string {
	p.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e !== null && e.innerText.includes(%q) })()`, sel, fragment)
	deadline := time.Now().Add(30 * time.Second)
	for {
		// While the page navigates, evaluation may fail: try again.
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			p.wantText(sel, fragment) // fails with what the element says
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p.wantText(sel, append([]string{fragment}, more...)...)
}

// labelled fails when a form control on the page has no label, or a
// button no name: the console's forms must be usable with a screen reader.
func (p *page) labelled() {
	p.t.Helper()
	bad := get(p, chromedp.Evaluate[[]string](`[...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
		.filter(e => !e.labels || e.labels.length === 0).map(e => e.outerHTML)
		.concat([...document.querySelectorAll("button, a[href]")].filter(e => e.textContent.trim() === "").map(e => e.outerHTML))`))
	if len(bad) > 0 {
		p.t.Fatalf("controls without a label or name: %v", bad)
	}
}

// axeSource is axe-core (MPL-2.0, testdata/axe-LICENSE.txt), the
// accessibility engine browsers' developer tools use.
var axeSource = func() string {
	b, err := os.ReadFile("testdata/axe-4.14.1.min.js")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// accessible runs axe-core's WCAG 2.1 A and AA rules on the page as it
// stands (an open dialog included) and fails on any violation.
func (p *page) accessible(what string) {
	p.t.Helper()
	if !get(p, chromedp.Evaluate[bool](`typeof axe !== "undefined"`)) {
		get(p, chromedp.Evaluate[chromedp.Void](axeSource+";true"))
	}
	type result struct {
		Passes     int      `json:"passes"`
		Violations []string `json:"violations"`
	}
	r := get(p, chromedp.Evaluate[result](`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
		.then(r => ({passes: r.passes.length, violations: r.violations.map(v => v.id + " (" + v.impact + "): " + v.help + ": " +
			v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "))}))`, chromedp.EvalAwaitPromise))
	if r.Passes < 5 {
		p.t.Fatalf("%s: axe checked only %d rules: it did not run", what, r.Passes)
	}
	if len(r.Violations) > 0 {
		p.t.Errorf("%s: accessibility violations:\n%s", what, strings.Join(r.Violations, "\n"))
	}
}

// newDocument runs a step that loads a new document (a navigation or a
// reload) and waits until the new one has loaded.
func (p *page) newDocument(step chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	p.run(chromedp.Evaluate[chromedp.Void](`window.kmsbackupOldDocument = true`), step)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		fresh, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.kmsbackupOldDocument !== true && document.readyState === "complete"`))
		cancel()
		if err == nil && fresh {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatal("no new document was loaded")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot saves the page to KMSBACKUP_SCREENSHOTS/name.png when that
// variable names a directory (the docs' screenshots are made this way).
func (p *page) screenshot(name string) {
	p.t.Helper()
	dir := os.Getenv("KMSBACKUP_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := get(p, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// TestConsoleInBrowser drives the web console in headless Chromium through
// what an operator does: sign in, create and enable a backup instance, see
// data appear as the dev clock moves, browse tabs and days, restore a
// deleted key (and see the conflict finding when it exists), download a
// day with its key shown once, and upload the file with a wrong key and
// the right one. Descriptions and aliases holding HTML are shown as text.
func TestConsoleInBrowser(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	const html = `<img src=x id=injected onerror="document.title='pwned'">`
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	other := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "payments "+html), "id")
	s.MustJSON(tok, "kms", "secret", "create", "db-password", "--instance", inst, "--key", key, "--value", "hunter2")

	downloads := t.TempDir()
	p := newPage(t, s, downloads)

	// Sign in: a wrong token is refused with a message; the right one
	// leaves a Secure, HttpOnly, SameSite=Strict cookie.
	p.open("/")
	p.run(chromedp.WaitVisible(css("#token")))
	p.run(chromedp.SendKeys(css("#token"), "kmsb_wrong"), chromedp.Submit(css("#token")),
		chromedp.WaitVisible(css(".problem")))
	p.wantText(".problem", "not valid")
	p.run(chromedp.SetValue(css("#token"), tok), chromedp.Submit(css("#token")),
		chromedp.WaitVisible(css("#backups")))
	cookies := get(p, func(ctx context.Context, t *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{})
	}).Cookies
	if len(cookies) != 1 || cookies[0].Name != "kmsbackup_session" || !cookies[0].HTTPOnly || !cookies[0].Secure ||
		cookies[0].SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie: %d cookies, first %+v", len(cookies), describeCookie(cookies))
	}
	if !get(p, chromedp.Evaluate[bool](`!document.cookie.includes("kmsbackup_session")`)) {
		t.Fatal("the session cookie is readable from JavaScript")
	}

	// Create a provisioned instance in the dialog.
	p.dialog(`a[href="/backups/new"]`, "#region")
	p.run(chromedp.SetValue(css("#region"), "cn-hangzhou"), chromedp.SetValue(css("#viewable_days"), "10"),
		chromedp.SetValue(css("#term"), "1y"), chromedp.Click(css(`#dialog button[type=submit]`)))
	bkp := strings.TrimSuffix(strings.Fields(p.until(".notice", "Created backup instance"))[3], ".")
	row := "#row-" + bkp
	p.wantText(row, "provisioned", "not-enabled", "cn-hangzhou", "10")

	// Enable it for the KMS instance, with an alias holding HTML.
	p.dialog(`a[aria-label="Enable `+bkp+`"]`, "#kms_instance")
	p.run(chromedp.SetValue(css("#kms_instance"), inst), chromedp.SetValue(css("#alias"), "pay "+html),
		chromedp.Click(css(`#dialog button[type=submit]`)))
	p.until(".notice", "Enabled backup instance", bkp)
	// Enabled in its region's zone: times in Asia/Shanghai, with the offset.
	p.wantText(row, "enabled", inst, "pay "+html, "2026-05-01 17:30 +08:00")

	// The first full backup is there at once; a key created now appears in
	// the incremental keys after the dev clock passes the next 5 minutes.
	k2 := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "later"), "id")
	p.run(chromedp.Click(css(`a[aria-label="View data `+bkp+`"]`)), chromedp.WaitVisible(css("#day")))
	p.wantText("#items", key, "payments "+html)
	p.run(chromedp.Click(css(`nav.tabs a[href$="tab=incremental-keys"]`)))
	p.until("#tab-title", "Incremental keys of 2026-05-01")
	p.wantText("main", "Nothing in this list for 2026-05-01")
	p.run(chromedp.Click(css(`.devbar button[value="5m"]`)))
	p.until("#dev-clock", "2026-05-01 09:35:00 UTC")
	p.until("#items", k2, "later")
	p.wantText("#tab-title", "Incremental keys of 2026-05-01")

	// Tabs and days: a new day, a deletion, the deleted tab; the older day
	// still shows what it held.
	s.MustJSON(tok, "dev", "clock", "advance", "24h")
	if r := s.CLI(tok, "", "kms", "key", "delete", k2); r.Code != 0 {
		t.Fatalf("delete key: %s", r.Stderr)
	}
	s.MustJSON(tok, "dev", "clock", "advance", "5m")
	p.open("/backups/" + bkp + "/data?tab=deleted")
	days := get(p, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#day option")].map(o => o.value)`))
	if strings.Join(days, ",") != "2026-05-02,2026-05-01" {
		t.Fatalf("day picker offers %v, want the two viewable days, newest first", days)
	}
	p.wantText("#tab-title", "Deleted of 2026-05-02")
	p.wantText("#items", k2)
	// Choosing a day shows it at once (the picker submits itself on change).
	p.run(chromedp.SetValue(css("#day"), "2026-05-01"))
	p.until("#tab-title", "Deleted of 2026-05-01")
	p.wantText("main", "Nothing in this list")
	p.run(chromedp.Click(css(`nav.tabs a[href$="tab=full-secrets"]`)))
	p.until("#tab-title", "Full secrets of 2026-05-01")
	p.wantText("#items", "db-password", key)
	if current := get(p, chromedp.Evaluate[string](`document.querySelector("nav.tabs a[aria-current=page]").textContent`)); current != "Full secrets" {
		t.Fatalf("the current tab is %q", current)
	}

	// Restore the deleted key: the plan first, then the result and its
	// validation.
	p.open("/backups/" + bkp + "/data?day=2026-05-02&tab=deleted")
	p.dialog(`a[aria-label="Restore key `+k2+`"]`, "#to_instance")
	p.run(chromedp.SetValue(css("#to_instance"), inst), chromedp.Click(css(`#dialog button[type=submit]`)),
		chromedp.WaitVisible(css(`#dialog .ok`)))
	p.wantText("#dialog", "The plan is ready", k2, "planned")
	p.run(chromedp.Click(css(`#dialog button[type=submit]`)), chromedp.WaitVisible(css("#dialog[open] #validation")))
	p.wantText("#dialog", "Restored 1 item", "Passed")
	if got := str(t, s.MustJSON(tok, "kms", "key", "show", k2), "id"); got != k2 {
		t.Fatalf("restored key: %s", got)
	}
	// Restoring it into another instance of the region: the plan names the
	// conflict and offers no apply.
	// Closing the dialog reloads the page, which the restore changed.
	p.newDocument(chromedp.Click(css(`#dialog [data-close]`)))
	p.until("#tab-title", "Deleted of 2026-05-02")
	p.dialog(`a[aria-label="Restore key `+k2+`"]`, "#to_instance")
	p.run(chromedp.SetValue(css("#to_instance"), other), chromedp.Click(css(`#dialog button[type=submit]`)),
		chromedp.WaitVisible(css(`#dialog .findings`)))
	p.wantText("#dialog .findings", "cannot be applied", "key-exists", k2)
	if get(p, chromedp.Evaluate[int](`document.querySelectorAll('#dialog form[action$="/restore/apply"]').length`)) != 0 {
		t.Fatal("a plan with findings offers to apply")
	}
	p.run(chromedp.Click(css(`#dialog [data-close]`)), chromedp.WaitNotVisible(css("#dialog")))

	// Download a day: the key is shown once, the file arrives once.
	p.open("/backups")
	p.dialog(`a[aria-label="Download `+bkp+`"]`, "#download-day")
	p.run(chromedp.SetValue(css("#download-day"), "2026-05-01"), chromedp.Click(css(`#dialog button[type=submit]`)),
		chromedp.WaitVisible(css("#data-key")))
	p.wantText("#dialog", "shown only this once", "cannot be shown again")
	p.accessible("the data key dialog")
	dataKey := get(p, chromedp.Value(css("#data-key")))
	link := get(p, chromedp.AttributeValue(css("#download-file"), "href")).Value
	if !strings.HasPrefix(dataKey, "kbk1_") {
		t.Fatal("the dialog does not show a data key")
	}
	p.run(chromedp.Click(css("#copy-key")))
	p.until("#copy-status", ".") // "Copied.", or a way to copy by hand
	p.run(chromedp.Click(css("#download-file")))
	file := waitForFile(t, downloads, ".kmsbk")
	// Closing and opening the dialog again shows the form, not the key;
	// the link is spent.
	p.run(chromedp.Click(css(`#dialog [data-close]`)), chromedp.WaitNotVisible(css("#dialog")))
	p.dialog(`a[aria-label="Download `+bkp+`"]`, "#download-day")
	if strings.Contains(get(p, chromedp.OuterHTML(css("#dialog"))), dataKey) {
		t.Fatal("the data key is shown a second time")
	}
	p.open(link)
	p.wantText("main", "used already")

	// Upload with a wrong key: refused in the dialog, nothing listed; with
	// the right key: listed as an upload whose data can be viewed.
	wrong := "kbk1_" + strings.Repeat("A", 43)
	p.open("/backups")
	p.dialog(`a[href="/uploads/new"]`, "#upload-file")
	p.run(chromedp.SetValue(css("#upload-name"), "before "+html), chromedp.SetValue(css("#upload-key"), wrong),
		chromedp.SetUploadFiles(css("#upload-file"), []string{file}), chromedp.Click(css(`#dialog button[type=submit]`)),
		chromedp.WaitVisible(css("#dialog .problem")))
	p.wantText("#dialog .problem", "cannot be opened with this data key")
	p.accessible("the upload dialog with its error")
	if rows := get(p, chromedp.Evaluate[int](`document.querySelectorAll("#backups tbody tr").length`)); rows != 2 {
		t.Fatalf("%d rows after a refused upload, want 2 (the default and the provisioned instance)", rows)
	}
	p.run(chromedp.SetValue(css("#upload-key"), dataKey), chromedp.SetUploadFiles(css("#upload-file"), []string{file}),
		chromedp.Click(css(`#dialog button[type=submit]`)))
	up := strings.TrimSuffix(strings.Fields(p.until(".notice", "Uploaded the file as"))[4], ".")
	p.wantText("#row-"+up, "upload", "before "+html, "2026-05-01", "uploaded")
	p.run(chromedp.Click(css(`a[aria-label="View data ` + up + `"]`)))
	p.until("h1", "Data of "+up)
	p.wantText("#items", key, "payments "+html)
	p.labelled()
	p.open("/backups")
	p.dialog(`a[aria-label="Delete `+up+`"]`, "button.danger")
	p.wantText("#dialog", "destroys the uploaded data")
	p.run(chromedp.Click(css("#dialog button.danger")))
	p.until(".notice", "Deleted upload", up)
	if n := get(p, chromedp.Evaluate[int](`document.querySelectorAll("#row-`+up+`").length`)); n != 0 {
		t.Fatal("a deleted upload is still listed")
	}

	// Nothing injected anywhere: the HTML stayed text.
	injected := get(p, chromedp.Evaluate[bool](`document.getElementById("injected") !== null`))
	if title := get(p, chromedp.Title()); injected || title == "pwned" {
		t.Fatal("HTML from a key description was rendered as markup")
	}

	// The data key was shown once and kept nowhere: not in the server's
	// output, its files (the spool included) or its database.
	assertNowhere(t, s, map[string][]byte{"the data key": []byte(dataKey), "the secret value": []byte("hunter2")})
}

func describeCookie(cs []*network.Cookie) string {
	if len(cs) == 0 {
		return "none"
	}
	c := cs[0]
	return c.Name + " httpOnly=" + boolString(c.HTTPOnly) + " secure=" + boolString(c.Secure) + " sameSite=" + c.SameSite.String()
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// waitForFile waits for a finished download with the suffix in dir.
func waitForFile(t *testing.T, dir, suffix string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		es, _ := os.ReadDir(dir)
		for _, e := range es {
			if strings.HasSuffix(e.Name(), suffix) {
				return filepath.Join(dir, e.Name())
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %s file was downloaded into %s", suffix, dir)
	return ""
}

// TestConsoleWithoutJavaScript reads the console with JavaScript off: the
// list, the data page, its tabs and its day picker all work as plain pages.
func TestConsoleWithoutJavaScript(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "eu-central-1"), "id")
	key := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "first"), "id")
	def := items(t, s.MustJSON(tok, "backup-instance", "list"))[0]["id"].(string)
	s.MustJSON(tok, "backup-instance", "enable", def, "--kms-instance", inst, "--alias", "plain")
	s.MustJSON(tok, "dev", "clock", "advance", "24h")
	k2 := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "second"), "id")
	s.MustJSON(tok, "dev", "clock", "advance", "5m")

	p := newPage(t, s, t.TempDir())
	p.run(func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, t, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return chromedp.Void{}, err
	})
	p.open("/backups")
	p.run(chromedp.WaitVisible(css("#token")), chromedp.SetValue(css("#token"), tok),
		chromedp.Submit(css("#token")), chromedp.WaitVisible(css("#backups")))
	p.wantText("#row-"+def, "default", "enabled", "plain", inst)
	p.run(chromedp.Click(css(`a[aria-label="View data ` + def + `"]`)))
	p.until("#tab-title", "Full keys of 2026-05-02")
	p.wantText("#items", key)
	p.run(chromedp.Click(css(`nav.tabs a[href$="tab=incremental-keys"]`)))
	p.until("#tab-title", "Incremental keys of 2026-05-02")
	p.wantText("#items", k2, "second")
	// Choose the day through the DOM alone (scripts are off in the page).
	p.run(chromedp.RemoveAttribute(css(`#day option[selected]`), "selected"),
		chromedp.SetAttributeValue(css(`#day option[value="2026-05-01"]`), "selected", ""),
		chromedp.Click(css(".daypicker button")))
	p.until("#tab-title", "Incremental keys of 2026-05-01")
	// A dialog's link is a page of its own without JavaScript: a restore
	// goes form, plan, result as three pages.
	dr := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "eu-west-1"), "id")
	p.open("/backups/" + def + "/data?day=2026-05-02&tab=incremental-keys")
	p.run(chromedp.Click(css(`a[aria-label="Restore key ` + k2 + `"]`)))
	p.until("h1", "Restore from "+def)
	p.run(chromedp.RemoveAttribute(css(`#to_instance option[selected]`), "selected"),
		chromedp.SetAttributeValue(css(`#to_instance option[value="`+dr+`"]`), "selected", ""),
		chromedp.RemoveAttribute(css(`#to_region option[selected]`), "selected"),
		chromedp.SetAttributeValue(css(`#to_region option[value="eu-west-1"]`), "selected", ""),
		chromedp.Click(css(`main button[type=submit]`)))
	p.until("h1", "Restore plan")
	p.wantText("main", "The plan is ready", k2)
	p.run(chromedp.Click(css(`main button[type=submit]`)))
	p.until("h1", "Restore applied")
	p.wantText("#validation", "Passed")
	if got := str(t, s.MustJSON(tok, "kms", "key", "show", k2, "--region", "eu-west-1"), "instance"); got != dr {
		t.Fatalf("the key restored without JavaScript is in %s, want %s", got, dr)
	}
	// And a download shows its key on a page of its own.
	p.open("/backups")
	p.run(chromedp.Click(css(`a[aria-label="Download ` + def + `"]`)))
	p.until("h1", "Download from")
	p.wantText("#download-day", "2026-05-02", "2026-05-01")
	p.run(chromedp.Click(css(`main button[type=submit]`)))
	p.until("main", "shown only this once")
	if !strings.HasPrefix(get(p, chromedp.Value(css("#data-key"))), "kbk1_") {
		t.Fatal("no data key on the download page")
	}
}

// TestConsoleTour walks the README's console tour on tidy data and checks
// each of the three main pages; with KMSBACKUP_SCREENSHOTS set it saves
// them (make screenshots writes docs/img this way).
func TestConsoleTour(t *testing.T) {
	s := StartServer(t, "", "--clock", "manual", "--clock-start", "2026-05-01T09:30:00Z")
	tok := s.DevTok
	inst := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	eu := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", "eu-central-1"), "id")
	pay := str(t, s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "payments card data"), "id")
	s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "session tokens")
	s.MustJSON(tok, "kms", "secret", "create", "db-password", "--instance", inst, "--key", pay, "--value", "s3cret")
	bkp := str(t, s.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "30", "--term", "1y"), "id")
	s.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "payments-prod", "--time-zone", "Asia/Shanghai")
	// Three minutes after the first full (09:30), before the next
	// incremental (09:35): a restore at 09:30 or 09:32 predates it.
	s.MustJSON(tok, "dev", "clock", "advance", "3m")
	s.MustJSON(tok, "kms", "key", "rotate", pay)
	s.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "webhook signing")
	s.MustJSON(tok, "dev", "clock", "advance", "24h")
	if r := s.CLI(tok, "", "kms", "secret", "delete", "db-password"); r.Code != 0 {
		t.Fatalf("delete secret: %s", r.Stderr)
	}
	s.MustJSON(tok, "dev", "clock", "advance", "10m")

	p := newPage(t, s, t.TempDir())
	p.open("/signin")
	p.accessible("sign-in page")
	p.run(chromedp.SetValue(css("#token"), tok), chromedp.Submit(css("#token")))
	p.until("h1", "Backup instances and uploads")
	p.accessible("backup management page")
	p.wantText("#row-"+bkp, "payments-prod", "provisioned", "enabled", inst, "30", "2026-05-02 17:40 +08:00")
	p.screenshot("console-backups")

	p.open("/backups/" + bkp + "/data?tab=full-keys&day=2026-05-01")
	p.wantText("#items", pay, "payments card data", "session tokens")
	p.accessible("data page")
	p.screenshot("console-data")
	// Another day, then what changed between the two.
	p.run(chromedp.SetValue(css("#day"), "2026-05-02"))
	p.until("#tab-title", "Full keys of 2026-05-02")
	p.run(chromedp.Click(css(`form[action$="/diff"] button`)))
	p.until("h1", "Changes of "+bkp)
	p.wantText("h1", "from the end of 2026-05-01 to the end of 2026-05-02")
	p.wantText("#changes", "deleted", "db-password")
	p.accessible("changes page")

	p.open("/backups/" + bkp + "/data?tab=deleted")
	p.wantText("#tab-title", "Deleted of 2026-05-02")
	p.dialog(`a[aria-label="Restore secret db-password"]`, "#to_instance")
	p.run(chromedp.Click(css(`#dialog button[type=submit]`)), chromedp.WaitVisible(css(`#dialog .ok`)))
	p.wantText("#dialog", "The plan is ready", "db-password", "planned")
	p.accessible("restore plan dialog")
	p.screenshot("console-restore")

	// Everything of a day, copied into another region.
	p.open("/backups/" + bkp + "/data?day=2026-05-01")
	p.dialog(`a[href$="/restore?day=2026-05-01&all=1"]`, "#to_instance")
	p.wantText("#dialog", "everything")
	p.run(chromedp.SetValue(css("#to_region"), "eu-central-1"), chromedp.SetValue(css("#to_instance"), eu),
		chromedp.Click(css(`#dialog button[type=submit]`)), chromedp.WaitVisible(css(`#dialog .ok`)))
	p.wantText("#dialog", "The plan is ready", pay, "db-password")
	p.run(chromedp.Click(css(`#dialog button[type=submit]`)), chromedp.WaitVisible(css("#dialog[open] #validation")))
	p.wantText("#dialog", "Restored 4 items", "into "+eu, "Passed")

	// A point in time: the day's first backup, before the key's rotation.
	p.open("/backups/" + bkp + "/data?day=2026-05-01&tab=rotated-keys")
	p.dialog(`a[aria-label="Restore key `+pay+`"]`, "#at")
	points := get(p, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#at option")].map(o => o.textContent)`))
	if len(points) < 3 || points[0] != "the day's last backup" || !strings.Contains(points[1], "full backup") {
		t.Fatalf("points in time offered: %q", points)
	}
	// planVersions plans the key's restore at a point chosen in field (none:
	// the whole day) and returns the versions the plan offers; the dialog
	// stays open.
	planVersions := func(field, value string) string {
		if field != "" {
			p.run(chromedp.SetValue(css(field), value))
		}
		p.run(chromedp.Click(css(`#dialog button[type=submit]`)), chromedp.WaitVisible(css(`#dialog .plan-items`)))
		return get(p, chromedp.Text(css(`#dialog .plan-items tbody td:nth-of-type(2)`)))
	}
	closeDialog := func() { p.run(chromedp.Click(css(`#dialog [data-close]`)), chromedp.WaitNotVisible(css("#dialog"))) }
	if v := planVersions("#at", "2026-05-01T09:30:00Z"); v != "1" {
		t.Fatalf("restoring at the first backup offers %s versions of the key, want 1 (it was rotated after)", v)
	}
	p.wantText("#dialog", "backup state at 2026-05-01 09:30:00 UTC")
	closeDialog()
	p.dialog(`a[aria-label="Restore key `+pay+`"]`, "#at")
	if v := planVersions("", ""); v != "2" {
		t.Fatalf("restoring the day's last backup offers %s versions of the key, want 2", v)
	}
	closeDialog()
	// Any instant of the day, typed in: the state of every change at or
	// before it.
	p.dialog(`a[aria-label="Restore key `+pay+`"]`, "#at_instant")
	if v := planVersions("#at_instant", "2026-05-01T09:32:00Z"); v != "1" {
		t.Fatalf("restoring at 09:32 offers %s versions of the key, want 1", v)
	}
	p.wantText("#dialog", "backup state at 2026-05-01 09:32:00 UTC")
	closeDialog()

	// Verify the whole chain from its row.
	row := "#row-" + bkp
	p.open("/backups")
	p.labelled()
	p.dialog(`a[aria-label="Verify `+bkp+`"]`, "button[type=submit]")
	p.run(chromedp.Click(css(`#dialog button[type=submit]`)))
	p.until("#dialog", "Sound.")
	p.accessible("the verify result")
	p.run(chromedp.Click(css(`#dialog [data-close]`)), chromedp.WaitNotVisible(css("#dialog")))

	// The rest of a row's life: extend, renew, reset with its confirmation.
	p.dialog(`a[aria-label="Extend `+bkp+`"]`, "#viewable_days")
	// Viewable days never go down: the field says so (min), and the server
	// too when the field's check is bypassed.
	p.run(chromedp.RemoveAttribute(css("#viewable_days"), "min"), chromedp.SetValue(css("#viewable_days"), "20"),
		chromedp.Click(css(`#dialog button[type=submit]`)))
	p.until("#dialog .problem", "Error")
	p.run(chromedp.SetValue(css("#viewable_days"), "60"), chromedp.Click(css(`#dialog button[type=submit]`)))
	p.until(".notice", "Extended the viewable days of", bkp)
	p.wantText(row, "60")
	p.dialog(`a[aria-label="Renew `+bkp+`"]`, "#term")
	p.run(chromedp.SetValue(css("#term"), "2y"), chromedp.Click(css(`#dialog button[type=submit]`)))
	p.until(".notice", "Renewed", bkp)
	p.wantText(row, "2029-05-01 17:30 +08:00")
	p.dialog(`a[aria-label="Reset `+bkp+`"]`, "#confirm")
	p.wantText("#dialog", "destroys", "every full and incremental backup of "+bkp, inst, "cannot", "payments-prod")
	p.run(chromedp.Click(css(`#dialog button.danger`)))
	// The box is required: the browser does not send the form unticked.
	if get(p, chromedp.Evaluate[bool](`document.querySelector("#confirm").validity.valueMissing`)) != true {
		t.Fatal("the reset form can be sent without ticking the confirmation")
	}
	p.run(chromedp.Click(css("#confirm")), chromedp.Click(css(`#dialog button.danger`)))
	p.until(".notice", "Reset backup instance", bkp)
	p.wantText(row, "not-enabled")
	p.wantText(row+" td.actions", "Enable")
}
