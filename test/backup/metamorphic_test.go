package backup

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

var seedFlag = flag.Uint64("seed", 0, "seed of TestBackedUpStateEqualsReplay (0: random)")

// replayState is the state of a KMS instance obtained by replaying its
// stream from the start: "key/ID" or "secret/name" -> version count.
func replayState(t *testing.T, e *Engine, in domain.InstanceID, next uint64) map[string]uint32 {
	t.Helper()
	st := map[string]uint32{}
	events := Must(e.Store.ReadStream(context.Background(), domain.KMSStream(in), 0, false, int(next)+1))
	for _, ev := range events {
		if ev.Revision >= next {
			break
		}
		switch d := Must(ev.Decode()).(type) {
		case *domain.KeyCreated:
			st["key/"+string(d.Key)] = 1
		case *domain.KeyRotated:
			st["key/"+string(d.Key)]++
		case *domain.KeyDeleted:
			delete(st, "key/"+string(d.Key))
		case *domain.SecretCreated:
			st["secret/"+d.Name] = 1
		case *domain.SecretRotated:
			st["secret/"+d.Name]++
		case *domain.SecretDeleted:
			delete(st, "secret/"+d.Name)
		}
	}
	return st
}

// TestBackedUpStateEqualsReplay: for random histories of creates, rotates
// and deletes over random days, the state read from the backup (a day's
// full plus its slices, as the read model holds it) at every checkpoint
// equals the state obtained by replaying the log from the start to the same
// checkpoint.
func TestBackedUpStateEqualsReplay(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	for r := range rounds {
		s := seed + uint64(r)
		t.Run(fmt.Sprint("seed=", s), func(t *testing.T) { runHistory(t, s) })
	}
}

func runHistory(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var history []string
	defer func() {
		if t.Failed() {
			t.Logf("seed %d (rerun with -seed %d); history:\n%s", seed, seed, strings.Join(history, "\n"))
		}
	}()
	start := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(24*60)) * time.Minute)
	e := NewEngine(t, start)
	ctx := context.Background()
	in, b := e.EnabledBackup([]string{"UTC", "Asia/Shanghai", "America/New_York"}[rng.IntN(3)])
	history = append(history, fmt.Sprintf("start %s, zone %s", start, b.TimeZone))
	var keys []domain.KeyID
	secrets := map[string]domain.KeyID{}
	for step := range 120 {
		switch op := rng.IntN(10); {
		case op < 3 || len(keys) == 0:
			k := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, ""))
			keys = append(keys, k.ID)
			history = append(history, "create key "+string(k.ID))
		case op < 5:
			k := keys[rng.IntN(len(keys))]
			Must(e.KMS.RotateKey(ctx, e.Caller, k, ""))
			history = append(history, "rotate key "+string(k))
		case op < 6:
			i := rng.IntN(len(keys))
			err := e.KMS.DeleteKey(ctx, e.Caller, keys[i], "")
			if err == nil {
				history = append(history, "delete key "+string(keys[i]))
				keys = append(keys[:i], keys[i+1:]...)
			}
		case op < 8:
			name := fmt.Sprint("s", rng.IntN(8))
			if _, ok := secrets[name]; ok {
				Must(e.KMS.RotateSecret(ctx, e.Caller, name, "", domain.Plaintext("v")))
				history = append(history, "rotate secret "+name)
			} else {
				k := keys[rng.IntN(len(keys))]
				Must(e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: name, Instance: in.ID, Key: k, Value: domain.Plaintext("v")}))
				secrets[name] = k
				history = append(history, "create secret "+name)
			}
		default:
			for name := range secrets {
				if err := e.KMS.DeleteSecret(ctx, e.Caller, name, ""); err != nil {
					t.Fatal(err)
				}
				delete(secrets, name)
				history = append(history, "delete secret "+name)
				break
			}
		}
		if rng.IntN(4) == 0 {
			d := time.Duration(rng.IntN(3*60)) * time.Minute // up to 3 hours
			if rng.IntN(8) == 0 {
				d = time.Duration(rng.IntN(2*24*60)) * time.Minute // sometimes days
			}
			d += time.Minute
			e.Advance(d)
			history = append(history, fmt.Sprintf("step %d: advance %s", step, d))
		}
	}
	e.Advance(10 * time.Minute)
	b = Must(e.Backups.ShowBackupInstance(e.Caller, b.ID))
	cps := e.CheckpointEvents(b.ID)
	chainOK(t, cps)
	for i, c := range cps {
		// Every full, every checkpoint with a slice, and a sample of the
		// empty incrementals between them.
		if !c.Full && c.From == c.Next && i%17 != 0 {
			continue
		}
		want := replayState(t, e, in.ID, c.Next)
		got := map[string]uint32{}
		var items []backupdata.Item
		if err := backupdata.StateAt(e.Proj, b.DataRef(), c.Seq, func(it backupdata.Item) error {
			got[it.Kind+"/"+it.ID] = it.Versions
			items = append(items, it)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("checkpoint %d (%s, full %v): backed-up state differs from the replay (-replay +backup):\n%s", c.Seq, c.At, c.Full, diff)
		}
		sum := Must(backupdata.Checkpoint(e.Proj, b.DataRef(), c.Seq))
		if backupdata.StateDigest(items) != sum.StateDigest {
			t.Fatalf("checkpoint %d: state digest maintained incrementally differs from the digest of the state", c.Seq)
		}
	}
	if rep := Must(e.Checkpoints.VerifyBackup(ctx, e.Caller, b.ID)); len(rep.Findings) != 0 {
		t.Fatalf("verify: %+v", rep.Findings)
	}
	var names []string
	for n := range secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	history = append(history, "live secrets: "+strings.Join(names, " "))
}
