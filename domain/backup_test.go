package domain_test

import (
	"errors"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

var (
	acct  = domain.NewAccountID(id(9))
	other = domain.NewAccountID(id(8))
	bkpID = domain.NewBackupID(id(7))
)

// backupWith builds a backup instance from its history, as the read model does.
func backupWith(t *testing.T, events ...domain.EventData) *domain.Backup {
	t.Helper()
	b := &domain.Backup{}
	for i, d := range events {
		b.Apply(domain.Event{Revision: uint64(i), Account: acct, OccurredAt: t0.Add(time.Duration(i) * time.Minute)}, d)
	}
	return b
}

func provisioned(days int) *domain.BackupCreated {
	d, err := domain.NewProvisionedBackup(bkpID, "cn-hangzhou", days, domain.Term{Months: 1}, t0)
	if err != nil {
		panic(err)
	}
	return d
}

func TestBackupLifecycleRules(t *testing.T) {
	kms := &domain.Instance{ID: domain.NewInstanceID(id(1)), Account: acct, Region: "cn-hangzhou"}
	foreign := &domain.Instance{ID: domain.NewInstanceID(id(2)), Account: other, Region: "cn-hangzhou"}
	elsewhere := &domain.Instance{ID: domain.NewInstanceID(id(3)), Account: acct, Region: "eu-central-1"}
	gone := &domain.Instance{ID: domain.NewInstanceID(id(4)), Account: acct, Region: "cn-hangzhou", Released: true}
	enabled := &domain.BackupEnabled{KMSInstance: kms.ID, Alias: "prod", TimeZone: "UTC"}
	def, _ := domain.NewDefaultBackup(bkpID, "cn-hangzhou")
	expiry := provisioned(10).ExpiresAt

	fresh := backupWith(t, provisioned(10))
	on := backupWith(t, provisioned(10), enabled)
	dflt := backupWith(t, def, enabled)
	expired := backupWith(t, provisioned(10), enabled, &domain.BackupExpired{})
	released := backupWith(t, provisioned(10), enabled, &domain.BackupExpired{}, &domain.BackupReleased{})

	cases := []struct {
		name string
		when func() (any, error)
		want error
	}{
		{"enable", func() (any, error) { return fresh.Enable(kms, "prod", "UTC", "") }, nil},
		{"enable twice", func() (any, error) { return on.Enable(kms, "prod", "UTC", "") }, domain.ErrFailedPrecondition},
		{"bind across accounts", func() (any, error) { return fresh.Enable(foreign, "prod", "UTC", "") }, domain.ErrNotFound},
		{"bind across regions", func() (any, error) { return fresh.Enable(elsewhere, "prod", "UTC", "") }, domain.ErrFailedPrecondition},
		{"bind a released KMS instance", func() (any, error) { return fresh.Enable(gone, "prod", "UTC", "") }, domain.ErrFailedPrecondition},
		{"second backup for one KMS instance", func() (any, error) { return fresh.Enable(kms, "b", "UTC", domain.NewBackupID(id(6))) }, domain.ErrAlreadyExists},
		{"enable without alias", func() (any, error) { return fresh.Enable(kms, "", "UTC", "") }, domain.ErrInvalidArgument},
		{"extend", func() (any, error) { return on.Extend(16) }, nil},
		{"extend downwards", func() (any, error) { return on.Extend(9) }, domain.ErrInvalidArgument},
		{"extend to the same", func() (any, error) { return on.Extend(10) }, domain.ErrInvalidArgument},
		{"extend past 600", func() (any, error) { return on.Extend(601) }, domain.ErrInvalidArgument},
		{"extend the default", func() (any, error) { return dflt.Extend(30) }, domain.ErrFailedPrecondition},
		{"extend an expired instance", func() (any, error) { return expired.Extend(30) }, domain.ErrFailedPrecondition},
		{"enable an expired instance", func() (any, error) { return expired.Enable(kms, "p", "UTC", "") }, domain.ErrFailedPrecondition},
		{"reset an expired instance", func() (any, error) { return expired.Reset() }, domain.ErrFailedPrecondition},
		{"view an expired instance", func() (any, error) { return nil, expired.Usable("list data") }, domain.ErrFailedPrecondition},
		{"renew an expired instance", func() (any, error) { return expired.Renew(domain.Term{Months: 1}, expiry.Add(time.Hour)) }, nil},
		{"renew a released instance", func() (any, error) { return released.Renew(domain.Term{Months: 1}, expiry) }, domain.ErrFailedPrecondition},
		{"renew the default", func() (any, error) { return dflt.Renew(domain.Term{Months: 1}, t0) }, domain.ErrFailedPrecondition},
		{"reset", func() (any, error) { return on.Reset() }, nil},
		{"reset a not-enabled instance", func() (any, error) { return fresh.Reset() }, domain.ErrFailedPrecondition},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.when()
			if c.want == nil && err != nil {
				t.Fatalf("want accepted, got %v", err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("want %v, got %v", c.want, err)
			}
		})
	}
}

func TestBackupCreationRules(t *testing.T) {
	for _, days := range []int{6, 601, 0} {
		if _, err := domain.NewProvisionedBackup(bkpID, "cn-hangzhou", days, domain.Term{Months: 1}, t0); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("viewable days %d accepted", days)
		}
	}
	for s, months := range map[string]int{"1mo": 1, "12mo": 12, "1y": 12, "2y": 24} {
		term, err := domain.ParseTerm(s)
		if err != nil || term.Months != months {
			t.Errorf("ParseTerm(%q) = %v, %v", s, term, err)
		}
	}
	for _, s := range []string{"", "0mo", "1d", "-1y", "6y", "mo"} {
		if _, err := domain.ParseTerm(s); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("ParseTerm(%q) accepted", s)
		}
	}
	d := provisioned(30)
	if want := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC); !d.ExpiresAt.Equal(want) {
		t.Fatalf("1mo from %s expires %s, want %s", t0, d.ExpiresAt, want)
	}
}

func TestExpiryRenewAndRelease(t *testing.T) {
	b := backupWith(t, provisioned(10), &domain.BackupEnabled{KMSInstance: "kms_x", Alias: "a"})
	if _, due := b.Expire(b.ExpiresAt.Add(-time.Second)); due {
		t.Fatal("expired early")
	}
	exp, due := b.Expire(b.ExpiresAt)
	if !due {
		t.Fatal("not expired at expiry")
	}
	b.Apply(domain.Event{Revision: 2, OccurredAt: b.ExpiresAt}, exp)
	if b.State != domain.StateExpired {
		t.Fatalf("state %s", b.State)
	}
	if _, ok := b.NextCheckpoint(time.UTC); ok {
		t.Fatal("an expired instance still schedules backups")
	}
	if _, due := b.Release(b.ExpiresAt.Add(domain.ReleaseAfterExpiry - time.Second)); due {
		t.Fatal("released before 15 days")
	}
	// Renewal reactivates it in the state it had, for a term from now.
	now := b.ExpiresAt.Add(48 * time.Hour)
	r, err := b.Renew(domain.Term{Months: 12}, now)
	if err != nil {
		t.Fatal(err)
	}
	b.Apply(domain.Event{Revision: 3, OccurredAt: now}, r)
	if b.State != domain.StateEnabled || !b.ExpiresAt.Equal(now.AddDate(1, 0, 0)) {
		t.Fatalf("after renew: state %s expires %s", b.State, b.ExpiresAt)
	}
	// A renewal before expiry extends from the current expiry.
	r2, _ := b.Renew(domain.Term{Months: 1}, now)
	if !r2.ExpiresAt.Equal(b.ExpiresAt.AddDate(0, 1, 0)) {
		t.Fatalf("early renewal expires %s", r2.ExpiresAt)
	}
	// Unrenewed, it is released 15 days after expiry, and its data generation ends.
	b2 := backupWith(t, provisioned(10), &domain.BackupEnabled{KMSInstance: "kms_x", Alias: "a"}, &domain.BackupExpired{})
	rel, due := b2.Release(b2.ExpiresAt.Add(domain.ReleaseAfterExpiry))
	if !due {
		t.Fatal("not released after 15 days")
	}
	gen := b2.Generation
	b2.Apply(domain.Event{Revision: 3}, rel)
	if b2.State != domain.StateReleased || b2.Generation != gen+1 {
		t.Fatalf("after release: %s gen %d", b2.State, b2.Generation)
	}
}

// runSchedule drives a backup instance's schedule from enable to end, taking
// every checkpoint when it is due, as a running engine would.
func runSchedule(t *testing.T, b *domain.Backup, loc *time.Location, end time.Time) (fulls []time.Time, incs int) {
	t.Helper()
	for i := 0; ; i++ {
		due, ok := b.NextCheckpoint(loc)
		if !ok || due.At.After(end) {
			return fulls, incs
		}
		c, err := b.Checkpoint(due, loc, b.NextRevision, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if c.PrevDigest != b.LastDigest || c.Seq != b.Checkpoints+1 {
			t.Fatal("checkpoint not chained")
		}
		b.Apply(domain.Event{Revision: uint64(10 + i), OccurredAt: due.At}, c)
		if c.Full {
			fulls = append(fulls, c.At)
		} else {
			incs++
		}
	}
}

func TestScheduleOver48Hours(t *testing.T) {
	enabledAt := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	b := &domain.Backup{}
	b.Apply(domain.Event{Account: acct, OccurredAt: enabledAt}, provisioned(10))
	b.Apply(domain.Event{Revision: 1, OccurredAt: enabledAt}, &domain.BackupEnabled{KMSInstance: "kms_x", Alias: "a"})
	fulls, incs := runSchedule(t, b, time.UTC, enabledAt.Add(48*time.Hour))
	want := []time.Time{enabledAt, time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 5, 3, 0, 0, 0, 0, time.UTC)}
	if len(fulls) != 3 || !fulls[0].Equal(want[0]) || !fulls[1].Equal(want[1]) || !fulls[2].Equal(want[2]) {
		t.Fatalf("fulls %v, want %v", fulls, want)
	}
	// Every 5 minutes between fulls: 14h30 on day 1 (174 slots, the last one
	// is the full at midnight), 24h on day 2 (287 + full), and 9h30 on day 3.
	wantIncs := (14*12 + 6 - 1) + (24*12 - 1) + (9*12 + 6)
	if incs != wantIncs {
		t.Fatalf("%d incrementals, want %d", incs, wantIncs)
	}
}

func TestScheduleFollowsTimeZone(t *testing.T) {
	shanghai := time.FixedZone("Asia/Shanghai", 8*3600)
	enabledAt := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	b := &domain.Backup{}
	b.Apply(domain.Event{Account: acct, OccurredAt: enabledAt}, provisioned(10))
	b.Apply(domain.Event{Revision: 1, OccurredAt: enabledAt}, &domain.BackupEnabled{KMSInstance: "kms_x", Alias: "a", TimeZone: "Asia/Shanghai"})
	fulls, _ := runSchedule(t, b, shanghai, enabledAt.Add(24*time.Hour))
	// Midnight in UTC+8 is 16:00 UTC.
	if len(fulls) != 2 || !fulls[1].Equal(time.Date(2026, 5, 1, 16, 0, 0, 0, time.UTC)) {
		t.Fatalf("fulls %v, want the second at 16:00 UTC", fulls)
	}
}

func TestCatchUpAfterDowntime(t *testing.T) {
	enabledAt := time.Date(2026, 5, 1, 23, 0, 0, 0, time.UTC)
	b := &domain.Backup{}
	b.Apply(domain.Event{Account: acct, OccurredAt: enabledAt}, provisioned(10))
	b.Apply(domain.Event{Revision: 1, OccurredAt: enabledAt}, &domain.BackupEnabled{KMSInstance: "kms_x", Alias: "a"})
	runSchedule(t, b, time.UTC, time.Date(2026, 5, 1, 23, 50, 0, 0, time.UTC))
	// Down from 23:50 to 00:20: the catch-up is today's missed full.
	up := time.Date(2026, 5, 2, 0, 20, 0, 0, time.UTC)
	due := b.CatchUp(up, time.UTC)
	if !due.Full || !due.At.Equal(up) {
		t.Fatalf("catch-up %+v", due)
	}
	c, err := b.Checkpoint(due, time.UTC, b.NextRevision+3, []domain.SlicePart{{Name: "blob", Digest: [32]byte{1}, Events: 3}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.From != b.NextRevision || c.Next != b.NextRevision+3 || c.Day != "2026-05-02" {
		t.Fatalf("catch-up checkpoint %+v", c)
	}
	b.Apply(domain.Event{Revision: 99, OccurredAt: up}, c)
	// Down again within the day: one incremental covers it.
	if due := b.CatchUp(up.Add(2*time.Hour), time.UTC); due.Full {
		t.Fatal("second catch-up of the day is a full")
	}
	// A rollback is refused.
	if _, err := b.Checkpoint(domain.Due{At: up.Add(time.Hour)}, time.UTC, b.NextRevision-1, nil, false); !errors.Is(err, domain.ErrFailedPrecondition) {
		t.Fatalf("rollback accepted: %v", err)
	}
}

// TestNoCheckpointAtOrAfterExpiry: a checkpoint due at or after the end of
// the term is not scheduled (the instance expires instead) and not taken.
func TestNoCheckpointAtOrAfterExpiry(t *testing.T) {
	b := backupWith(t, provisioned(10), &domain.BackupEnabled{KMSInstance: "kms_x", Alias: "a"})
	expiry := b.ExpiresAt
	// Schedule up to the last instant before the expiry.
	runSchedule(t, b, time.UTC, expiry)
	if last := b.LastIncremental; !last.Equal(expiry.Add(-5 * time.Minute)) {
		t.Fatalf("last checkpoint at %s, want 5 minutes before the expiry %s", last, expiry)
	}
	if due, ok := b.NextCheckpoint(time.UTC); ok {
		t.Fatalf("a checkpoint is scheduled at %s, at or after the expiry %s", due.At, expiry)
	}
	for _, at := range []time.Time{expiry, expiry.Add(time.Hour)} {
		if _, err := b.Checkpoint(domain.Due{At: at}, time.UTC, b.NextRevision, nil, false); !errors.Is(err, domain.ErrFailedPrecondition) {
			t.Fatalf("checkpoint at %s accepted: %v", at, err)
		}
	}
	if !b.ExpiredBy(expiry) || b.ExpiredBy(expiry.Add(-time.Nanosecond)) {
		t.Fatal("ExpiredBy is not the expiry instant")
	}
	// A catch-up after a renewal is scheduled again.
	r, err := b.Renew(domain.Term{Months: 1}, expiry)
	if err != nil {
		t.Fatal(err)
	}
	b.Apply(domain.Event{Revision: 100000, OccurredAt: expiry}, r)
	if due, ok := b.NextCheckpoint(time.UTC); !ok || !due.At.Equal(expiry) {
		t.Fatalf("after the renewal: %+v %v", due, ok)
	}
}

// TestTermIsCalendarMonthsClamped: a term ends on the same day of the
// month, or on the last day of a shorter month.
func TestTermIsCalendarMonthsClamped(t *testing.T) {
	at := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 10, 15, 0, 0, time.UTC) }
	for _, c := range []struct {
		months      int
		start, want time.Time
	}{
		{1, at(2026, 1, 31), at(2026, 2, 28)},
		{1, at(2028, 1, 31), at(2028, 2, 29)},
		{1, at(2026, 3, 31), at(2026, 4, 30)},
		{1, at(2026, 1, 15), at(2026, 2, 15)},
		{1, at(2026, 12, 31), at(2027, 1, 31)},
		{2, at(2026, 12, 31), at(2027, 2, 28)},
		{12, at(2028, 2, 29), at(2029, 2, 28)},
		{48, at(2028, 2, 29), at(2032, 2, 29)},
		{1, at(2026, 5, 1), at(2026, 6, 1)},
	} {
		if got := (domain.Term{Months: c.months}).After(c.start); !got.Equal(c.want) {
			t.Errorf("%d months after %s = %s, want %s", c.months, c.start.Format(time.RFC3339), got.Format(time.RFC3339), c.want.Format(time.RFC3339))
		}
	}
}

// TestReleaseDropsTheBinding: a released instance no longer names its KMS
// instance.
func TestReleaseDropsTheBinding(t *testing.T) {
	b := backupWith(t, provisioned(10), &domain.BackupEnabled{KMSInstance: "kms_x", Alias: "a", TimeZone: "UTC"},
		&domain.BackupSourceReleased{Next: 3, End: 5}, &domain.BackupExpired{}, &domain.BackupReleased{})
	if b.State != domain.StateReleased || b.KMSInstance != "" || b.SourceReleased.Recorded() {
		t.Fatalf("released: state %s, KMS instance %q, source released %+v", b.State, b.KMSInstance, b.SourceReleased)
	}
}

// TestEnableTakesTheRegionsZone: without a time zone, an instance counts its
// days in its region's; an alias is kept trimmed.
func TestEnableTakesTheRegionsZone(t *testing.T) {
	for region, want := range map[string]string{"cn-hangzhou": "Asia/Shanghai", "eu-central-1": "Europe/Berlin", "xx-nowhere-9": "UTC"} {
		d, err := domain.NewProvisionedBackup(bkpID, region, 10, domain.Term{Months: 1}, t0)
		if err != nil {
			t.Fatal(err)
		}
		b := backupWith(t, d)
		kms := &domain.Instance{ID: domain.NewInstanceID(id(1)), Account: acct, Region: region}
		e, err := b.Enable(kms, "  prod ", "", "")
		if err != nil || e.TimeZone != want || e.Alias != "prod" {
			t.Fatalf("%s: %+v, %v; want zone %s and alias prod", region, e, err, want)
		}
		if _, err := b.Enable(kms, "prod", "Local", ""); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Fatalf("%s: zone Local accepted: %v", region, err)
		}
	}
}
