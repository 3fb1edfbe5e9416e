package e2e

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/adapters/natsjs"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

var faultSeed = flag.Uint64("fault.seed", 0, "seed of TestFaultsOnAReplicatedCluster (0: random)")

// nats-server, built once for the package beside the kmsbackup binary.
var (
	natsServerOnce sync.Once
	natsServerBin  string
)

// natsServerBinary builds nats-server on first use (natsserver.BuildServer).
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsServerOnce.Do(func() { natsServerBin = natsserver.BuildServer(t, filepath.Dir(binary)) })
	if natsServerBin == "" {
		t.Fatal("nats-server could not be built (see the first test that needed it)")
	}
	return natsServerBin
}

const (
	// faultWriters write at once, two to each KMS instance.
	faultWriters = 4
	// faultWritesPerStep is how many writes each writer sends during each
	// advance of the clock.
	faultWritesPerStep = 5
	// faultStep is an ordinary advance of the clock.
	faultStep = "1h"
)

var (
	faultDay = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	// faultEnd is where the clock stops: past the next midnight's full and
	// two incrementals.
	faultEnd = time.Date(2026, 5, 2, 0, 10, 0, 0, time.UTC)
)

// TestFaultsOnAReplicatedCluster runs three engine nodes on a JetStream
// cluster of three nats-server processes (every stream with 3 replicas)
// through a day of schedules on their shared manual clock, under writes:
// four writers create, rotate and delete keys and secrets of two KMS
// instances, each backed up by its own backup instance, through whichever
// nodes are up, while the clock is advanced through one node or two at
// once. Mid-way the NATS server that leads the log's stream is killed
// with SIGKILL during an advance (and started again on its store hours
// later), then one engine node is killed with SIGKILL during an advance
// through it (and started again on its data directory hours later).
// Afterwards, through every node: every acknowledged create, rotate and
// delete is in the state (writes never answered may or may not be); every
// checkpoint due, a full at each midnight and an incremental every 5
// minutes, is in the chain exactly once (no gap, no duplicate, the digests
// chained); a whole-instance restore of the day restores the same items
// and versions, which hold every acknowledged write; replays give the
// same digest; verify finds nothing.
func TestFaultsOnAReplicatedCluster(t *testing.T) {
	seed := *faultSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -fault.seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx := context.Background()

	pc := natsserver.StartProcessCluster(t, natsServerBinary(t), 3)
	tok := commands.NewToken()
	flags := []string{"--event-log", pc.URL(), "--bus", pc.URL(), "--nats-replicas", "3",
		"--master-key-file", masterKeyFile(t), "--dev-token", tok, "--clock", "manual"}
	first := startNode(t, append(slices.Clone(flags), "--clock-start", faultDay.Format(time.RFC3339))...)
	f := newFleet(tok, first, startNode(t, flags...), startNode(t, flags...))
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, s := range f.nodes {
			t.Logf("engine node %d, last lines:\n%s", i, lastLines(s.Logs(), 60))
		}
		for i := range 3 {
			t.Logf("NATS server %d, last lines:\n%s", i, lastLines(pc.Log(i), 30))
		}
	})

	// Two KMS instances, each backed up from the start of the day.
	var insts, bkps []string
	for i := range 2 {
		c := f.client(i)
		in, err := c.CreateInstance(ctx, httpapi.CreateInstanceRequest{Region: faultRegion})
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.CreateBackupInstance(ctx, httpapi.CreateBackupInstanceRequest{Region: faultRegion, ViewableDays: 7, Term: "1y"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.EnableBackupInstance(ctx, b.ID, httpapi.EnableBackupInstanceRequest{KMSInstance: in.ID, Alias: fmt.Sprintf("prod-%d", i), TimeZone: "UTC"}); err != nil {
			t.Fatal(err)
		}
		insts, bkps = append(insts, in.ID), append(bkps, b.ID)
	}
	writers := make([]*faultWriter, faultWriters)
	for n := range writers {
		writers[n] = newFaultWriter(n, n%2, insts[n%2], seed)
	}

	now := func() time.Time {
		t.Helper()
		var err error
		for _, i := range f.up() {
			var v httpapi.DevClockView
			if v, err = f.client(i).DevClock(ctx); err == nil {
				return v.Now
			}
		}
		t.Fatalf("no node shows the clock: %v", err)
		return time.Time{}
	}
	// waitClock waits until the shared clock has reached at.
	waitClock := func(at time.Time) {
		t.Helper()
		waitFor(t, "the clock reaching "+at.Format(time.RFC3339), time.Minute, func() []string {
			if n := now(); n.Before(at) {
				return []string{"the clock is at " + n.Format(time.RFC3339)}
			}
			return nil
		})
	}
	// writing is set while the writers write during each step.
	writing := true
	// step advances the clock by d through each node of through at once
	// while every writer sends faultWritesPerStep writes through the nodes
	// up (while writing); during, when not nil, runs meanwhile. It returns
	// the error of each advance.
	step := func(d string, through []int, during func()) []error {
		t.Helper()
		var wg sync.WaitGroup
		for _, w := range writers {
			if writing {
				wg.Go(func() { w.run(f, faultWritesPerStep) })
			}
		}
		errs := make([]error, len(through))
		for j, i := range through {
			c := f.client(i)
			wg.Go(func() {
				actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				_, errs[j] = c.AdvanceClock(actx, d)
			})
		}
		if during != nil {
			during()
		}
		wg.Wait()
		return errs
	}
	mustStep := func(d string, through []int, during func()) {
		t.Helper()
		for j, err := range step(d, through, during) {
			if err != nil {
				t.Fatalf("advance by %s through node %d: %v", d, through[j], err)
			}
		}
	}
	// runUntil advances the clock an hour at a time until it reaches
	// until: through each node up in turn, every third step through two
	// at once.
	turn := 0
	runUntil := func(until time.Time) {
		t.Helper()
		for now().Before(until) {
			up := f.up()
			through := []int{up[turn%len(up)]}
			if turn%3 == 2 {
				through = append(through, up[(turn+1)%len(up)])
			}
			turn++
			mustStep(faultStep, through, nil)
		}
	}
	at := func(hours int) time.Time { return faultDay.Add(time.Duration(hours) * time.Hour) }

	runUntil(at(6))
	// The NATS server leading the log's stream dies during an advance.
	natsVictim := pc.StreamLeader(natsjs.DefaultStream)
	from := now()
	through := rng.IntN(3)
	errs := step("3h", []int{through}, func() {
		waitClock(from.Add(30 * time.Minute))
		pc.Kill(natsVictim)
		t.Logf("NATS server %d (leader of the log's stream) killed at %s", natsVictim, now().Format(time.RFC3339))
	})
	if errs[0] != nil {
		// An advance reports the work it could not even record as failed
		// (the log unavailable): the next one goes on from where it
		// stopped.
		t.Logf("the advance through node %d during the kill: %v", through, errs[0])
	}
	runUntil(at(11))
	pc.Restart(natsVictim)
	runUntil(at(12))

	// An engine node dies during an advance through it.
	victim := rng.IntN(3)
	from = now()
	errs = step("5h", []int{victim}, func() {
		waitClock(from.Add(30 * time.Minute))
		f.kill(victim)
	})
	killedAt := now()
	if errs[0] == nil || !killedAt.Before(from.Add(5*time.Hour)) {
		t.Fatalf("the kill of node %d did not interrupt its advance: it answered %v, the clock at %s", victim, errs[0], killedAt)
	}
	t.Logf("engine node %d killed at %s, %s into its advance", victim, killedAt.Format(time.RFC3339), killedAt.Sub(from))
	runUntil(at(17))
	f.restart(victim)
	runUntil(at(22))

	// The writers stop (what they wrote is in the day's data); the clock
	// goes past midnight, through the next day's full and two
	// incrementals.
	writing = false
	if rest := faultEnd.Sub(now()); rest > 0 {
		mustStep(fmt.Sprintf("%ds", int(rest.Seconds())), []int{rng.IntN(3)}, nil)
	}
	if n := now(); !n.Equal(faultEnd) {
		t.Fatalf("the clock is at %s, want %s", n, faultEnd)
	}
	for _, w := range writers {
		t.Log(w.summary())
	}

	t.Run("acknowledged writes", func(t *testing.T) { checkAcknowledged(t, f, writers, insts) })
	t.Run("checkpoints", func(t *testing.T) { checkChain(t, f, pc.URL(), bkps) })
	t.Run("restores", func(t *testing.T) { checkRestores(t, f, writers, bkps) })
}

// startNode starts an engine node on a data directory of its own, again
// if its start fails, at most three times in all: a node started while
// one of the JetStream streams it creates elects a leader may fail its
// start (README, known limits: start it again), which the cluster's
// first streams sometimes do on a loaded machine.
func startNode(t *testing.T, flags ...string) *Server {
	t.Helper()
	s := &Server{t: t, DataDir: t.TempDir(), extra: flags}
	for attempt := 1; ; attempt++ {
		err := s.launch()
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("a node's start failed, started again: %s", lastLines(err.Error(), 3))
	}
	t.Cleanup(s.Stop)
	return s
}

// checkAcknowledged: the live state every node shows holds every
// acknowledged write (expectItems) and is the same on every node.
func checkAcknowledged(t *testing.T, f *fleet, writers []*faultWriter, insts []string) {
	ctx := context.Background()
	for n, inst := range insts {
		waitFor(t, fmt.Sprintf("the keys and secrets of KMS instance %d through every node", n), time.Minute, func() []string {
			var problems []string
			var first map[string]seenItem
			for i := range f.nodes {
				got, err := liveItems(ctx, f.client(i), inst)
				if err != nil {
					return []string{fmt.Sprintf("node %d: %v", i, err)}
				}
				for _, p := range expectItems(writers, n, got, false) {
					problems = append(problems, fmt.Sprintf("node %d: %s", i, p))
				}
				if i == 0 {
					first = got
				} else if d := cmp.Diff(first, got, cmp.AllowUnexported(seenItem{})); d != "" {
					problems = append(problems, fmt.Sprintf("node %d differs from node 0 (-0 +%d):\n%s", i, i, d))
				}
			}
			return problems
		})
	}
}

// checkChain: the log holds, for each backup instance, an unbroken chain
// (chainIntact) of the checkpoints the schedule asks for from the start of
// the day to faultEnd, each once: a full at each midnight (UTC) and an
// incremental 5 minutes after the checkpoint before. A checkpoint whose
// work failed (a NATS server dying under it) is retried, as the scheduler
// documents, as one catch-up checkpoint at the retry, a few seconds later,
// and the next ones follow it: that is accepted only where the log
// records the failure (BackupFailing) between the two checkpoints. Every
// node lists that same chain (data checkpoints).
func checkChain(t *testing.T, f *fleet, url string, bkps []string) {
	ctx := context.Background()
	for _, bkp := range bkps {
		cps, failedBefore := backupChain(t, url, natsjs.Options{Replicas: 3}, bkp)
		chainIntact(t, bkp, cps)
		var logged, retried []string
		for i, c := range cps {
			logged = append(logged, fmt.Sprintf("%d %s full=%v", c.Seq, c.At.UTC().Format(time.RFC3339), c.Full))
			if i == 0 {
				if !c.At.Equal(faultDay) || !c.Full {
					t.Fatalf("%s: the first checkpoint is %s, want the full at %s", bkp, logged[0], faultDay)
				}
				continue
			}
			due, full := nextDue(cps[i-1].At)
			switch {
			case c.At.Equal(due) && c.Full == full:
			case failedBefore[i] != "" && c.At.After(due) && c.At.Sub(due) <= commands.RetryMax && c.Full == (c.At.YearDay() != cps[i-1].At.YearDay()):
				retried = append(retried, fmt.Sprintf("%s (due %s; failed: %s)", logged[i], due.Format(time.RFC3339), failedBefore[i]))
			default:
				t.Fatalf("%s: checkpoint %s follows %s, want the one due at %s (full=%v)%s", bkp, logged[i], logged[i-1], due.Format(time.RFC3339), full,
					map[bool]string{true: ", or its retry after the failure recorded", false: ""}[failedBefore[i] != ""])
			}
		}
		if due, _ := nextDue(cps[len(cps)-1].At); !due.After(faultEnd) {
			t.Fatalf("%s: the chain ends at %s, but the checkpoint due at %s is not there", bkp, logged[len(logged)-1], due.Format(time.RFC3339))
		}
		t.Logf("%s: %d checkpoints, %d taken at their retry after a recorded failure %q", bkp, len(cps), len(retried), retried)
		for i := range f.nodes {
			waitFor(t, fmt.Sprintf("the checkpoints of %s through node %d", bkp, i), time.Minute, func() []string {
				var listed []string
				for _, day := range []string{"2026-05-01", "2026-05-02"} {
					l, err := f.client(i).ListDayCheckpoints(ctx, bkp, day)
					if err != nil {
						return []string{err.Error()}
					}
					for _, c := range l.Items {
						at, _ := time.Parse(time.RFC3339, c.At)
						listed = append(listed, fmt.Sprintf("%d %s full=%v", c.Seq, at.UTC().Format(time.RFC3339), c.Full))
					}
				}
				if d := cmp.Diff(logged, listed); d != "" {
					return []string{"(-log +listed)\n" + d}
				}
				return nil
			})
		}
	}
}

// nextDue is when the checkpoint after one at prev is due, and whether it
// is a full: 5 minutes later, or the next midnight (UTC) when that comes
// first.
func nextDue(prev time.Time) (time.Time, bool) {
	midnight := time.Date(prev.Year(), prev.Month(), prev.Day()+1, 0, 0, 0, 0, time.UTC)
	if inc := prev.Add(5 * time.Minute); inc.Before(midnight) {
		return inc, false
	}
	return midnight, true
}

// backupChain reads a backup instance's stream from the log (opened with
// opts: with fewer replicas than its stream has, it would scale it down):
// its checkpoints in order, and for each the reasons of the failures of
// its work (BackupFailing) recorded after the checkpoint before it (""
// when none was).
func backupChain(t *testing.T, url string, opts natsjs.Options, id string) ([]*domain.BackupCheckpointed, []string) {
	t.Helper()
	ctx := context.Background()
	l, err := natsjs.Open(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var cps []*domain.BackupCheckpointed
	var failedBefore, failed []string
	for from := uint64(0); ; {
		page, err := l.ReadStream(ctx, domain.BackupStream(domain.BackupID(id)), from, false, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			from = e.Revision + 1
			if e.Type != domain.TypeBackupFailing && e.Type != domain.TypeBackupCheckpointed {
				continue
			}
			d, err := e.Decode()
			if err != nil {
				t.Fatal(err)
			}
			switch d := d.(type) {
			case *domain.BackupFailing:
				failed = append(failed, d.Reason)
			case *domain.BackupCheckpointed:
				cps, failedBefore, failed = append(cps, d), append(failedBefore, strings.Join(failed, "; ")), nil
			}
		}
		if len(page) < 500 {
			return cps, failedBefore
		}
	}
}

// checkRestores: through every node, a whole-instance restore of the day
// into a new KMS instance of a region of its own restores the same items
// with the same versions, which hold every acknowledged write (deleted
// items too, as they stood before their delete); the replay of the day
// gives the same digest; verify finds nothing.
func checkRestores(t *testing.T, f *fleet, writers []*faultWriter, bkps []string) {
	ctx := context.Background()
	regions := []string{"eu-central-1", "ap-southeast-1", "us-west-1"}
	for n, bkp := range bkps {
		var restored []string
		var digest string
		for i, region := range regions {
			c := f.client(i)
			target, err := c.CreateInstance(ctx, httpapi.CreateInstanceRequest{Region: region})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Restore(ctx, httpapi.RestoreRequest{From: bkp, Day: "2026-05-01", All: true, ToInstance: target.ID})
			if err != nil {
				t.Fatalf("restore of %s through node %d: %v", bkp, i, err)
			}
			if !res.Applied || len(res.Plan.Findings) > 0 || len(res.Validation) > 0 {
				t.Fatalf("restore of %s through node %d: applied %v, findings %v, validation %v", bkp, i, res.Applied, res.Plan.Findings, res.Validation)
			}
			got := map[string]seenItem{}
			var list []string
			for _, it := range res.Plan.Items {
				vs := make([]uint32, it.Versions)
				for v := range vs {
					vs[v] = uint32(v + 1)
				}
				got[it.ID] = seenItem{kind: it.Kind, versions: vs}
				list = append(list, fmt.Sprintf("%s %s v%d %s", it.Kind, it.ID, it.Versions, it.Status))
			}
			if p := expectItems(writers, n, got, true); len(p) > 0 {
				t.Fatalf("restore of %s through node %d:\n%s", bkp, i, strings.Join(p, "\n"))
			}
			if restored == nil {
				restored = list
			} else if d := cmp.Diff(restored, list); d != "" {
				t.Fatalf("restores of %s through node 0 and node %d differ (-0 +%d):\n%s", bkp, i, i, d)
			}

			r, err := c.Replay(ctx, bkp, "2026-05-01", "")
			if err != nil {
				t.Fatal(err)
			}
			if digest == "" {
				digest = r.Digest
			} else if r.Digest != digest {
				t.Fatalf("replay of %s through node %d: digest %s, through node 0 %s", bkp, i, r.Digest, digest)
			}
			v, err := c.VerifyBackup(ctx, bkp)
			if err != nil {
				t.Fatal(err)
			}
			if !v.OK || len(v.Findings) > 0 {
				t.Fatalf("verify of %s through node %d: %+v", bkp, i, v.Findings)
			}
		}
		t.Logf("backup %d: %d items restored through each node", n, len(restored))
	}
	for i, s := range f.nodes {
		if code := readyz(t, s); code != 200 {
			t.Fatalf("/readyz of node %d: %d", i, code)
		}
	}
}
