package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/httpapi"
	"github.com/kmsbackup/kmsbackup/domain"
)

// The load of the fault test: writers that create, rotate and delete keys
// and secrets through every engine node that is up, and remember what each
// write was answered, so that what the nodes show afterwards can be held
// against every acknowledged write.

// faultRegion is the region of the fault test's KMS instances.
const faultRegion = "cn-hangzhou"

// fleet is the engine nodes of a test and which of them are up. Its
// methods are safe for concurrent use, except kill and restart, which the
// test's goroutine calls.
type fleet struct {
	tok   string
	nodes []*Server

	mu   sync.Mutex
	addr []string // API address of each node, "" while it is down
}

func newFleet(tok string, nodes ...*Server) *fleet {
	f := &fleet{tok: tok, nodes: nodes, addr: make([]string, len(nodes))}
	for i, s := range nodes {
		f.addr[i] = s.Addr
	}
	return f
}

// client is an API client of node i, nil while it is down.
func (f *fleet) client(i int) *httpapi.Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addr[i] == "" {
		return nil
	}
	return &httpapi.Client{Base: "http://" + f.addr[i], Token: f.tok}
}

// up lists the nodes that are up.
func (f *fleet) up() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.upLocked()
}

func (f *fleet) upLocked() []int {
	var out []int
	for i, a := range f.addr {
		if a != "" {
			out = append(out, i)
		}
	}
	return out
}

// pick is the client of a node that is up, chosen with rng.
func (f *fleet) pick(rng *rand.Rand) *httpapi.Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	up := f.upLocked()
	i := up[rng.IntN(len(up))]
	return &httpapi.Client{Base: "http://" + f.addr[i], Token: f.tok}
}

// kill kills node i with SIGKILL; the writers stop choosing it first (a
// write already sent to it fails, unacknowledged).
func (f *fleet) kill(i int) {
	f.mu.Lock()
	f.addr[i] = ""
	f.mu.Unlock()
	f.nodes[i].Kill()
}

// restart starts node i again on its data directory.
func (f *fleet) restart(i int) {
	f.nodes[i].startAgain()
	f.mu.Lock()
	f.addr[i] = f.nodes[i].Addr
	f.mu.Unlock()
}

// outcome is what a write was answered.
type outcome int

const (
	notSent outcome = iota
	// unanswered: the write failed, or its answer never came: it may or
	// may not have been written.
	unanswered
	acknowledged
)

// faultItem is a key or secret as the writes sent for it allow it to be.
type faultItem struct {
	kind    string     // key | secret
	id      string     // key ID or secret name
	inst    int        // index of its KMS instance
	key     *faultItem // secrets: the key it was created under
	created outcome
	acked   uint32 // the highest version a write acknowledged
	tried   uint32 // the highest version any write sent may have made
	deleted outcome
}

// faultWriter writes to one KMS instance through every node that is up,
// one write at a time, choosing each with its own generator.
type faultWriter struct {
	n      int
	inst   int
	instID string
	rng    *rand.Rand

	items   []*faultItem // every item it sent a create of, in order
	live    []*faultItem // the items it may still write to
	secrets int          // secrets named so far
	// lostKeys counts key creates not acknowledged: each may have made a
	// key whose ID no answer told.
	lostKeys int
	// counts of the writes sent, acknowledged, by kind.
	sent, acked map[string]int
	failures    []string // the first errors, for the log
}

func newFaultWriter(n, inst int, instID string, seed uint64) *faultWriter {
	return &faultWriter{n: n, inst: inst, instID: instID, rng: rand.New(rand.NewPCG(seed, uint64(n))),
		sent: map[string]int{}, acked: map[string]int{}}
}

// faultWriteTimeout bounds one write: a write through a node whose NATS
// server died waits for a new stream leader (an election takes 4 to 9 s).
const faultWriteTimeout = 60 * time.Second

// run sends n writes, one after the other.
func (w *faultWriter) run(f *fleet, n int) {
	for range n {
		w.write(f)
	}
}

// write sends one write, chosen at random among those the writer's items
// allow, through a node chosen at random, and records its answer.
func (w *faultWriter) write(f *fleet) {
	ctx, cancel := context.WithTimeout(context.Background(), faultWriteTimeout)
	defer cancel()
	c := f.pick(w.rng)
	keys, secrets := w.liveOf("key"), w.liveOf("secret")
	r := w.rng.IntN(100)
	switch {
	case len(keys) == 0 || r < 25:
		w.createKey(ctx, c)
	case r < 45:
		w.rotate(ctx, c, keys[w.rng.IntN(len(keys))])
	case r < 60:
		w.createSecret(ctx, c, keys[w.rng.IntN(len(keys))])
	case r < 80 && len(secrets) > 0:
		w.rotate(ctx, c, secrets[w.rng.IntN(len(secrets))])
	case r < 90 && len(secrets) > 0:
		w.remove(ctx, c, secrets[w.rng.IntN(len(secrets))])
	default:
		// A key is deleted only once none of its secrets may be live
		// (the delete of a key that encrypts a live secret is refused).
		var free []*faultItem
		for _, k := range keys {
			if !slices.ContainsFunc(w.items, func(s *faultItem) bool { return s.key == k && s.deleted != acknowledged }) {
				free = append(free, k)
			}
		}
		if len(free) == 0 {
			w.rotate(ctx, c, keys[w.rng.IntN(len(keys))])
			return
		}
		w.remove(ctx, c, free[w.rng.IntN(len(free))])
	}
}

// liveOf lists the live items of a kind whose create was acknowledged.
func (w *faultWriter) liveOf(kind string) []*faultItem {
	var out []*faultItem
	for _, it := range w.live {
		if it.kind == kind && it.created == acknowledged {
			out = append(out, it)
		}
	}
	return out
}

// answered counts a write of kind and keeps its error.
func (w *faultWriter) answered(kind string, err error) bool {
	w.sent[kind]++
	if err == nil {
		w.acked[kind]++
		return true
	}
	if len(w.failures) < 5 {
		w.failures = append(w.failures, fmt.Sprintf("%s: %v", kind, err))
	}
	return false
}

func (w *faultWriter) createKey(ctx context.Context, c *httpapi.Client) {
	k, err := c.CreateKey(ctx, httpapi.CreateKeyRequest{Instance: w.instID, Description: fmt.Sprintf("writer %d", w.n)})
	if !w.answered("create key", err) {
		w.lostKeys++
		return
	}
	it := &faultItem{kind: "key", id: k.ID, inst: w.inst, created: acknowledged, acked: k.PrimaryVersion, tried: k.PrimaryVersion}
	w.items, w.live = append(w.items, it), append(w.live, it)
}

func (w *faultWriter) createSecret(ctx context.Context, c *httpapi.Client, key *faultItem) {
	w.secrets++
	name := fmt.Sprintf("w%d-secret-%d", w.n, w.secrets)
	it := &faultItem{kind: "secret", id: name, inst: w.inst, key: key, created: unanswered, tried: 1}
	w.items, w.live = append(w.items, it), append(w.live, it)
	s, err := c.CreateSecret(ctx, httpapi.CreateSecretRequest{Name: name, Instance: w.instID, KeyID: key.id, Value: w.value()})
	if w.answered("create secret", err) {
		it.created, it.acked = acknowledged, s.CurrentVersion
	}
}

func (w *faultWriter) rotate(ctx context.Context, c *httpapi.Client, it *faultItem) {
	it.tried++
	var v uint32
	var err error
	if it.kind == "key" {
		var k httpapi.Key
		k, err = c.RotateKey(ctx, it.id, faultRegion)
		v = k.PrimaryVersion
	} else {
		var s httpapi.Secret
		s, err = c.RotateSecret(ctx, it.id, httpapi.RotateSecretRequest{Region: faultRegion, Value: w.value()})
		v = s.CurrentVersion
	}
	if w.answered("rotate "+it.kind, err) {
		it.acked = max(it.acked, v)
	}
}

func (w *faultWriter) remove(ctx context.Context, c *httpapi.Client, it *faultItem) {
	var err error
	if it.kind == "key" {
		err = c.DeleteKey(ctx, it.id, faultRegion)
	} else {
		err = c.DeleteSecret(ctx, it.id, faultRegion)
	}
	if !w.answered("delete "+it.kind, err) && errors.Is(err, domain.ErrNotFound) {
		// The node had not seen the item yet (its read model lags the
		// log): nothing was written.
		return
	}
	it.deleted = acknowledged
	if err != nil {
		it.deleted = unanswered
	}
	w.live = slices.DeleteFunc(w.live, func(x *faultItem) bool { return x == it })
}

// value is a fresh secret value (never printed).
func (w *faultWriter) value() []byte {
	b := make([]byte, 16)
	for i := range b {
		b[i] = byte(w.rng.IntN(256))
	}
	return b
}

// summary is one line of what the writer sent and what was acknowledged.
func (w *faultWriter) summary() string {
	var kinds []string
	for k := range w.sent {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d/%d", k, w.acked[k], w.sent[k]))
	}
	return fmt.Sprintf("writer %d (instance %d): %s acknowledged; first failures: %q", w.n, w.inst, strings.Join(parts, ", "), w.failures)
}

// seenItem is a key or secret as a node shows it: its versions.
type seenItem struct {
	kind     string
	versions []uint32
}

// expectItems checks the items a node shows (live, or restored: with
// deleted, every item of the day's data) against what the writers of one
// KMS instance sent. Every acknowledged create is there, unless its item's
// delete was acknowledged (live only); every version acknowledged is
// there, and none beyond what was sent; a key no answer named may exist
// only up to the number of key creates not acknowledged. It returns every
// problem found.
func expectItems(ws []*faultWriter, inst int, got map[string]seenItem, withDeleted bool) []string {
	var problems []string
	unknown := idSet(got)
	lost := 0
	for _, w := range ws {
		if w.inst != inst {
			continue
		}
		lost += w.lostKeys
		for _, it := range w.items {
			s, ok := got[it.id]
			delete(unknown, it.id)
			gone := !withDeleted && it.deleted == acknowledged
			switch {
			case ok && gone:
				problems = append(problems, fmt.Sprintf("%s %s is there, its delete was acknowledged", it.kind, it.id))
			case !ok && !gone && it.created == acknowledged && (withDeleted || it.deleted == notSent):
				problems = append(problems, fmt.Sprintf("%s %s is missing, its create was acknowledged (versions %d acknowledged)", it.kind, it.id, it.acked))
			case ok:
				if s.kind != it.kind {
					problems = append(problems, fmt.Sprintf("%s %s is shown as a %s", it.kind, it.id, s.kind))
				}
				n := uint32(len(s.versions))
				if n < it.acked || n > it.tried {
					problems = append(problems, fmt.Sprintf("%s %s has %d versions, want %d to %d (acknowledged, sent)", it.kind, it.id, n, it.acked, it.tried))
				}
				for i, v := range s.versions {
					if v != uint32(i+1) {
						problems = append(problems, fmt.Sprintf("%s %s has versions %v", it.kind, it.id, s.versions))
						break
					}
				}
			}
		}
	}
	extra := 0
	for id := range unknown {
		if got[id].kind != "key" {
			problems = append(problems, fmt.Sprintf("%s %s was never sent", got[id].kind, id))
		}
		extra++
	}
	if extra > lost {
		problems = append(problems, fmt.Sprintf("%d keys no answer named, with only %d key creates unacknowledged", extra, lost))
	}
	return problems
}

func idSet(m map[string]seenItem) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// liveItems reads every live key and secret of a KMS instance through c.
func liveItems(ctx context.Context, c *httpapi.Client, instID string) (map[string]seenItem, error) {
	out := map[string]seenItem{}
	keys := func(token string) (httpapi.List[httpapi.Key], error) { return c.ListKeys(ctx, instID, 1000, token) }
	secrets := func(token string) (httpapi.List[httpapi.Secret], error) {
		return c.ListSecrets(ctx, instID, 1000, token)
	}
	if err := eachPage(keys, func(k httpapi.Key) { out[k.ID] = seenItem{kind: "key", versions: versionNumbers(k.Versions)} }); err != nil {
		return nil, err
	}
	err := eachPage(secrets, func(s httpapi.Secret) { out[s.Name] = seenItem{kind: "secret", versions: versionNumbers(s.Versions)} })
	return out, err
}

// eachPage calls fn with every item of a paged listing.
func eachPage[T any](list func(token string) (httpapi.List[T], error), fn func(T)) error {
	for token := ""; ; {
		page, err := list(token)
		if err != nil {
			return err
		}
		for _, it := range page.Items {
			fn(it)
		}
		if token = page.NextPageToken; token == "" {
			return nil
		}
	}
}

func versionNumbers(vs []httpapi.Version) []uint32 {
	out := make([]uint32, len(vs))
	for i, v := range vs {
		out[i] = v.Version
	}
	slices.Sort(out)
	return out
}

// waitFor polls check (it returns what is still wrong, nil when nothing
// is) until it holds, failing the test with the last problems after
// deadline.
func waitFor(t *testing.T, what string, deadline time.Duration, check func() []string) {
	t.Helper()
	end := time.Now().Add(deadline)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		problems := check()
		if len(problems) == 0 {
			return
		}
		if time.Now().After(end) {
			if len(problems) > 20 {
				problems = append(problems[:20], fmt.Sprintf("and %d more", len(problems)-20))
			}
			t.Fatalf("%s: still wrong after %s:\n%s", what, deadline, strings.Join(problems, "\n"))
		}
		<-tick.C
	}
}
