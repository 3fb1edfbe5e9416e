package projections

import (
	"crypto/sha256"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

var update = flag.Bool("update", false, "rewrite golden files")

func uid(n uint64) ulid.ULID {
	var u ulid.ULID
	_ = u.SetTime(1700000000000 + n)
	u[15] = byte(n)
	return u
}

// history is a small, fixed story: one account, two instances in one region
// and one elsewhere, keys and secrets created, rotated, deleted, one
// instance released, and then its key (with both versions) and a secret
// under it restored from a backup into the instance elsewhere.
func history() []domain.Event {
	acct := domain.NewAccountID(uid(1))
	a, b, c := domain.NewInstanceID(uid(2)), domain.NewInstanceID(uid(3)), domain.NewInstanceID(uid(4))
	k1, k2, k3 := domain.NewKeyID(uid(5)), domain.NewKeyID(uid(6)), domain.NewKeyID(uid(7))
	region := map[domain.InstanceID]string{a: "cn-hangzhou", b: "cn-hangzhou", c: "eu-central-1"}
	var out []domain.Event
	n := uint64(10)
	revs := map[string]uint64{}
	add := func(in domain.InstanceID, stream string, d domain.EventData) {
		n++
		rev := revs[stream]
		revs[stream]++
		out = append(out, domain.Event{ID: uid(n), Stream: stream, Revision: rev, Position: uint64(len(out) + 1), Type: d.EventType(),
			Schema: domain.SchemaVersion, OccurredAt: time.Date(2026, 5, 1, 0, int(n), 0, 0, time.UTC),
			Account: acct, Region: region[in], Instance: in, Data: domain.EncodeData(d)})
	}
	add("", domain.AccountsStream, &domain.AccountCreated{Account: acct, Name: "acme", TokenHash: sha256.Sum256([]byte("tok"))})
	for _, in := range []domain.InstanceID{a, b, c} {
		add(in, domain.KMSStream(in), &domain.InstanceCreated{Instance: in, Region: region[in], KeyQuota: 10, SecretQuota: 10})
	}
	add(a, domain.KMSStream(a), &domain.KeyCreated{Key: k1, Description: "<b>payments</b>", Spec: domain.KeySpecAES256, Material: []byte("sealed-1")})
	add(a, domain.KMSStream(a), &domain.KeyRotated{Key: k1, Version: 2, Material: []byte("sealed-2")})
	add(a, domain.KMSStream(a), &domain.SecretCreated{Name: "db", Key: k1, Value: []byte("ct-1")})
	add(a, domain.KMSStream(a), &domain.SecretRotated{Name: "db", Version: 2, Key: k1, Value: []byte("ct-2")})
	add(b, domain.KMSStream(b), &domain.KeyCreated{Key: k2, Spec: domain.KeySpecAES256, Material: []byte("sealed-3")})
	add(b, domain.KMSStream(b), &domain.SecretCreated{Name: "api", Key: k2, Value: []byte("ct-3")})
	add(c, domain.KMSStream(c), &domain.KeyCreated{Key: k3, Spec: domain.KeySpecAES256, Material: []byte("sealed-4")})
	add(c, domain.KMSStream(c), &domain.SecretCreated{Name: "db", Key: k3, Value: []byte("ct-4")})
	add(c, domain.KMSStream(c), &domain.SecretDeleted{Name: "db"})
	add(b, domain.KMSStream(b), &domain.InstanceReleased{Instance: b})
	from := domain.RestoredFrom{Backup: domain.NewBackupID(uid(8)), Day: "2026-04-30", Seq: 42, By: string(acct)}
	t0, t1 := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC)
	add(c, domain.KMSStream(c), &domain.KeyRestored{Key: k2, Description: "restored", Spec: domain.KeySpecAES256,
		Versions: []domain.RestoredKeyVersion{{Version: 1, Material: []byte("sealed-r1"), CreatedAt: t0}, {Version: 2, Material: []byte("sealed-r2"), CreatedAt: t1}},
		From:     from})
	add(c, domain.KMSStream(c), &domain.SecretRestored{Name: "api", Key: k2,
		Versions: []domain.RestoredSecretVersion{{Version: 1, Key: k2, Value: []byte("ct-r1"), CreatedAt: t0}, {Version: 2, Key: k2, Value: []byte("ct-r2"), CreatedAt: t1}},
		From:     from})
	return out
}

func TestKMSStateGolden(t *testing.T) {
	st, err := pebblestore.OpenProjections(t.TempDir(), pebblestore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	events := history()
	for _, e := range events {
		if err := st.Update(kmsstate.Name, e.Position, func(txn projections.Txn) error { return kmsstate.Apply(txn, e) }); err != nil {
			t.Fatalf("apply %s: %v", e.Type, err)
		}
	}
	if pos, _ := st.Position(kmsstate.Name); pos != uint64(len(events)) {
		t.Fatalf("position %d, want %d", pos, len(events))
	}
	acct := events[0].Account
	a, b, c := events[1].Instance, events[2].Instance, events[3].Instance
	k1, k2 := domain.NewKeyID(uid(5)), domain.NewKeyID(uid(6))
	must := func(v any, err error) any {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	got := map[string]any{
		"instances":             must(kmsstate.ListInstances(st, acct, "", 10)),
		"keys of a":             must(kmsstate.ListKeys(st, a, "", 10)),
		"keys of b":             must(kmsstate.ListKeys(st, b, "", 10)),
		"secrets of a":          must(kmsstate.ListSecrets(st, a, "", 10)),
		"keys of c (restored)":  must(kmsstate.ListKeys(st, c, "", 10)),
		"secrets of c":          must(kmsstate.ListSecrets(st, c, "", 10)),
		"where is k2":           must(kmsstate.KeyLocations(st, acct, k2)),
		"secrets using k2 in c": must(kmsstate.SecretsUsingKey(st, c, k2)),
		"k2 taken in eu":        must(kmsstate.RegionHasKey(st, acct, "eu-central-1", k2)),
		"where is k1":           must(kmsstate.KeyLocations(st, acct, k1)),
		"where is db":           must(kmsstate.SecretLocations(st, acct, "db")),
		"where is api":          must(kmsstate.SecretLocations(st, acct, "api")),
		"secrets using k1":      must(kmsstate.SecretsUsingKey(st, a, k1)),
		"k1 taken in region":    must(kmsstate.RegionHasKey(st, acct, "cn-hangzhou", k1)),
		"api taken (released)":  must(kmsstate.RegionHasSecret(st, acct, "cn-hangzhou", "api")),
		"account by token":      must(accountByToken(st, "tok")),
		"account by bad token":  must(accountByToken(st, "nope")),
	}
	gotJSON, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "kmsstate.golden.json")
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

	// Paging walks every key exactly once.
	p1 := must(kmsstate.ListInstances(st, acct, "", 2)).(kmsstate.Page[*domain.Instance])
	p2 := must(kmsstate.ListInstances(st, acct, p1.Next, 2)).(kmsstate.Page[*domain.Instance])
	if len(p1.Items) != 2 || p1.Next == "" || len(p2.Items) != 1 || p2.Next != "" || p2.Items[0].ID == p1.Items[1].ID {
		t.Fatalf("paging: %+v / %+v", p1, p2)
	}
}

func accountByToken(r projections.Reader, tok string) (string, error) {
	id, ok, err := kmsstate.AccountByToken(r, tok)
	if !ok {
		return "(none)", err
	}
	return string(id), err
}

// ApplyAll over bursts of any size leaves the read model Apply leaves event
// by event: an instance's record, changed by most events of a burst, is
// written once at its end.
func TestKMSStateApplyAllEqualsApply(t *testing.T) {
	events := history()
	dump := func(st *pebblestore.Projections) map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, p := range []string{"kms/", "acct/"} {
			err := st.Scan([]byte(p), nil, func(k, v []byte) (bool, error) {
				out[string(k)] = string(v)
				return true, nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	open := func() *pebblestore.Projections {
		t.Helper()
		st, err := pebblestore.OpenProjections(t.TempDir(), pebblestore.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	one := open()
	for _, e := range events {
		if err := one.Update(kmsstate.Name, e.Position, func(txn projections.Txn) error { return kmsstate.Apply(txn, e) }); err != nil {
			t.Fatalf("apply %s: %v", e.Type, err)
		}
	}
	want := dump(one)
	for _, size := range []int{2, 3, 5, 8, len(events)} {
		st := open()
		for i := 0; i < len(events); i += size {
			burst := events[i:min(i+size, len(events))]
			err := st.Update(kmsstate.Name, burst[len(burst)-1].Position, func(txn projections.Txn) error {
				return kmsstate.ApplyAll(txn, burst)
			})
			if err != nil {
				t.Fatalf("bursts of %d: apply at %d: %v", size, i, err)
			}
		}
		if diff := cmp.Diff(want, dump(st)); diff != "" {
			t.Errorf("bursts of %d: read model differs from event by event (-want +got):\n%s", size, diff)
		}
	}
}
