package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/adapters/bus"
	"github.com/kmsbackup/kmsbackup/adapters/clock"
	"github.com/kmsbackup/kmsbackup/adapters/envelope"
	idsource "github.com/kmsbackup/kmsbackup/adapters/ids"
	"github.com/kmsbackup/kmsbackup/adapters/natsjs"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
	"github.com/kmsbackup/kmsbackup/test/natsserver"
)

// Kill stops the server with SIGKILL: no shutdown, no flush.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// cluster is a NATS server and the flags that make engine nodes share it.
type cluster struct {
	url     string
	flags   []string
	start   string // the shared clock's start, passed to the first node
	started bool
	tok     string
	keyFile string
}

func newCluster(t *testing.T, start string) *cluster {
	t.Helper()
	url, stop := natsserver.Start(t)
	t.Cleanup(stop)
	keyFile := masterKeyFile(t)
	tok := commands.NewToken()
	return &cluster{url: url, tok: tok, keyFile: keyFile, start: start, flags: []string{"--event-log", url, "--bus", url, "--master-key-file", keyFile,
		"--dev-token", tok, "--clock", "manual"}}
}

// masterKeyFile writes a fresh master key to a file of its own (mode
// 0600), as --master-key-file takes it, and returns its path.
func masterKeyFile(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyFile := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile
}

// node starts one engine node of the cluster on its own data directory.
// The first starts the shared clock; the others read it from the log.
func (c *cluster) node(t *testing.T, dataDir string) *Server {
	t.Helper()
	flags := c.flags
	if !c.started {
		flags = append(slices.Clone(flags), "--clock-start", c.start)
		c.started = true
	}
	return StartServer(t, dataDir, flags...)
}

// checkpoints reads the checkpoint events of a backup instance straight
// from the shared log.
func checkpoints(t *testing.T, url string, id string) []*domain.BackupCheckpointed {
	t.Helper()
	cps, _ := backupChain(t, url, natsjs.Options{}, id)
	return cps
}

// chainIntact asserts a gap-free, duplicate-free chain of checkpoints.
func chainIntact(t *testing.T, id string, cps []*domain.BackupCheckpointed) {
	t.Helper()
	for i, c := range cps {
		if c.Seq != uint64(i+1) {
			t.Fatalf("checkpoint %d has sequence number %d: a gap or a duplicate", i+1, c.Seq)
		}
		if i == 0 {
			continue
		}
		p := cps[i-1]
		if c.From != p.Next || c.PrevDigest != p.Digest || c.At.Before(p.At) {
			t.Fatalf("checkpoint %d does not follow %d: from %d after next %d, at %s after %s", c.Seq, p.Seq, c.From, p.Next, c.At, p.At)
		}
		if c.Digest != domain.CheckpointDigest(domain.BackupID(id), c) {
			t.Fatalf("checkpoint %d: digest does not match", c.Seq)
		}
	}
}

// TestTwoNodesShareTheWork runs two engine processes on one NATS JetStream
// log and bus, with a dev clock they share: a day of schedules, advanced
// through either node and through both at once, with one node killed
// mid-run. The chain of checkpoints has no gap and no duplicate, the
// survivor completes the day, and a restore through either node gives the
// same result. A node's data directory holds only projections: a node on a
// fresh one shows the same.
func TestTwoNodesShareTheWork(t *testing.T) {
	c := newCluster(t, "2026-05-01T00:00:00Z")
	a := c.node(t, "")
	b := c.node(t, "")
	tok := c.tok

	inst := str(t, a.MustJSON(tok, "kms", "instance", "create", "--region", "cn-hangzhou"), "id")
	key := str(t, a.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "orders"), "id")
	ct := strings.TrimSpace(a.CLI(tok, "", "kms", "encrypt", "--key", key, "--plaintext", "hello from node a").Stdout)
	b.MustJSON(tok, "kms", "key", "rotate", key) // through the other node
	b.MustJSON(tok, "kms", "secret", "create", "db", "--instance", inst, "--key", key, "--value", "pw-1")
	bkp := str(t, a.MustJSON(tok, "backup-instance", "create", "--region", "cn-hangzhou", "--viewable-days", "7", "--term", "1y"), "id")
	b.MustJSON(tok, "backup-instance", "enable", bkp, "--kms-instance", inst, "--alias", "prod", "--time-zone", "UTC")

	advance := func(s *Server, d string) Result { return s.CLI(tok, "", "dev", "clock", "advance", d) }
	mustAdvance := func(s *Server, d string) {
		t.Helper()
		if r := advance(s, d); r.Code != 0 {
			t.Fatalf("advance %s: exit %d: %s\nserver output:\n%s", d, r.Code, r.Stderr, lastLines(s.Logs(), 40))
		}
	}
	// Two hours through a, two through b, changes through both.
	mustAdvance(a, "2h")
	a.MustJSON(tok, "kms", "secret", "rotate", "db", "--value", "pw-2")
	mustAdvance(b, "2h")
	k2 := str(t, b.MustJSON(tok, "kms", "key", "create", "--instance", inst, "--description", "later"), "id")
	// Both nodes at once: every checkpoint is claimed by exactly one.
	var wg sync.WaitGroup
	results := make([]Result, 2)
	for i, s := range []*Server{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = advance(s, "3h") }()
	}
	wg.Wait()
	for i, r := range results {
		if r.Code != 0 {
			t.Fatalf("concurrent advance through node %d: exit %d: %s", i, r.Code, r.Stderr)
		}
	}
	// Kill a in the middle of a long advance.
	before, err := time.Parse(time.RFC3339, str(t, b.MustJSON(tok, "dev", "clock", "show"), "now"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan Result, 1)
	go func() { done <- advance(a, "10h") }()
	// Kill a once the shared clock shows it an hour into its advance.
	for deadline := time.Now().Add(60 * time.Second); ; {
		now, err := time.Parse(time.RFC3339, str(t, b.MustJSON(tok, "dev", "clock", "show"), "now"))
		if err != nil {
			t.Fatal(err)
		}
		if now.Sub(before) >= time.Hour {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a's advance did not get an hour in within a minute (clock at %s)", now)
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.Kill()
	<-done
	b.MustJSON(tok, "kms", "key", "delete", k2)
	// b completes the day and a little more.
	now := str(t, b.MustJSON(tok, "dev", "clock", "show"), "now")
	at, err := time.Parse(time.RFC3339, now)
	if err != nil {
		t.Fatal(err)
	}
	if !at.After(before) || !at.Before(before.Add(10*time.Hour)) {
		t.Fatalf("the kill did not interrupt the advance: the clock went from %s to %s of %s", before, at, before.Add(10*time.Hour))
	}
	t.Logf("a was killed with the shared clock at %s, %s into its 10h advance", at, at.Sub(before))
	end := time.Date(2026, 5, 2, 0, 15, 0, 0, time.UTC)
	if at.Before(end) {
		mustAdvance(b, fmt.Sprintf("%ds", int(end.Sub(at).Seconds())))
	}

	cps := checkpoints(t, c.url, bkp)
	chainIntact(t, bkp, cps)
	var fulls []string
	for _, cp := range cps {
		if cp.Full {
			fulls = append(fulls, cp.At.Format(time.RFC3339))
		}
	}
	if !slices.Equal(fulls, []string{"2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z"}) {
		t.Fatalf("full backups at %v, want the first one and the one of 2026-05-02 00:00", fulls)
	}
	if last := cps[len(cps)-1]; last.At.Before(time.Date(2026, 5, 2, 0, 10, 0, 0, time.UTC)) {
		t.Fatalf("the day was not completed: the last checkpoint is at %s", last.At)
	}
	if r := b.CLI(tok, "", "verify", bkp); r.Code != 0 {
		t.Fatalf("verify through b: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}

	// a comes back on its data directory and catches up from the log.
	a = c.node(t, a.DataDir)
	restore := func(s *Server, region string) map[string]any {
		t.Helper()
		target := str(t, s.MustJSON(tok, "kms", "instance", "create", "--region", region), "id")
		return s.MustJSON(tok, "restore", "--from", bkp, "--day", "2026-05-01", "--all", "--to-instance", target)
	}
	ra, rb := restore(a, "eu-central-1"), restore(b, "ap-southeast-1")
	if diff := cmp.Diff(restoredItems(t, ra), restoredItems(t, rb)); diff != "" {
		t.Fatalf("restores through a and b differ (-a +b):\n%s", diff)
	}
	if got := strings.TrimSpace(b.CLI(tok, "", "kms", "decrypt", "--ciphertext", ct, "--region", "eu-central-1").Stdout); got != "hello from node a" {
		t.Fatalf("decrypt after the restore through a: %q", got)
	}

	// A node on a fresh data directory rebuilds the same view from the log.
	fresh := c.node(t, "")
	for _, s := range []*Server{b, fresh} {
		r := s.CLI(tok, "", "data", "list", bkp, "--day", "2026-05-01", "--tab", "full-keys", "-o", "json")
		if r.Code != 0 {
			t.Fatalf("data list: %s", r.Stderr)
		}
	}
	want := b.CLI(tok, "", "data", "list", bkp, "--day", "2026-05-01", "--tab", "deleted", "-o", "json").Stdout
	got := fresh.CLI(tok, "", "data", "list", bkp, "--day", "2026-05-01", "--tab", "deleted", "-o", "json").Stdout
	if want != got || !strings.Contains(got, k2) {
		t.Fatalf("a fresh node shows another day:\n%s\nwant:\n%s", got, want)
	}
	for _, s := range []*Server{a, b, fresh} {
		if code := readyz(t, s); code != 200 {
			t.Fatalf("/readyz of %s: %d", s.Addr, code)
		}
	}
}

// restoredItems is what a restore result says it restored, without the
// target.
func restoredItems(t *testing.T, res map[string]any) []string {
	t.Helper()
	b, _ := json.Marshal(res["plan"])
	var plan struct {
		Items []struct {
			Kind     string `json:"kind"`
			ID       string `json:"id"`
			Versions int    `json:"versions"`
			Status   string `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &plan); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range plan.Items {
		out = append(out, fmt.Sprintf("%s %s v%d %s", it.Kind, it.ID, it.Versions, it.Status))
	}
	if len(out) == 0 {
		t.Fatalf("the restore restored nothing: %v", res)
	}
	return out
}

// readyz returns the status code of a server's /readyz.
func readyz(t *testing.T, s *Server) int {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestIngestFromAnExternalKMS: a KMS outside kmsbackup that shares its
// master key and data-key store publishes its events on the ingest topic,
// each message twice; the engine nodes append each event once, and the
// ingested key encrypts and decrypts through either node.
func TestIngestFromAnExternalKMS(t *testing.T) {
	c := newCluster(t, "2026-05-01T00:00:00Z")
	a := c.node(t, "")
	b := c.node(t, "")
	account := str(t, a.MustJSON(c.tok, "whoami"), "account")
	ctx := context.Background()

	// The external KMS: the same envelope (master key and NATS key store).
	master, err := os.ReadFile(c.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(master)))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := natsjs.Connect(ctx, c.url, natsjs.ConnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keys, err := natsjs.OpenKeyStore(ctx, conn, natsjs.KeyStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env, err := envelope.New(mk, keys)
	if err != nil {
		t.Fatal(err)
	}
	idsrc := idsource.Random{Clock: clock.System{}}
	in := domain.NewInstanceID(idsrc.NewULID())
	key := domain.NewKeyID(idsrc.NewULID())
	if err := env.CreateDataKey(ctx, string(in)); err != nil {
		t.Fatal(err)
	}
	stream := domain.KMSStream(in)
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	var events []domain.Event
	add := func(d domain.EventData, sealMaterial *domain.Sealed) {
		e := domain.Event{ID: idsrc.NewULID(), Stream: stream, Revision: uint64(len(events)), Type: d.EventType(),
			Schema: domain.SchemaVersion, OccurredAt: at, Account: domain.AccountID(account), Region: "cn-hangzhou", Instance: in}
		if sealMaterial != nil {
			m := make([]byte, 32)
			_, _ = rand.Read(m)
			s, err := env.Seal(ctx, string(in), domain.Plaintext(m), domain.AssociatedData(e.Account, stream, e.ID))
			if err != nil {
				t.Fatal(err)
			}
			*sealMaterial = s
		}
		e.Data = domain.EncodeData(d)
		events = append(events, e)
	}
	add(&domain.InstanceCreated{Instance: in, Region: "cn-hangzhou", KeyQuota: 10, SecretQuota: 10}, nil)
	kc := &domain.KeyCreated{Key: key, Description: "from the external KMS", Spec: domain.KeySpecAES256}
	add(kc, &kc.Material)
	kr := &domain.KeyRotated{Key: key, Version: 2}
	add(kr, &kr.Material)

	n, err := bus.NewNATS(c.url, nil, bus.NATSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for round := range 2 { // every message twice, the second time in reverse order
		for i := range events {
			e := events[i]
			if round == 1 {
				e = events[len(events)-1-i]
			}
			pe, err := publicevent.FromEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := bus.NewMessage(pe)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Publisher.Publish(bus.IngestTopic, msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Wait until either node shows the ingested key with both versions.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := b.CLI(c.tok, "", "kms", "key", "show", string(key), "-o", "json")
		if r.Code == 0 && strings.Contains(r.Stdout, `"version": 2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ingested key never appeared: %s%s", r.Stdout, r.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ct := strings.TrimSpace(a.CLI(c.tok, "", "kms", "encrypt", "--key", string(key), "--plaintext", "ingested").Stdout)
	if got := strings.TrimSpace(b.CLI(c.tok, "", "kms", "decrypt", "--ciphertext", ct).Stdout); got != "ingested" {
		t.Fatalf("decrypt under the ingested key: %q", got)
	}
	l, err := natsjs.Open(ctx, c.url, natsjs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := l.ReadStream(ctx, stream, 0, false, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(events) {
		t.Fatalf("the log holds %d events of the external instance, want %d (each once)", len(got), len(events))
	}
	for i := range got {
		if got[i].ID != events[i].ID || got[i].Revision != uint64(i) {
			t.Fatalf("event %d: %s at revision %d, want %s", i, got[i].ID, got[i].Revision, events[i].ID)
		}
	}
}
