package backup

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// logState replays a KMS instance's stream from the start up to revision
// next and returns every live item with its version digests (key material
// opened with the KMS instance's own data key).
func logState(t *testing.T, e *Engine, in domain.InstanceID, next uint64) map[string][]string {
	t.Helper()
	return logStateUntil(t, e, in, func(ev *domain.Event) bool { return ev.Revision >= next })
}

// logStateAt is logState up to the last event that occurred at or before
// at.
func logStateAt(t *testing.T, e *Engine, in domain.InstanceID, at time.Time) map[string][]string {
	t.Helper()
	return logStateUntil(t, e, in, func(ev *domain.Event) bool { return ev.OccurredAt.After(at) })
}

// logStateUntil is logState up to the first event for which stop holds.
func logStateUntil(t *testing.T, e *Engine, in domain.InstanceID, stop func(*domain.Event) bool) map[string][]string {
	t.Helper()
	ctx := context.Background()
	st := map[string][]string{}
	keyDigest := func(ev domain.Event, m domain.Sealed) string {
		pt := Must(e.KMS.Sealer.Open(ctx, string(ev.Instance), m, domain.AssociatedData(ev.Account, ev.Stream, ev.ID)))
		d := commands.KeyVersionDigest(pt)
		pt.Wipe()
		return fmt.Sprintf("%x", d[:6])
	}
	var events []domain.Event
	for from := uint64(0); ; {
		page := Must(e.Store.ReadStream(ctx, domain.KMSStream(in), from, false, 1000))
		events = append(events, page...)
		if len(page) < 1000 {
			break
		}
		from = page[len(page)-1].Revision + 1
	}
	for _, ev := range events {
		if stop(&ev) {
			break
		}
		switch d := Must(ev.Decode()).(type) {
		case *domain.KeyCreated:
			st["key/"+string(d.Key)] = []string{keyDigest(ev, d.Material)}
		case *domain.KeyRotated:
			st["key/"+string(d.Key)] = append(st["key/"+string(d.Key)], keyDigest(ev, d.Material))
		case *domain.KeyDeleted:
			delete(st, "key/"+string(d.Key))
		case *domain.SecretCreated:
			st["secret/"+d.Name] = []string{string(d.Value)}
		case *domain.SecretRotated:
			st["secret/"+d.Name] = append(st["secret/"+d.Name], string(d.Value))
		case *domain.SecretDeleted:
			delete(st, "secret/"+d.Name)
		}
	}
	return st
}

// instanceState reads the same shape from a (restored) target instance.
func instanceState(t *testing.T, e *Engine, in domain.InstanceID) map[string][]string {
	t.Helper()
	ctx := context.Background()
	st := map[string][]string{}
	for _, k := range Must(kmsstate.ListKeys(e.Proj, in, "", 1000)).Items {
		for _, v := range k.Versions {
			pt := Must(e.KMS.Sealer.Open(ctx, string(k.Instance), v.Material, domain.AssociatedData(k.Account, v.Stream, v.SealedBy)))
			d := commands.KeyVersionDigest(pt)
			st["key/"+string(k.ID)] = append(st["key/"+string(k.ID)], fmt.Sprintf("%x", d[:6]))
		}
	}
	for _, s := range Must(kmsstate.ListSecrets(e.Proj, in, "", 1000)).Items {
		for _, v := range s.Versions {
			st["secret/"+s.Name] = append(st["secret/"+s.Name], string(v.Value))
		}
	}
	return st
}

// TestRestoreAtRandomInstantEqualsReplay: over random histories with
// downtime, deletions and re-creations, and bases written as the schedule
// goes, restoring everything (planned, applied, validated) at a random
// instant of the backup's span, a checkpoint's or not, gives exactly the
// state obtained by replaying the log from the start up to that instant,
// every version included; a second apply is a no-op. The seed is printed;
// -seed replays one.
func TestRestoreAtRandomInstantEqualsReplay(t *testing.T) {
	e, rng, src, b := seededHistory(t, 7, 120)
	ctx := context.Background()
	cps := e.CheckpointEvents(b.ID)
	loc := Must(time.LoadLocation(b.TimeZone))
	first, last := cps[0].At, cps[len(cps)-1].At
	restored := 0
	defer func() {
		if !t.Failed() && restored == 0 {
			t.Errorf("no round restored anything")
		}
	}()
	for round := range 4 {
		at := first.Add(time.Duration(rng.Int64N(int64(last.Sub(first)) + 1))).Truncate(time.Second)
		if round%2 == 0 {
			at = cps[rng.IntN(len(cps))].At
		}
		req := RestoreReq{From: b.ID, Day: string(domain.DayOf(at, loc)), At: at.Format(time.RFC3339), All: true}
		req.ToInstance = Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: fmt.Sprint("eu-restore-", round), KeyQuota: 1000, SecretQuota: 1000})).ID
		res := Must(restore(t, e, req))
		if !res.Applied || len(res.Validation) != 0 {
			t.Fatalf("restore at %s: applied %v, findings %+v, validation %+v", at, res.Applied, res.Plan.Findings, res.Validation)
		}
		want := logStateAt(t, e, src.ID, at)
		if diff := cmp.Diff(want, instanceState(t, e, req.ToInstance)); diff != "" {
			t.Fatalf("restore at %s differs from the log replayed to that instant (-log +restored):\n%s", at, diff)
		}
		restored += res.Restored
		again := Must(restore(t, e, req))
		if !again.Applied || again.Restored != 0 || again.AlreadyPresent != res.Plan.ItemCount() {
			t.Fatalf("retry at %s: applied %v restored %d already %d of %d; findings %+v", at, again.Applied, again.Restored, again.AlreadyPresent, res.Plan.ItemCount(), again.Plan.Findings)
		}
	}
}
