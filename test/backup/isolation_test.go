package backup

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmsbackup/kmsbackup/adapters/console"
	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// sickBlobs is the real blob store, except that every write of one data
// ref fails until Heal is called: one backup instance's storage in
// trouble (a full volume, a bucket policy), nobody else's.
type sickBlobs struct {
	commands.BlobStore
	mu  sync.Mutex
	ref string
}

var _ commands.BlobStore = (*sickBlobs)(nil)

func (f *sickBlobs) PutBlob(ctx context.Context, ref, name string, data []byte) error {
	f.mu.Lock()
	failing := ref == f.ref
	f.mu.Unlock()
	if failing {
		return fmt.Errorf("put blob %s %s: injected failure of the blob store", ref, name)
	}
	return f.BlobStore.PutBlob(ctx, ref, name, data)
}

// Heal ends the failure.
func (f *sickBlobs) Heal() {
	f.mu.Lock()
	f.ref = ""
	f.mu.Unlock()
}

// slot is one checkpoint a schedule asks for.
type slot struct {
	At   time.Time
	Full bool
}

// scheduleFrom is every checkpoint of a backup instance in zone loc whose
// checkpoint first was taken, up to until: after each, an incremental 5
// minutes later, unless local midnight comes first, which is a full.
func scheduleFrom(first slot, until time.Time, loc *time.Location) []slot {
	out := []slot{first}
	for last := first.At; ; {
		l := last.In(loc)
		midnight := time.Date(l.Year(), l.Month(), l.Day()+1, 0, 0, 0, 0, loc)
		next := slot{last.Add(domain.IncrementalEvery), false}
		if !next.At.Before(midnight) {
			next = slot{midnight, true}
		}
		if next.At.After(until) {
			return out
		}
		out = append(out, next)
		last = next.At
	}
}

// slotsOf is the instants of checkpoints.
func slotsOf(cps []*domain.BackupCheckpointed) []slot {
	out := make([]slot, len(cps))
	for i, c := range cps {
		out[i] = slot{c.At, c.Full}
	}
	return out
}

// sameSlots reports the first difference between two schedules.
func sameSlots(got, want []slot) error {
	for i := range min(len(got), len(want)) {
		if !got[i].At.Equal(want[i].At) || got[i].Full != want[i].Full {
			return fmt.Errorf("checkpoint %d at %s (full %v), want %s (full %v)", i, got[i].At, got[i].Full, want[i].At, want[i].Full)
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d checkpoints, want %d", len(got), len(want))
	}
	return nil
}

func get(t *testing.T, c *http.Client, url string, cookie *http.Cookie, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestOneFailingBackupNeverStopsTheOthers runs a day of 100 backup
// instances of 10 accounts, in several time zones, beside one renewed after
// its KMS instance was released (which used to stop every backup) and one
// whose blob store fails for half a day. Every other checkpoint happens at
// its instant; the failing one is shown failing (show, the API's metrics,
// /readyz?verbose, the console) while /readyz stays ready, is retried with
// backoff and recorded failing once; healed, it catches up with one
// checkpoint at the retry instant and follows its schedule again.
func TestOneFailingBackupNeverStopsTheOthers(t *testing.T) {
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	e := NewEngine(t, start)
	ctx := context.Background()

	// The case found from outside: expired, its KMS instance released, renewed.
	relIn, _, renewed := e.provisioned1moEnabledBefore(e.Caller, "s1", time.Hour)
	e.Advance(2 * time.Hour) // past its expiry, 2026-06-01T09:30Z
	Must(e.KMS.CreateKey(ctx, e.Caller, relIn.ID, "after expiry"))
	Must(e.KMS.ReleaseInstance(ctx, e.Caller, relIn.ID))
	Must(e.Backups.RenewBackupInstance(ctx, e.Caller, renewed.ID, "1mo"))
	renewedBefore := len(e.CheckpointEvents(renewed.ID))
	day := e.Clock.Now() // 2026-06-01T10:30Z
	end := day.Add(24 * time.Hour)

	// 100 backup instances of 10 accounts, a time zone per account.
	zones := []string{"UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York", "Asia/Kolkata",
		"Australia/Eucla", "Pacific/Auckland", "America/Sao_Paulo", "Asia/Kathmandu", "Africa/Nairobi"}
	type healthy struct {
		id  domain.BackupID
		loc *time.Location
		in  domain.InstanceID
		c   commands.Caller
	}
	var all []healthy
	for a, zone := range zones {
		c := commands.Caller{Account: domain.NewAccountID(e.Backups.IDs.NewULID())}
		loc := Must(time.LoadLocation(zone))
		for range 10 {
			in := Must(e.KMS.CreateInstance(ctx, c, commands.CreateInstanceInput{Region: "cn-hangzhou"}))
			b := Must(e.Backups.CreateBackupInstance(ctx, c, commands.CreateBackupInput{Region: "cn-hangzhou", ViewableDays: 30, Term: "1y"}))
			b = Must(e.Backups.EnableBackupInstance(ctx, c, b.ID, commands.EnableInput{KMSInstance: in.ID, Alias: fmt.Sprint("a", a), TimeZone: zone}))
			all = append(all, healthy{b.ID, loc, in.ID, c})
		}
	}

	// The one whose storage fails, of an account with a token for the console.
	accounts := e.Accounts
	token := commands.NewToken()
	victimAcct := Must(accounts.EnsureAccount(ctx, "victim", token))
	vc := commands.Caller{Account: victimAcct.ID}
	vin := Must(e.KMS.CreateInstance(ctx, vc, commands.CreateInstanceInput{Region: "cn-hangzhou"}))
	victim := Must(e.Backups.CreateBackupInstance(ctx, vc, commands.CreateBackupInput{Region: "cn-hangzhou", ViewableDays: 30, Term: "1y"}))
	victim = Must(e.Backups.EnableBackupInstance(ctx, vc, victim.ID, commands.EnableInput{KMSInstance: vin.ID, Alias: "victim", TimeZone: "UTC"}))
	blobs := &sickBlobs{BlobStore: e.Storage.Blobs, ref: victim.DataRef()}
	e.Storage.Blobs = blobs

	// The API and the console, wired as the server wires them.
	reg := prometheus.NewRegistry()
	var ready []httpapi.ReadyCheck
	for _, p := range e.procs {
		ready = append(ready, httpapi.ReadyCheck{Name: "projection " + p.Name, Check: func(context.Context) error { return p.Healthy() }})
	}
	const metricsToken = "metrics-token-0123456789"
	api := &httpapi.Server{KMS: e.KMS, Backups: e.Backups, Days: e.Days, Checkpoints: e.Checkpoints, Files: e.Files, Auth: accounts, Registry: reg, Ready: ready, MetricsToken: metricsToken,
		BackupGauges: e.Backups.ScheduledBackups, BackupFailures: e.Backups.FailureTotals, FailingBackups: e.Backups.FailingBackups}
	apiSrv := httptest.NewServer(api.Handler())
	defer apiSrv.Close()
	web := &console.Console{Backups: e.Backups, Days: e.Days, Checkpoints: e.Checkpoints, Files: e.Files, Restores: e.Restores, KMS: e.KMS, Sessions: accounts, Now: e.Clock.Now}
	webSrv := httptest.NewServer(web.Handler())
	defer webSrv.Close()

	// An hour in, changes in the victim's KMS instance and in some others:
	// the victim's next checkpoint cannot store its slice.
	e.Advance(time.Hour)
	Must(e.KMS.CreateKey(ctx, vc, vin.ID, "cannot be stored"))
	for _, h := range all[:25] {
		Must(e.KMS.CreateKey(ctx, h.c, h.in, "busy"))
	}
	firstFailure := e.Clock.Now().Add(domain.IncrementalEvery)
	e.Advance(11 * time.Hour)

	// Half a day later it is shown failing, everywhere, with its reason.
	v := Must(e.Backups.ShowBackupInstance(vc, victim.ID))
	if f := v.Failing; !f.Active() || !f.Since.Equal(firstFailure) || f.Work != string(commands.WorkIncremental) ||
		!strings.Contains(f.Reason, "injected failure of the blob store") || f.Attempts < 100 {
		t.Fatalf("the victim's failing state: %+v; want failing since %s, over 100 attempts", f, firstFailure)
	}
	var failingEvents int
	for _, ev := range Must(e.Store.ReadStream(ctx, domain.BackupStream(victim.ID), 0, false, 100000)) {
		if ev.Type == domain.TypeBackupFailing {
			failingEvents++
		}
	}
	if failingEvents != 1 {
		t.Fatalf("%d BackupFailing events for %d failed attempts, want 1", failingEvents, v.Failing.Attempts)
	}
	if fb := Must(e.Backups.FailingBackups()); len(fb) != 1 || fb[0].ID != victim.ID {
		t.Fatalf("failing backups: %v", fb)
	}
	hc := apiSrv.Client()
	if code, body := get(t, hc, apiSrv.URL+"/readyz", nil); code != 200 || body != "ok\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	code, body := get(t, hc, apiSrv.URL+"/readyz?verbose", nil, "Authorization", "Bearer "+metricsToken)
	if code != 200 || !strings.Contains(body, "[+]projection backup-state ok\n") ||
		!strings.Contains(body, fmt.Sprintf("[!]backup %s of account %s failing since %s (incremental, ", victim.ID, vc.Account, firstFailure.Format(time.RFC3339))) ||
		!strings.Contains(body, "injected failure of the blob store") || !strings.HasSuffix(body, "readyz check passed\n") {
		t.Fatalf("/readyz?verbose: %d\n%s", code, body)
	}
	_, metrics := get(t, hc, apiSrv.URL+"/metrics", nil, "Authorization", "Bearer "+metricsToken)
	for _, want := range []string{
		fmt.Sprintf("kmsbackup_backup_failing{account=%q,backup=%q} 1\n", vc.Account, victim.ID),
		fmt.Sprintf("kmsbackup_backup_failing{account=%q,backup=%q} 0\n", all[0].c.Account, all[0].id),
		fmt.Sprintf("kmsbackup_backup_failing{account=%q,backup=%q} 0\n", e.Caller.Account, renewed.ID),
		fmt.Sprintf("kmsbackup_backup_failures_total{account=%q,backup=%q} %d\n", vc.Account, victim.ID, v.Failing.Attempts),
		fmt.Sprintf("kmsbackup_backup_failures_total{account=%q,backup=%q} 0\n", all[0].c.Account, all[0].id),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics does not say %q", want)
		}
	}
	showJSON := Must((&httpapi.Client{Base: apiSrv.URL, Token: token, HTTP: hc}).GetBackupInstance(ctx, string(victim.ID)))
	if showJSON.Failing == nil || showJSON.Failing.Attempts != v.Failing.Attempts || !showJSON.Failing.Since.Equal(firstFailure) {
		t.Fatalf("the API's backup instance: failing %+v", showJSON.Failing)
	}
	session := Must(accounts.StartSession(ctx, token))
	_, page := get(t, webSrv.Client(), webSrv.URL+"/backups", &http.Cookie{Name: console.CookieName, Value: session.Ref})
	if !strings.Contains(page, "Failing since") || !strings.Contains(page, "injected failure of the blob store") {
		t.Fatalf("the console's list does not show the failure:\n%s", page)
	}

	// Healed, it catches up at its next retry, then follows its schedule.
	blobs.Heal()
	healed := e.Clock.Now()
	e.Advance(12 * time.Hour)
	if e.Clock.Now() != end {
		t.Fatalf("the day ends at %s, want %s", e.Clock.Now(), end)
	}

	for _, h := range all {
		cps := e.CheckpointEvents(h.id)
		chainOK(t, cps)
		if err := sameSlots(slotsOf(cps), scheduleFrom(slot{day, true}, end, h.loc)); err != nil {
			t.Fatalf("backup %s in %s: %v", h.id, h.loc, err)
		}
	}
	vcps := e.CheckpointEvents(victim.ID)
	chainOK(t, vcps)
	var before, after []*domain.BackupCheckpointed
	for _, c := range vcps {
		if c.At.Before(firstFailure) {
			before = append(before, c)
		} else {
			after = append(after, c)
		}
	}
	if err := sameSlots(slotsOf(before), scheduleFrom(slot{day, true}, firstFailure.Add(-time.Second), time.UTC)); err != nil {
		t.Fatalf("the victim before it failed: %v", err)
	}
	catchUp := after[0]
	if !catchUp.At.After(healed) || catchUp.At.After(healed.Add(commands.RetryMax)) || catchUp.Full || catchUp.Next != before[len(before)-1].Next+1 {
		t.Fatalf("the catch-up %+v: want one incremental within %s of %s covering the key", catchUp, commands.RetryMax, healed)
	}
	if err := sameSlots(slotsOf(after), scheduleFrom(slot{catchUp.At, false}, end, time.UTC)); err != nil {
		t.Fatalf("the victim after it healed: %v", err)
	}
	if v := Must(e.Backups.ShowBackupInstance(vc, victim.ID)); v.Failing.Active() {
		t.Fatalf("still failing: %+v", v.Failing)
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, vc, victim.ID)); len(rep.Findings) != 0 {
		t.Fatalf("verify the victim: %+v", rep.Findings)
	}

	// The renewed one never failed and took its daily full only, copying
	// nothing (renewed the day it expired, it had 1 June's full already).
	r := Must(e.Backups.ShowBackupInstance(e.Caller, renewed.ID))
	rcps := e.CheckpointEvents(renewed.ID)[renewedBefore:]
	if r.Failing.Active() || !r.SourceReleased.Recorded() {
		t.Fatalf("the renewed one: failing %+v, source released %+v", r.Failing, r.SourceReleased)
	}
	if err := sameSlots(slotsOf(rcps), []slot{{time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC), true}}); err != nil {
		t.Fatalf("the renewed one: %v", err)
	}
	if rcps[0].From != rcps[0].Next {
		t.Fatalf("the renewed one copied revisions [%d, %d)", rcps[0].From, rcps[0].Next)
	}
	if _, body := get(t, hc, apiSrv.URL+"/readyz?verbose", nil); strings.Contains(body, "[!]") {
		t.Fatalf("/readyz?verbose still names a failing backup:\n%s", body)
	}
}

// TestUnreadableScheduleIsThatBackupsFailure: a backup instance whose
// schedule cannot even be planned (its time zone does not load here) fails
// alone, shown with its reason, while the other keeps its schedule; once
// the zone loads, it catches up with one checkpoint.
func TestUnreadableScheduleIsThatBackupsFailure(t *testing.T) {
	start := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	e := NewEngine(t, start)
	_, fine := e.EnabledBackup("UTC")
	_, lost := e.EnabledBackup("Asia/Shanghai")
	e.Restart()
	var mu sync.Mutex
	broken := true
	e.Backups.Zones = func(name string) (*time.Location, error) {
		mu.Lock()
		defer mu.Unlock()
		if broken && name == "Asia/Shanghai" {
			return nil, fmt.Errorf("unknown time zone %s", name)
		}
		return time.LoadLocation(name)
	}
	Must(e.Driver.Start(context.Background()))
	e.Advance(time.Hour)

	b := Must(e.Backups.ShowBackupInstance(e.Caller, lost.ID))
	if !b.Failing.Active() || b.Failing.Work != string(commands.WorkSchedule) || !strings.Contains(b.Failing.Reason, `time zone "Asia/Shanghai" is not a known IANA time zone`) {
		t.Fatalf("the backup in an unknown zone: %+v", b.Failing)
	}
	if err := sameSlots(slotsOf(e.CheckpointEvents(fine.ID)), scheduleFrom(slot{start, true}, e.Clock.Now(), time.UTC)); err != nil {
		t.Fatalf("the other backup: %v", err)
	}
	mu.Lock()
	broken = false
	mu.Unlock()
	healed := e.Clock.Now()
	e.Advance(time.Hour)
	cps := e.CheckpointEvents(lost.ID)
	chainOK(t, cps)
	if b := Must(e.Backups.ShowBackupInstance(e.Caller, lost.ID)); b.Failing.Active() {
		t.Fatalf("still failing: %+v", b.Failing)
	}
	catchUp := cps[1]
	if err := sameSlots(slotsOf(cps[1:]), scheduleFrom(slot{catchUp.At, false}, e.Clock.Now(), time.FixedZone("CST", 8*3600))); err != nil ||
		!catchUp.At.After(healed) || catchUp.At.After(healed.Add(commands.RetryMax)) {
		t.Fatalf("after the zone loads: catch-up at %s (healed %s): %v", catchUp.At, healed, err)
	}
}
