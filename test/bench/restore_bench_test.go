package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// peakHeap samples the heap while fn runs and returns fn's duration and
// the peak heap in use above what was in use before (after one collection).
func peakHeap(fn func() error) (time.Duration, uint64, error) {
	u, err := heapPeaks(fn, 1)
	return u.took, u.inuse, err
}

// BenchmarkRestoreToDay measures, in one run, restoring everything of a
// day at the end of 30 days of history (100k keys and secrets, 1% of the
// keys rotated every day, the last day with its 288 slices) against
// replaying the instance's whole log from the start. Both read every item
// with every version and open every key version's material; neither writes.
// It also reports the rate of an applied restore (the writes: one synced
// event and one audit record per item).
func BenchmarkRestoreToDay(b *testing.B) {
	const (
		nKeys    = 90_000
		nSecrets = 10_000
		days     = 30
		churn    = nKeys / 100
	)
	ctx := context.Background()
	start := time.Date(2026, 5, 1, 0, 0, 30, 0, time.UTC)
	e, err := openEngine(b.TempDir(), start)
	if err != nil {
		b.Fatal(err)
	}
	defer e.close()
	buildStart := time.Now()
	in0, err := e.KMS.CreateInstance(ctx, e.caller, commands.CreateInstanceInput{Region: region, KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota})
	if err != nil {
		b.Fatal(err)
	}
	k := newKeys(e, in0, 42)
	for len(k.ids) < nKeys {
		for range min(nKeys-len(k.ids), 5000) {
			if err := k.create(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if err := k.flush(ctx); err != nil {
			b.Fatal(err)
		}
		e.clock.Advance(time.Second)
	}
	if err := e.settle(ctx); err != nil {
		b.Fatal(err)
	}
	for i := range nSecrets {
		if _, err := e.KMS.CreateSecret(ctx, e.caller, commands.CreateSecretInput{Name: fmt.Sprintf("secret-%05d", i),
			Instance: k.in.ID, Key: k.ids[k.randomLive()], Value: domain.Plaintext("value")}); err != nil {
			b.Fatal(err)
		}
	}
	bkp, err := e.enableBackup(ctx, k.in.ID)
	if err != nil {
		b.Fatal(err)
	}
	// The KMS's read model now knows the secrets' events: continue the
	// stream from its head.
	in, err := e.KMS.ShowInstance(e.caller, k.in.ID)
	if err != nil {
		b.Fatal(err)
	}
	k.rev = in.Revision
	for range days {
		for range churn {
			if err := k.rotate(ctx, k.randomLive()); err != nil {
				b.Fatal(err)
			}
		}
		if err := k.flush(ctx); err != nil {
			b.Fatal(err)
		}
		if _, _, err := e.driver.Advance(ctx, 24*time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.compact(); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d keys, %d secrets, %d days in %s", nKeys, nSecrets, days, time.Since(buildStart).Round(time.Second))
	day := string(domain.DayOf(e.clock.Now().Add(-time.Hour), time.UTC))
	rs := e.Restores
	target, err := e.KMS.CreateInstance(ctx, e.caller, commands.CreateInstanceInput{Region: "eu-bench-1", KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota})
	if err != nil {
		b.Fatal(err)
	}

	// Restore read: the plan (every item as it stood within the day), then
	// every version of every item, key material opened.
	var items, versions int
	restoreRead := func() (err error) {
		items, versions, err = readWholeDay(ctx, rs, e.caller, bkp, domain.Day(day), target.ID)
		return err
	}
	// Genesis replay: every event of the KMS stream from revision 0,
	// decoded, key material opened, state with versions built.
	var replayed int
	replay := func() (err error) {
		replayed, err = genesisReplay(ctx, e, domain.KMSStream(k.in.ID), math.MaxUint64)
		return err
	}

	type phase struct {
		run  func() error
		took []time.Duration
		peak uint64
	}
	phases := [2]*phase{{run: restoreRead}, {run: replay}}
	// At least 3 alternating rounds per call, so that one call outlasts
	// -benchtime and the minutes of set-up above run once.
	b.ResetTimer()
	for i := range max(b.N, 3) {
		for j := range phases {
			ph := phases[(i+j)%2] // alternate which goes first
			d, m, err := peakHeap(ph.run)
			if err != nil {
				b.Fatal(err)
			}
			ph.took, ph.peak = append(ph.took, d), max(ph.peak, m)
		}
	}
	b.StopTimer()
	r, p := medianDur(phases[0].took), medianDur(phases[1].took)
	rm, pm := phases[0].peak, phases[1].peak
	b.ReportMetric(r.Seconds(), "restore_s")
	b.ReportMetric(p.Seconds(), "replay_s")
	b.ReportMetric(r.Seconds()/p.Seconds(), "restore/replay")
	b.ReportMetric(float64(rm)/(1<<20), "restore_peak_MiB")
	b.ReportMetric(float64(pm)/(1<<20), "replay_peak_MiB")
	b.Logf("restore read: %d items, %d versions, %s, peak %.1f MiB; genesis replay: %d events, %s, peak %.1f MiB",
		items, versions, r, float64(rm)/(1<<20), replayed, p, float64(pm)/(1<<20))

	// An applied restore of 2,000 keys: the writes' rate.
	keysToRestore := make([]string, 0, 2000)
	for _, i := range k.live[:2000] {
		keysToRestore = append(keysToRestore, string(k.ids[i]))
	}
	sel, err := domain.ParseRestoreSelection(false, keysToRestore, nil)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	res, err := rs.Restore(ctx, e.caller, commands.RestoreRequest{From: bkp.ID, Point: commands.RestorePoint{Day: domain.Day(day)}, Selection: sel, Target: target.ID}, nil)
	if err != nil || !res.Applied || len(res.Validation) > 0 {
		b.Fatalf("apply: %v %+v", err, res)
	}
	applied := time.Since(t0)
	b.ReportMetric(float64(res.Restored)/applied.Seconds(), "applied_items/s")
	b.Logf("applied restore of %d keys (with validation) in %s", res.Restored, applied)
}

// readWholeDay is a restore's read of a whole day: the plan of everything
// into target (every item as it stood within the day, checked against the
// target), then every version of every item from the restore source, key
// material opened under the backup's data key. It returns the items and
// versions read.
func readWholeDay(ctx context.Context, rs *commands.Restores, c commands.Caller, bkp *domain.Backup, day domain.Day, target domain.InstanceID) (items, versions int, err error) {
	point := commands.RestorePoint{Day: day}
	plan, err := rs.PlanRestore(ctx, c, commands.RestoreRequest{From: bkp.ID, Point: point, Selection: domain.SelectAll(), Target: target}, nil)
	if err != nil {
		return 0, 0, err
	}
	if plan.FindingCount() > 0 {
		return 0, 0, fmt.Errorf("plan findings: %+v", plan.Findings[0])
	}
	src, err := rs.Sources.Open(ctx, bkp, point, nil)
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	return readItems(ctx, src, bkp, rs.Sealer)
}

// readDay is a restore read of a whole day without the plan: the restore
// point loaded (commands.DayData.Open), every item read with every
// version, every key version's material opened under the backup's data
// key. It returns the items and versions read.
func readDay(ctx context.Context, e *engine, b *domain.Backup, day domain.Day) (items, versions int, err error) {
	return loadDay(ctx, e, b, day, true)
}

// loadDay is readDay, opening the key material or not (the loader alone:
// what a raw scan of as many records compares with).
func loadDay(ctx context.Context, e *engine, b *domain.Backup, day domain.Day, open bool) (items, versions int, err error) {
	src, err := e.Days.Open(ctx, b, commands.RestorePoint{Day: day}, nil)
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	var opener commands.Sealer
	if open {
		opener = e.env
	}
	return readItems(ctx, src, b, opener)
}

// readItems reads every item of src with every version, opening every key
// version's material under b's data key with opener (nil: none opened). It
// returns the items and versions read.
func readItems(ctx context.Context, src commands.RestoreSource, b *domain.Backup, opener commands.Sealer) (items, versions int, err error) {
	ref := b.DataRef()
	var aad []byte // reused from version to version, as the restore does
	err = src.Each(ctx, commands.ItemRef{}, func(it *commands.BackedUpItem) error {
		items++
		versions += len(it.Versions)
		if opener == nil || it.Kind != commands.ItemKindKey {
			return nil
		}
		for _, v := range it.Versions {
			aad = commands.AppendBackupAAD(aad[:0], b.Account, ref, v.SealedBy)
			pt, err := opener.Open(ctx, ref, v.Material, aad)
			if err != nil {
				return err
			}
			pt.Wipe()
		}
		return nil
	})
	return items, versions, err
}

// genesisReplay reads stream from revision 0 up to end, decodes every
// event, opens every key version's material under the instance's data key,
// and builds the state with its versions in memory. It returns the events
// read.
func genesisReplay(ctx context.Context, e *engine, stream string, end uint64) (int, error) {
	state := map[string][]domain.Sealed{}
	n := 0
	for from := uint64(0); from < end; {
		page, err := e.store.ReadStream(ctx, stream, from, false, 5000)
		if err != nil {
			return n, err
		}
		for _, ev := range page {
			if ev.Revision >= end {
				return n, nil
			}
			from = ev.Revision + 1
			n++
			d, err := ev.Decode()
			if err != nil {
				return n, err
			}
			var id string
			var m domain.Sealed
			switch d := d.(type) {
			case *domain.KeyCreated:
				id, m = string(d.Key), d.Material
				state[id] = nil
			case *domain.KeyRotated:
				id, m = string(d.Key), d.Material
			case *domain.KeyDeleted:
				delete(state, string(d.Key))
			case *domain.SecretCreated:
				state["s/"+d.Name] = []domain.Sealed{d.Value}
			case *domain.SecretRotated:
				state["s/"+d.Name] = append(state["s/"+d.Name], d.Value)
			case *domain.SecretDeleted:
				delete(state, "s/"+d.Name)
			}
			if m != nil {
				pt, err := e.env.Open(ctx, string(ev.Instance), m, domain.AssociatedData(ev.Account, ev.Stream, ev.ID))
				if err != nil {
					return n, err
				}
				pt.Wipe()
				state[id] = append(state[id], m)
			}
		}
		if len(page) < 5000 {
			break
		}
	}
	return n, nil
}

func medianDur(xs []time.Duration) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
