package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// TestUniqueNamesAcrossNodes: two engine nodes (each engine.New with its
// own read models and locks) share one log: one Pebble store, or one
// JetStream stream. For each of 1,000 secret names, the first node creates
// it in instance a while the second creates it in instance b of the same
// region, both released at the same instant: exactly one of the two
// succeeds, the other is refused with domain.ErrAlreadyExists, and the log
// and both read models hold the name in one instance.
func TestUniqueNamesAcrossNodes(t *testing.T) {
	url, _ := natsserver.Start(t)
	for _, kind := range logKinds {
		t.Run("log="+kind, func(t *testing.T) {
			ctx := t.Context()
			nodes := twoNodes(t, kind, url, ingestEpoch)
			n1 := nodes[0]
			c := n1.newCaller()
			var ins [2]*domain.Instance
			var keys [2]domain.KeyID
			for i, n := range nodes {
				if err := n.settle(ctx); err != nil {
					t.Fatal(err)
				}
				in, err := n.KMS.CreateInstance(ctx, c, commands.CreateInstanceInput{Region: region, KeyQuota: 10, SecretQuota: domain.MaxQuota})
				if err != nil {
					t.Fatal(err)
				}
				k, err := n.KMS.CreateKey(ctx, c, in.ID, "")
				if err != nil {
					t.Fatal(err)
				}
				ins[i], keys[i] = in, k.ID
			}
			const names = 1000
			var errs [2][names]error
			raceInPairs(names, func(i, j int) {
				_, errs[j][i] = nodes[j].KMS.CreateSecret(ctx, c, commands.CreateSecretInput{Name: secretName(i),
					Instance: ins[j].ID, Key: keys[j], Value: domain.Plaintext("v")})
			})
			winner := make([]domain.InstanceID, names)
			wins := [2]int{}
			for i := range names {
				e1, e2 := errs[0][i], errs[1][i]
				switch {
				case e1 == nil && errors.Is(e2, domain.ErrAlreadyExists):
					winner[i] = ins[0].ID
					wins[0]++
				case e2 == nil && errors.Is(e1, domain.ErrAlreadyExists):
					winner[i] = ins[1].ID
					wins[1]++
				default:
					t.Fatalf("%s: node 1: %v; node 2: %v; want one success and one ErrAlreadyExists", secretName(i), e1, e2)
				}
			}
			t.Logf("wins: node 1 %d, node 2 %d", wins[0], wins[1])
			// The log: each name created once, in the winner's instance.
			created := map[string][]domain.InstanceID{}
			for _, in := range ins {
				for _, e := range readStream(t, n1.log, domain.KMSStream(in.ID)) {
					if e.Type != domain.TypeSecretCreated {
						continue
					}
					d, err := e.Decode()
					if err != nil {
						t.Fatal(err)
					}
					name := d.(*domain.SecretCreated).Name
					created[name] = append(created[name], in.ID)
				}
			}
			// The read models of both nodes: the name in one instance.
			for _, n := range nodes {
				if err := n.settle(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for i := range names {
				name := secretName(i)
				if got := created[name]; len(got) != 1 || got[0] != winner[i] {
					t.Fatalf("%s created in %v, want once in %s", name, got, winner[i])
				}
				for j, n := range nodes {
					locs, err := kmsstate.SecretLocations(n.proj, c.Account, name)
					if err != nil || len(locs) != 1 || locs[0].Instance != winner[i] {
						t.Fatalf("node %d's read model: %s in %+v (%v), want in %s alone", j+1, name, locs, err, winner[i])
					}
				}
			}
		})
	}
}

// TestUniqueKeyIDsAcrossNodesByRestore: two engine nodes share one log, as
// in TestUniqueNamesAcrossNodes. A backup holds 1,000 keys of an instance
// of one region; at the same instant the first node restores it whole
// into instance a and the second into instance b of another region. Key
// IDs are unique in a region: whatever the interleaving of their batches,
// each key ID ends up in exactly one of the two instances, in the log and
// in both read models.
func TestUniqueKeyIDsAcrossNodesByRestore(t *testing.T) {
	url, _ := natsserver.Start(t)
	const keys = 1000
	for _, kind := range logKinds {
		t.Run("log="+kind, func(t *testing.T) {
			ctx := t.Context()
			nodes := twoNodes(t, kind, url, scalingStart)
			n1, n2 := nodes[0], nodes[1]
			c := n1.newCaller()
			src, bk, err := n1.enableNew(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make([]error, 16)
			for w := range errs {
				wg.Go(func() {
					for i := w; i < keys && errs[w] == nil; i += len(errs) {
						_, errs[w] = n1.KMS.CreateKey(ctx, c, src.ID, "")
					}
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			cur, err := backupstate.Get(n1.proj, bk.ID)
			if err != nil {
				t.Fatal(err)
			}
			due, _ := cur.NextCheckpoint(time.UTC)
			if _, _, err := n1.driver.Advance(ctx, due.At.Sub(n1.clock.Now())+time.Minute); err != nil {
				t.Fatal(err)
			}
			n2.clock.Set(n1.clock.Now())
			day := domain.DayOf(n1.clock.Now(), time.UTC)
			var ins [2]*domain.Instance
			for i, n := range nodes {
				if err := n.settle(ctx); err != nil {
					t.Fatal(err)
				}
				if ins[i], err = n.KMS.CreateInstance(ctx, c, commands.CreateInstanceInput{Region: "eu-central-1", KeyQuota: domain.MaxQuota}); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range nodes {
				if err := n.settle(ctx); err != nil {
					t.Fatal(err)
				}
			}
			start := make(chan struct{})
			var results [2]*commands.RestoreResult
			var rerrs [2]error
			for i, n := range nodes {
				wg.Go(func() {
					<-start
					results[i], rerrs[i] = n.Restores.Restore(ctx, c, commands.RestoreRequest{From: bk.ID,
						Point: commands.RestorePoint{Day: day}, Selection: domain.SelectAll(), Target: ins[i].ID}, nil)
				})
			}
			close(start)
			wg.Wait()
			for i := range nodes {
				restored := 0
				if results[i] != nil {
					restored = results[i].Restored
				}
				t.Logf("node %d restored %d keys (%v)", i+1, restored, rerrs[i])
				if rerrs[i] != nil && !errors.Is(rerrs[i], domain.ErrAlreadyExists) {
					t.Errorf("node %d's restore: %v, want success or ErrAlreadyExists", i+1, rerrs[i])
				}
			}
			where := map[domain.KeyID][]domain.InstanceID{}
			for _, in := range ins {
				for _, e := range readStream(t, n1.log, domain.KMSStream(in.ID)) {
					if e.Type != domain.TypeKeyRestored {
						continue
					}
					d, err := e.Decode()
					if err != nil {
						t.Fatal(err)
					}
					id := d.(*domain.KeyRestored).Key
					where[id] = append(where[id], in.ID)
				}
			}
			if len(where) != keys {
				t.Fatalf("%d key IDs restored, want %d", len(where), keys)
			}
			for _, n := range nodes {
				if err := n.settle(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for id, got := range where {
				if len(got) != 1 {
					t.Fatalf("key %s restored into %v, want one instance", id, got)
				}
				for j, n := range nodes {
					locs, err := kmsstate.KeyLocations(n.proj, c.Account, id)
					if err != nil {
						t.Fatal(err)
					}
					in := 0
					for _, l := range locs {
						if l.Region == "eu-central-1" {
							in++
							if l.Instance != got[0] {
								t.Fatalf("node %d's read model has key %s in %s, the log in %s", j+1, id, l.Instance, got[0])
							}
						}
					}
					if in != 1 {
						t.Fatalf("node %d's read model has key %s %d times in the region", j+1, id, in)
					}
				}
			}
		})
	}
}

// TestUniqueBindingsAcrossNodes: two engine nodes share one log, as in
// TestUniqueNamesAcrossNodes. For each of 200 KMS instances, the first
// node enables one backup instance for it while the second enables
// another, both released at the same instant: exactly one of the two
// succeeds, the other is refused with domain.ErrAlreadyExists, and the
// log (one BackupEnabled, one claim in the binding stream) and both read
// models bind the KMS instance to the winner alone.
func TestUniqueBindingsAcrossNodes(t *testing.T) {
	url, _ := natsserver.Start(t)
	const kmsInstances = 200
	for _, kind := range logKinds {
		t.Run("log="+kind, func(t *testing.T) {
			ctx := t.Context()
			nodes := twoNodes(t, kind, url, scalingStart)
			n1 := nodes[0]
			c := n1.newCaller()
			ins := make([]*domain.Instance, kmsInstances)
			backups := make([][2]domain.BackupID, kmsInstances)
			for i := range ins {
				in, err := n1.KMS.CreateInstance(ctx, c, commands.CreateInstanceInput{Region: region, KeyQuota: 10, SecretQuota: 10})
				if err != nil {
					t.Fatal(err)
				}
				ins[i] = in
				for j, n := range nodes {
					b, err := n.Backups.CreateBackupInstance(ctx, c, commands.CreateBackupInput{Region: region, ViewableDays: 30, Term: "1y"})
					if err != nil {
						t.Fatal(err)
					}
					backups[i][j] = b.ID
				}
			}
			for _, n := range nodes {
				if err := n.settle(ctx); err != nil {
					t.Fatal(err)
				}
			}
			errs := make([][2]error, kmsInstances)
			raceInPairs(kmsInstances, func(i, j int) {
				_, errs[i][j] = nodes[j].Backups.EnableBackupInstance(ctx, c, backups[i][j],
					commands.EnableInput{KMSInstance: ins[i].ID, Alias: "race", TimeZone: "UTC"})
			})
			winner := make([]domain.BackupID, kmsInstances)
			wins := [2]int{}
			for i := range ins {
				e1, e2 := errs[i][0], errs[i][1]
				switch {
				case e1 == nil && errors.Is(e2, domain.ErrAlreadyExists):
					winner[i] = backups[i][0]
					wins[0]++
				case e2 == nil && errors.Is(e1, domain.ErrAlreadyExists):
					winner[i] = backups[i][1]
					wins[1]++
				default:
					t.Fatalf("KMS instance %s: node 1: %v; node 2: %v; want one success and one ErrAlreadyExists", ins[i].ID, e1, e2)
				}
			}
			t.Logf("wins: node 1 %d, node 2 %d", wins[0], wins[1])
			for _, n := range nodes {
				if err := n.settle(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for i, in := range ins {
				// The log: the winner enabled once, the loser never, and
				// the binding stream holds the winner's claim alone.
				for _, id := range backups[i] {
					enabled := 0
					for _, e := range readStream(t, n1.log, domain.BackupStream(id)) {
						if e.Type == domain.TypeBackupEnabled {
							enabled++
						}
					}
					want := 0
					if id == winner[i] {
						want = 1
					}
					if enabled != want {
						t.Fatalf("KMS instance %s: backup instance %s enabled %d times, want %d (the winner is %s)", in.ID, id, enabled, want, winner[i])
					}
				}
				claims := readStream(t, n1.log, domain.BindingStream(in.ID))
				if len(claims) != 1 {
					t.Fatalf("KMS instance %s: binding stream of %d events, want the winner's claim", in.ID, len(claims))
				}
				d, err := claims[0].Decode()
				if err != nil {
					t.Fatal(err)
				}
				if cl, ok := d.(*domain.BindingClaimed); !ok || cl.Backup != winner[i] {
					t.Fatalf("KMS instance %s: binding stream holds %+v, want the claim of %s", in.ID, d, winner[i])
				}
				// The read models of both nodes: bound to the winner.
				for j, n := range nodes {
					id, ok, err := backupstate.BoundTo(n.proj, in.ID)
					if err != nil || !ok || id != winner[i] {
						t.Fatalf("node %d's read model binds KMS instance %s to %q (%t, %v), want %s", j+1, in.ID, id, ok, err, winner[i])
					}
				}
			}
		})
	}
}

// twoNodes opens two engine nodes of kind sharing one log, started at
// start; t closes them.
func twoNodes(t *testing.T, kind, url string, start time.Time) [2]*node {
	root := t.TempDir()
	urls := natsURLs{one: url}
	n1 := openNode(t, kind, urls, filepath.Join(root, "n1"), start)
	n2, err := newNode(kind, urls, filepath.Join(root, "n2"), start, n1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n2.close)
	return [2]*node{n1, n2}
}

// raceInPairs runs, for each i below n, do(i, 0) and do(i, 1) (the two
// nodes' calls) in two goroutines released at the same instant, 8 such
// pairs at a time, and returns when all are done.
func raceInPairs(n int, do func(i, j int)) {
	const lanes = 8
	var lanesWG sync.WaitGroup
	for lane := range lanes {
		lanesWG.Go(func() {
			for i := lane; i < n; i += lanes {
				start := make(chan struct{})
				var wg sync.WaitGroup
				for j := range 2 {
					wg.Go(func() {
						<-start
						do(i, j)
					})
				}
				close(start)
				wg.Wait()
			}
		})
	}
	lanesWG.Wait()
}

func secretName(i int) string { return fmt.Sprintf("race-%04d", i) }

// readStream reads a whole stream.
func readStream(t *testing.T, l commands.StreamReader, stream string) []domain.Event {
	t.Helper()
	var out []domain.Event
	for {
		page, err := l.ReadStream(context.Background(), stream, uint64(len(out)), false, 1000)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if len(page) < 1000 {
			return out
		}
	}
}
