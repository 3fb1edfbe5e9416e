package backup

import (
	"context"
	"fmt"
	"math/rand/v2"
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
	ctx := context.Background()
	st := map[string][]string{}
	events := Must(e.Store.ReadStream(ctx, domain.KMSStream(in), 0, false, int(next)+1))
	keyDigest := func(ev domain.Event, m domain.Sealed) string {
		pt := Must(e.KMS.Sealer.Open(ctx, string(ev.Instance), m, domain.AssociatedData(ev.Account, ev.Stream, ev.ID)))
		d := commands.KeyVersionDigest(pt)
		return fmt.Sprintf("%x", d[:6])
	}
	for _, ev := range events {
		if ev.Revision >= next {
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

// TestRestoreAtRandomInstantEqualsReplay: restoring everything at a random
// backed-up instant gives exactly the state obtained by replaying the log
// from the start up to that instant, every version included.
func TestRestoreAtRandomInstantEqualsReplay(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	e := NewEngine(t, time.Date(2026, 5, 1, 6, 0, 0, 0, time.UTC))
	ctx := context.Background()
	src, b := e.EnabledBackup("UTC")
	var keys []domain.KeyID
	secrets := map[string]bool{}
	for range 80 {
		switch op := rng.IntN(10); {
		case op < 3 || len(keys) == 0:
			keys = append(keys, Must(e.KMS.CreateKey(ctx, e.Caller, src.ID, "")).ID)
		case op < 5:
			Must(e.KMS.RotateKey(ctx, e.Caller, keys[rng.IntN(len(keys))], ""))
		case op < 6:
			i := rng.IntN(len(keys))
			if e.KMS.DeleteKey(ctx, e.Caller, keys[i], "") == nil {
				keys = append(keys[:i], keys[i+1:]...)
			}
		case op < 8:
			name := fmt.Sprint("s", rng.IntN(6))
			if secrets[name] {
				Must(e.KMS.RotateSecret(ctx, e.Caller, name, "", domain.Plaintext("v")))
			} else {
				Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: name, Instance: src.ID, Key: keys[rng.IntN(len(keys))], Value: domain.Plaintext("v")}))
				secrets[name] = true
			}
		default:
			for name := range secrets {
				if e.KMS.DeleteSecret(ctx, e.Caller, name, "") == nil {
					delete(secrets, name)
				}
				break
			}
		}
		if rng.IntN(3) == 0 {
			e.Advance(time.Duration(1+rng.IntN(90)) * time.Minute)
		}
	}
	e.Advance(10 * time.Minute)
	cps := e.Checkpoints(b.ID)
	for round := range 3 {
		c := cps[rng.IntN(len(cps))]
		target := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: fmt.Sprint("eu-restore-", round), KeyQuota: 1000, SecretQuota: 1000}))
		res := Must(restore(t, e, RestoreReq{From: b.ID, Day: string(c.Day),
			At: c.At.Format(time.RFC3339), All: true, ToInstance: target.ID}))
		if !res.Applied || len(res.Validation) != 0 {
			t.Fatalf("restore at checkpoint %d (%s): applied %v, findings %+v, validation %+v", c.Seq, c.At, res.Applied, res.Plan.Findings, res.Validation)
		}
		want := logState(t, e, src.ID, c.Next)
		got := instanceState(t, e, target.ID)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("restore at checkpoint %d (%s) differs from the log replayed to revision %d (-log +restored):\n%s", c.Seq, c.At, c.Next, diff)
		}
		// A second apply is a no-op.
		again := Must(restore(t, e, RestoreReq{From: b.ID, Day: string(c.Day),
			At: c.At.Format(time.RFC3339), All: true, ToInstance: target.ID}))
		if !again.Applied || again.Restored != 0 || again.AlreadyPresent != len(res.Plan.Items) {
			t.Fatalf("retry: applied %v restored %d already %d of %d; findings %+v", again.Applied, again.Restored, again.AlreadyPresent, len(res.Plan.Items), again.Plan.Findings)
		}
	}
}
