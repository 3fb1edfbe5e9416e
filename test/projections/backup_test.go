package projections

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// kmsOps writes one KMS instance's key and secret events into a world.
type kmsOps struct {
	w  *world
	in domain.InstanceID
}

func (k kmsOps) createKey(at time.Time, id domain.KeyID, desc string) {
	k.w.tb.Helper()
	k.w.kms(k.in, at, &domain.KeyCreated{Key: id, Description: desc, Spec: domain.KeySpecAES256, Material: []byte("sealed:" + string(id) + ":1")})
}

func (k kmsOps) rotateKey(at time.Time, id domain.KeyID, v uint32) {
	k.w.tb.Helper()
	k.w.kms(k.in, at, &domain.KeyRotated{Key: id, Version: v, Material: []byte(fmt.Sprintf("sealed:%s:%d", id, v))})
}

func (k kmsOps) deleteKey(at time.Time, id domain.KeyID) {
	k.w.tb.Helper()
	k.w.kms(k.in, at, &domain.KeyDeleted{Key: id})
}

func (k kmsOps) createSecret(at time.Time, name string, key domain.KeyID) {
	k.w.tb.Helper()
	k.w.kms(k.in, at, &domain.SecretCreated{Name: name, Key: key, Value: []byte("ct:" + name + ":1")})
}

func (k kmsOps) rotateSecret(at time.Time, name string, v uint32, key domain.KeyID) {
	k.w.tb.Helper()
	k.w.kms(k.in, at, &domain.SecretRotated{Name: name, Version: v, Key: key, Value: []byte(fmt.Sprintf("ct:%s:%d", name, v))})
}

func (k kmsOps) deleteSecret(at time.Time, name string) {
	k.w.tb.Helper()
	k.w.kms(k.in, at, &domain.SecretDeleted{Name: name})
}

// result carries what a call returned, so that of(f(...)).must(tb) checks
// any (value, error) pair.
type result[T any] struct {
	v   T
	err error
}

func of[T any](v T, err error) result[T] { return result[T]{v, err} }

func (r result[T]) must(tb testing.TB) T {
	tb.Helper()
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return r.v
}

// decided is must for a decision of the domain's rules.
func (r result[T]) decided(tb testing.TB) T {
	tb.Helper()
	if r.err != nil {
		tb.Fatalf("the domain refused: %v", r.err)
	}
	return r.v
}

type result2[T, U any] struct {
	v   T
	u   U
	err error
}

func of2[T, U any](v T, u U, err error) result2[T, U] { return result2[T, U]{v, u, err} }

func (r result2[T, U]) must(tb testing.TB) (T, U) {
	tb.Helper()
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return r.v, r.u
}

func stateAt(tb testing.TB, r projections.Reader, ref string, seq uint64) []backupdata.Item {
	tb.Helper()
	var out []backupdata.Item
	if err := backupdata.StateAt(r, ref, seq, func(it backupdata.Item) error {
		out = append(out, it)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return out
}

// walk lists a tab page by page.
func walk(tb testing.TB, r projections.Reader, ref string, day domain.Day, tab backupdata.Tab, size int) []backupdata.Item {
	tb.Helper()
	out := []backupdata.Item{}
	cursor := ""
	for range 1000 {
		p := of(backupdata.List(r, ref, day, tab, cursor, size)).must(tb)
		out = append(out, p.Items...)
		if p.Next == "" {
			return out
		}
		cursor = p.Next
	}
	tb.Fatalf("%s of %s does not end", tab, day)
	return nil
}

func summaryView(s backupdata.Summary) map[string]any {
	return map[string]any{"Seq": s.Seq, "Full": s.Full, "At": s.At, "Day": s.Day, "From": s.From, "Next": s.Next,
		"LiveKeys": s.LiveKeys, "LiveSecrets": s.LiveSecrets, "StateDigest": hex.EncodeToString(s.StateDigest[:])}
}

func backupView(tb testing.TB, b *domain.Backup) map[string]any {
	tb.Helper()
	var m map[string]any
	of(0, json.Unmarshal(of(json.Marshal(b)).must(tb), &m)).must(tb)
	m["LastDigest"] = hex.EncodeToString(b.LastDigest[:])
	return m
}

func ids(bs []*domain.Backup) []domain.BackupID {
	out := []domain.BackupID{}
	for _, b := range bs {
		out = append(out, b.ID)
	}
	return out
}

// opt shows an optional ID.
func opt[T ~string](v T, ok bool, err error) (string, error) {
	if !ok {
		return "(none)", err
	}
	return string(v), err
}

func checkGolden(t *testing.T, name string, got any) {
	t.Helper()
	gotJSON, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(golden, append(gotJSON, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(gotJSON)+"\n"); diff != "" {
		t.Fatalf("read model differs from %s (-want +got):\n%s", golden, diff)
	}
}

// checkDigests checks every checkpoint's incremental digest against the
// digest of its state computed from scratch.
func checkDigests(tb testing.TB, r projections.Reader, ref string) {
	tb.Helper()
	last := of(backupdata.LastSeq(r, ref)).must(tb)
	for seq := uint64(1); seq <= last; seq++ {
		s := of(backupdata.Checkpoint(r, ref, seq)).must(tb)
		items := stateAt(tb, r, ref, seq)
		if s.StateDigest != backupdata.StateDigest(items) {
			tb.Fatalf("checkpoint %d: incremental digest differs from the digest of its %d items", seq, len(items))
		}
		keys, secrets := uint64(0), uint64(0)
		for _, it := range items {
			if it.Kind == backupdata.KindKey {
				keys++
			} else {
				secrets++
			}
		}
		if s.LiveKeys != keys || s.LiveSecrets != secrets {
			tb.Fatalf("checkpoint %d: counts %d/%d, state has %d/%d", seq, s.LiveKeys, s.LiveSecrets, keys, secrets)
		}
	}
}

// TestBackupGolden follows one provisioned backup instance in Asia/Shanghai
// (UTC+8) over two local days: a first full whose slice holds the history
// from before enabling, incrementals that create, rotate and delete keys
// and secrets (a secret deleted and created again in two checkpoints, and
// in one), a second full at local midnight whose slice holds the last
// minutes of the first day, and an empty checkpoint. Then it expires,
// renews and resets it (the data goes, the next generation starts clean),
// and releases another instance.
func TestBackupGolden(t *testing.T) {
	w := newWorld(t)
	sh := of(time.LoadLocation("Asia/Shanghai")).must(t)
	at := func(day, h, m int) time.Time { return time.Date(2026, 5, day, h, m, 0, 0, sh) }
	day1, day2 := domain.Day("2026-05-01"), domain.Day("2026-05-02")
	kms := domain.NewInstanceID(uid(2))
	mainID, dfltID := domain.NewBackupID(uid(3)), domain.NewBackupID(uid(4))
	k1, k2, k3, k4 := w.nextKeyID(), w.nextKeyID(), w.nextKeyID(), w.nextKeyID()
	op := kmsOps{w, kms}
	instance := &domain.Instance{ID: kms, Account: w.acct, Region: w.region}

	// Before enabling.
	w.kms(kms, at(0, 9, 0), of(domain.NewInstance(kms, w.region, 10, 10)).decided(t))
	op.createKey(at(0, 9, 1), k1, "payments")
	op.rotateKey(at(0, 9, 2), k1, 2)
	op.createKey(at(0, 9, 3), k2, "reports")
	op.createSecret(at(0, 9, 4), "db", k1)
	op.createSecret(at(0, 9, 5), "tmp", k2)
	op.deleteSecret(at(0, 9, 6), "tmp")
	op.createKey(at(0, 9, 7), k3, "scratch")
	op.deleteKey(at(0, 9, 8), k3)
	op.createSecret(at(1, 9, 30), "api", k2)

	w.backup(dfltID, at(1, 9, 40), of(domain.NewDefaultBackup(dfltID, w.region)).decided(t))
	w.backup(mainID, at(1, 9, 50), of(domain.NewProvisionedBackup(mainID, w.region, 30, domain.Term{Months: 12}, at(1, 9, 50))).decided(t))
	w.backup(mainID, at(1, 10, 0), of(w.backups[mainID].Enable(instance.ID, instance, "prod", "Asia/Shanghai", "")).decided(t))
	w.checkpoint(mainID, at(1, 10, 0), true) // 1: the first full

	op.createKey(at(1, 10, 2), k4, "ledger")
	op.rotateSecret(at(1, 10, 3), "db", 2, k1)
	w.checkpoint(mainID, at(1, 10, 5), false) // 2
	op.rotateKey(at(1, 10, 6), k2, 2)
	op.createSecret(at(1, 10, 7), "cache", k4)
	op.deleteSecret(at(1, 10, 8), "db")
	w.checkpoint(mainID, at(1, 10, 10), false) // 3
	op.createSecret(at(1, 10, 11), "db", k4)
	op.rotateSecret(at(1, 10, 12), "api", 2, k4)
	w.backup(mainID, at(1, 10, 13), of(w.backups[mainID].Extend(60)).decided(t))
	w.checkpoint(mainID, at(1, 10, 15), false) // 4
	op.createSecret(at(1, 23, 50), "tmp2", k1)
	op.deleteSecret(at(1, 23, 52), "tmp2")
	w.checkpoint(mainID, at(1, 23, 55), false) // 5
	op.rotateKey(at(1, 23, 58), k4, 2)
	w.checkpoint(mainID, at(2, 0, 0), true) // 6: the full of day 2 holds day 1's last minutes

	op.rotateKey(at(2, 0, 1), k1, 3)
	op.deleteSecret(at(2, 0, 3), "cache")
	op.createSecret(at(2, 0, 4), "cache", k4)
	op.createSecret(at(2, 0, 5), "tmp3", k1)
	op.deleteSecret(at(2, 0, 6), "tmp3")
	op.createSecret(at(2, 0, 7), "tmp3", k1)
	w.checkpoint(mainID, at(2, 0, 10), false) // 7
	op.deleteKey(at(2, 0, 12), k2)
	w.checkpoint(mainID, at(2, 0, 15), false) // 8
	w.checkpoint(mainID, at(2, 0, 20), false) // 9: nothing happened

	st := w.st
	ref := w.ref(mainID)
	checkDigests(t, st, ref)

	got := map[string]any{
		"state: main":            backupView(t, of(backupstate.Get(st, mainID)).must(t)),
		"state: list":            of(backupstate.List(st, w.acct, "", 10)).must(t).Next,
		"state: list ids":        ids(of(backupstate.List(st, w.acct, "", 10)).must(t).Items),
		"state: bound to kms":    of(opt(backupstate.BoundTo(st, kms))).must(t),
		"state: default":         of(opt(backupstate.DefaultFor(st, w.acct, w.region))).must(t),
		"state: active":          ids(of(backupstate.Active(st)).must(t)),
		"state: scheduled":       ids(of(backupstate.Scheduled(st)).must(t)),
		"data: ref":              ref,
		"data: last seq":         of(backupdata.LastSeq(st, ref)).must(t),
		"data: days":             of(backupdata.Days(st, ref)).must(t),
		"data: diff day 1 day 2": of(backupdata.Diff(st, ref, day1, day2)).must(t),
		"data: state at 1":       stateAt(t, st, ref, 1),
		"data: state at 5":       stateAt(t, st, ref, 5),
		"data: state at 9":       stateAt(t, st, ref, 9),
	}
	var sums []map[string]any
	for seq := uint64(1); seq <= 9; seq++ {
		sums = append(sums, summaryView(of(backupdata.Checkpoint(st, ref, seq)).must(t)))
	}
	got["data: checkpoints"] = sums
	for _, day := range []domain.Day{day1, day2} {
		for _, tab := range backupdata.Tabs {
			items := of(backupdata.List(st, ref, day, tab, "", 100)).must(t).Items
			got[fmt.Sprintf("data: %s %s", day, tab)] = items
			if paged := walk(t, st, ref, day, tab, 1); !cmp.Equal(paged, items) {
				t.Fatalf("%s %s: pages of one differ from one page:\n%s", day, tab, cmp.Diff(items, paged))
			}
		}
	}
	checkGolden(t, "backup.golden.json", got)
	withData(t, st, mainID) // the default instance is not enabled: it holds nothing

	// What must not be there: a key created and deleted before enabling
	// in no list (the golden lists above), nor the day before enabling.
	for _, tab := range backupdata.Tabs {
		if p := of(backupdata.List(st, ref, "2026-04-30", tab, "", 10)).must(t); len(p.Items) != 0 {
			t.Fatalf("the day before enabling lists %s: %+v", tab, p.Items)
		}
	}
	if _, err := backupdata.List(st, ref, day1, "full", "", 10); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("unknown tab: %v", err)
	}
	if _, err := backupdata.Diff(st, ref, day2, day1); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("diff backwards: %v", err)
	}
	p1 := of(backupstate.List(st, w.acct, "", 1)).must(t)
	p2 := of(backupstate.List(st, w.acct, p1.Next, 1)).must(t)
	if len(p1.Items) != 1 || p1.Next == "" || len(p2.Items) != 1 || p2.Next != "" || p1.Items[0].ID == p2.Items[0].ID {
		t.Fatalf("paging backup instances: %+v / %+v", p1, p2)
	}

	// Expired: bound still, data kept; renewed: back to enabled.
	b := w.backups[mainID]
	expiry := b.ExpiresAt
	expired, _ := b.Expire(expiry)
	w.backup(mainID, expiry, expired)
	if id, ok := of2(backupstate.BoundTo(st, kms)).must(t); !ok || id != mainID {
		t.Fatalf("an expired instance must stay bound: %q %v", id, ok)
	}
	if got := ids(of(backupstate.Active(st)).must(t)); !cmp.Equal(got, []domain.BackupID{mainID}) {
		t.Fatalf("active with an expired instance: %v", got)
	}
	if n := of(backupdata.LastSeq(st, ref)).must(t); n != 9 {
		t.Fatalf("an expired instance keeps its data: last seq %d", n)
	}
	withData(t, st, mainID)
	w.backup(mainID, expiry.Add(time.Hour), of(b.Renew(domain.Term{Months: 1}, expiry.Add(time.Hour))).decided(t))

	// Reset: the data of generation 0 is gone, the binding too.
	resetAt := expiry.Add(2 * time.Hour)
	w.backup(mainID, resetAt, of(b.Reset()).decided(t))
	w.append(domain.BackupStream(mainID), "", resetAt, &domain.BackupCheckpointed{Generation: 0, Seq: 10, At: resetAt}, nil) // stale
	assertGone(t, w, ref)
	if _, ok := of2(backupstate.BoundTo(st, kms)).must(t); ok {
		t.Fatal("a reset instance is still bound")
	}
	if got := ids(of(backupstate.Active(st)).must(t)); len(got) != 0 {
		t.Fatalf("active after reset: %v", got)
	}
	withData(t, st)

	// Generation 1 starts clean, in UTC, with the whole KMS history as its
	// first full.
	enableAt := resetAt.Add(time.Hour)
	w.backup(mainID, enableAt, of(b.Enable(instance.ID, instance, "prod-2", "", "")).decided(t))
	w.checkpoint(mainID, enableAt, true)
	ref1 := w.ref(mainID)
	if ref1 == ref {
		t.Fatalf("reset kept the data reference %s", ref1)
	}
	checkDigests(t, st, ref1)
	day := domain.DayOf(enableAt, time.UTC)
	gen1 := map[string]any{
		"ref":         ref1,
		"days":        of(backupdata.Days(st, ref1)).must(t),
		"checkpoint":  summaryView(of(backupdata.Checkpoint(st, ref1, 1)).must(t)),
		"state at 1":  stateAt(t, st, ref1, 1),
		"old ref":     of(backupdata.LastSeq(st, ref)).must(t),
		"state: main": backupView(t, of(backupstate.Get(st, mainID)).must(t)),
	}
	for _, tab := range backupdata.Tabs {
		gen1[string(tab)] = of(backupdata.List(st, ref1, day, tab, "", 100)).must(t).Items
	}
	checkGolden(t, "backup_generation1.golden.json", gen1)

	// Release: another instance, expired and released, loses its data and
	// its binding.
	kms2 := domain.NewInstanceID(uid(5))
	bkp2 := domain.NewBackupID(uid(6))
	t0 := enableAt.Add(time.Hour)
	w.kms(kms2, t0, of(domain.NewInstance(kms2, w.region, 10, 10)).decided(t))
	kmsOps{w, kms2}.createKey(t0.Add(time.Minute), w.nextKeyID(), "other")
	w.backup(bkp2, t0.Add(2*time.Minute), of(domain.NewProvisionedBackup(bkp2, w.region, 7, domain.Term{Months: 1}, t0)).decided(t))
	w.backup(bkp2, t0.Add(3*time.Minute), of(w.backups[bkp2].Enable(kms2, &domain.Instance{ID: kms2, Account: w.acct, Region: w.region}, "b", "UTC", "")).decided(t))
	w.checkpoint(bkp2, t0.Add(3*time.Minute), true)
	withData(t, st, mainID, bkp2)
	ref2 := w.ref(bkp2)
	if n := of(backupdata.LastSeq(st, ref2)).must(t); n != 1 {
		t.Fatalf("second instance: last seq %d", n)
	}
	b2 := w.backups[bkp2]
	exp2, _ := b2.Expire(b2.ExpiresAt)
	w.backup(bkp2, b2.ExpiresAt, exp2)
	rel, ok := b2.Release(b2.ReleaseDue())
	if !ok {
		t.Fatal("the domain does not release")
	}
	w.backup(bkp2, b2.ReleaseDue(), rel)
	assertGone(t, w, ref2)
	if _, ok := of2(backupstate.BoundTo(st, kms2)).must(t); ok {
		t.Fatal("a released instance is still bound")
	}
	if got := of(backupstate.Get(st, bkp2)).must(t); got.State != domain.StateReleased {
		t.Fatalf("released instance in state %s", got.State)
	}
	if got := ids(of(backupstate.Scheduled(st)).must(t)); !cmp.Equal(got, []domain.BackupID{mainID}) {
		t.Fatalf("scheduled after release: %v", got)
	}
	withData(t, st, mainID)
}

// withData checks that backupstate.WithData lists exactly want (in ID
// order), in one page and in pages of one.
func withData(t *testing.T, r projections.Reader, want ...domain.BackupID) {
	t.Helper()
	slices.Sort(want)
	if got := ids(of(backupstate.WithData(r, "", 100)).must(t).Items); !cmp.Equal(got, want, cmpopts.EquateEmpty()) {
		t.Fatalf("instances with data = %v, want %v", got, want)
	}
	var paged []domain.BackupID
	for cursor, n := domain.BackupID(""), 0; ; n++ {
		p := of(backupstate.WithData(r, cursor, 1)).must(t)
		paged = append(paged, ids(p.Items)...)
		if p.Next == "" {
			break
		}
		if n > len(want) {
			t.Fatalf("paging instances with data does not end: %v", paged)
		}
		cursor = domain.BackupID(p.Next)
	}
	if !cmp.Equal(paged, want, cmpopts.EquateEmpty()) {
		t.Fatalf("instances with data in pages of one = %v, want %v", paged, want)
	}
	if _, err := backupstate.WithData(r, "", 0); !errors.Is(err, domain.ErrInvalidArgument) {
		t.Fatalf("page size 0: %v, want invalid argument", err)
	}
}

// assertGone checks that nothing of a generation's data is left.
func assertGone(t *testing.T, w *world, ref string) {
	t.Helper()
	n := 0
	if err := w.st.Scan([]byte("bkd/"+ref+"\x00"), nil, func(_, _ []byte) (bool, error) {
		n++
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d records of %s are left", n, ref)
	}
	if d := of(backupdata.Days(w.st, ref)).must(t); len(d) != 0 {
		t.Fatalf("days of %s: %v", ref, d)
	}
	if s := stateAt(t, w.st, ref, 1<<40); len(s) != 0 {
		t.Fatalf("state of %s: %v", ref, s)
	}
	if n := of(backupdata.LastSeq(w.st, ref)).must(t); n != 0 {
		t.Fatalf("last seq of %s: %d", ref, n)
	}
}
