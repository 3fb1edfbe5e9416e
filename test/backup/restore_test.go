package backup

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// targetState is everything a restore could change in a target instance.
func targetState(t *testing.T, e *Engine, in domain.InstanceID) string {
	t.Helper()
	inst := Must(kmsstate.GetInstance(e.Proj, in))
	keys := Must(kmsstate.ListKeys(e.Proj, in, "", 1000))
	secs := Must(kmsstate.ListSecrets(e.Proj, in, "", 1000))
	var b strings.Builder
	fmt.Fprintf(&b, "keys=%d secrets=%d rev=%d\n", inst.LiveKeys, inst.LiveSecrets, inst.Revision)
	for _, k := range keys.Items {
		fmt.Fprintf(&b, "key %s v%d\n", k.ID, len(k.Versions))
	}
	for _, s := range secs.Items {
		fmt.Fprintf(&b, "secret %s v%d\n", s.Name, len(s.Versions))
	}
	return b.String()
}

func codes(p *commands.RestorePlan) []string {
	var out []string
	for _, f := range p.Findings {
		out = append(out, f.Code)
	}
	slices.Sort(out)
	return out
}

// TestRestorePlanFindings provokes every finding of the plan, each leaving
// the target unchanged, and a plan that reports several at once.
func TestRestorePlanFindings(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	ctx := context.Background()
	src, b := e.EnabledBackup("UTC")
	k1 := Must(e.KMS.CreateKey(ctx, e.Caller, src.ID, "k1"))
	k2 := Must(e.KMS.CreateKey(ctx, e.Caller, src.ID, "k2"))
	Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: "s1", Instance: src.ID, Key: k1.ID, Value: domain.Plaintext("v")}))
	e.Advance(10 * time.Minute)
	day := "2026-05-01"

	mk := func(region string, kq, sq uint32) domain.InstanceID {
		return Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: region, KeyQuota: kq, SecretQuota: sq})).ID
	}
	elsewhere := mk("eu-central-1", 10, 10)
	sameRegion := mk("cn-hangzhou", 10, 10)
	tinyKeys := mk("eu-west-1", 1, 10)
	fullSecrets := mk("ap-south-1", 10, 1)
	fk := Must(e.KMS.CreateKey(ctx, e.Caller, fullSecrets, ""))
	Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: "occupant", Instance: fullSecrets, Key: fk.ID, Value: domain.Plaintext("v")}))
	other := commands.Caller{Account: domain.NewAccountID(e.Backups.IDs.NewULID())}
	othersInst := Must(e.KMS.CreateInstance(ctx, other, commands.CreateInstanceInput{Region: "eu-central-1"})).ID
	missing := domain.NewInstanceID(e.Backups.IDs.NewULID())

	req := func(to domain.InstanceID) RestoreReq {
		return RestoreReq{From: b.ID, Day: day, ToInstance: to}
	}
	with := func(r RestoreReq, f func(*RestoreReq)) RestoreReq {
		f(&r)
		return r
	}
	cases := []struct {
		name string
		req  RestoreReq
		want []string
	}{
		{"target not found", with(req(missing), func(r *RestoreReq) { r.Keys = []string{string(k2.ID)} }), []string{commands.FindingTargetNotFound}},
		{"another account's target", with(req(othersInst), func(r *RestoreReq) { r.Keys = []string{string(k2.ID)} }), []string{commands.FindingTargetNotFound}},
		{"key quota", with(req(tinyKeys), func(r *RestoreReq) { r.Keys = []string{string(k1.ID), string(k2.ID)} }), []string{commands.FindingKeyQuota}},
		{"secret quota", with(req(fullSecrets), func(r *RestoreReq) { r.Keys = []string{string(k1.ID)}; r.Secrets = []string{"s1"} }), []string{commands.FindingSecretQuota}},
		{"key ID taken in the region", with(req(sameRegion), func(r *RestoreReq) { r.Keys = []string{string(k2.ID)} }), []string{commands.FindingKeyExists}},
		{"secret name taken in the region, and its key missing", with(req(sameRegion), func(r *RestoreReq) { r.Secrets = []string{"s1"} }), []string{commands.FindingSecretExists, commands.FindingSecretKeyMissing}},
		{"secret without its key", with(req(elsewhere), func(r *RestoreReq) { r.Secrets = []string{"s1"} }), []string{commands.FindingSecretKeyMissing}},
		{"day not viewable", with(req(elsewhere), func(r *RestoreReq) { r.Day = "2026-04-30"; r.Keys = []string{string(k2.ID)} }), []string{commands.FindingDayNotViewable}},
		{"item not in the day's data", with(req(elsewhere), func(r *RestoreReq) { r.Keys = []string{string(domain.NewKeyID(e.Backups.IDs.NewULID()))} }), []string{commands.FindingItemNotInBackup}},
		{"region mismatch", with(req(elsewhere), func(r *RestoreReq) { r.Keys = []string{string(k2.ID)}; r.ToRegion = "cn-hangzhou" }), []string{commands.FindingRegionMismatch}},
		{"several at once", with(req(tinyKeys), func(r *RestoreReq) {
			r.Keys = []string{string(k1.ID), string(k2.ID), string(domain.NewKeyID(e.Backups.IDs.NewULID()))}
			r.Secrets = []string{"nope"}
		}), []string{commands.FindingItemNotInBackup, commands.FindingItemNotInBackup, commands.FindingKeyQuota}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before string
			target := c.req.ToInstance
			if target != missing && target != othersInst {
				before = targetState(t, e, target)
			}
			res := Must(restore(t, e, c.req))
			if res.Applied {
				t.Fatal("a plan with findings was applied")
			}
			want := slices.Clone(c.want)
			slices.Sort(want)
			if diff := cmp.Diff(want, codes(res.Plan)); diff != "" {
				t.Fatalf("findings (-want +got):\n%s\n%+v", diff, res.Plan.Findings)
			}
			if before != "" {
				if after := targetState(t, e, target); after != before {
					t.Fatalf("the target changed:\n%s\n->\n%s", before, after)
				}
			}
		})
	}
	// The other account's instance answers exactly like a missing one.
	a := Must(planRestore(t, e, with(req(othersInst), func(r *RestoreReq) { r.Keys = []string{string(k2.ID)} })))
	m := Must(planRestore(t, e, with(req(missing), func(r *RestoreReq) { r.Keys = []string{string(k2.ID)} })))
	if strings.ReplaceAll(a.Findings[0].Message, string(othersInst), "X") != strings.ReplaceAll(m.Findings[0].Message, string(missing), "X") {
		t.Fatalf("other account's target: %q, missing: %q", a.Findings[0].Message, m.Findings[0].Message)
	}

}

// TestRestoreFromExpiredBackup: an expired backup instance is a finding.
func TestRestoreFromExpiredBackup(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	ctx := context.Background()
	target := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "cn-hangzhou"}))
	b := Must(e.Backups.CreateBackupInstance(ctx, e.Caller, commands.CreateBackupInput{Region: "cn-hangzhou", ViewableDays: 7, Term: "1mo"}))
	e.Advance(32 * 24 * time.Hour)
	res := Must(restore(t, e, RestoreReq{From: b.ID, Day: "2026-06-01", All: true, ToInstance: target.ID}))
	if got := codes(res.Plan); res.Applied || len(got) != 1 || got[0] != commands.FindingBackupExpired {
		t.Fatalf("expired backup: applied %v, findings %v", res.Applied, res.Plan.Findings)
	}
}

// TestLargeRestorePlan exercises plans of many items, whose conflicts are
// found with one scan of the account's locations rather than one look-up
// per item: the same findings, the same apply, the same retry.
func TestLargeRestorePlan(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	ctx := context.Background()
	src, b := e.EnabledBackup("UTC")
	var last domain.KeyID
	for i := range 80 {
		last = Must(e.KMS.CreateKey(ctx, e.Caller, src.ID, fmt.Sprint(i))).ID
	}
	for i := range 5 {
		Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: fmt.Sprint("s", i), Instance: src.ID, Key: last, Value: domain.Plaintext("v")}))
	}
	e.Advance(10 * time.Minute)
	req := func(to domain.InstanceID) RestoreReq {
		return RestoreReq{From: b.ID, Day: "2026-05-01", All: true, ToInstance: to}
	}
	same := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "cn-hangzhou", KeyQuota: 1000}))
	plan := Must(planRestore(t, e, req(same.ID)))
	n := map[string]int{}
	for _, f := range plan.Findings {
		n[f.Code]++
	}
	if n[commands.FindingKeyExists] != 80 || n[commands.FindingSecretExists] != 5 || len(plan.Items) != 85 {
		t.Fatalf("plan into the same region: %d items, findings %v", len(plan.Items), n)
	}
	other := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "eu-central-1", KeyQuota: 1000}))
	res := Must(restore(t, e, req(other.ID)))
	if !res.Applied || res.Restored != 85 || len(res.Validation) != 0 {
		t.Fatalf("restore into another region: %+v", res)
	}
	again := Must(restore(t, e, req(other.ID)))
	if !again.Applied || again.Restored != 0 || again.AlreadyPresent != 85 {
		t.Fatalf("retry: restored %d, already %d, findings %+v", again.Restored, again.AlreadyPresent, again.Plan.Findings)
	}
}
