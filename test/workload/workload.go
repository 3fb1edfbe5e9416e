package workload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Front is the KMS as the writers see it, for one instance. Every method
// is called from many goroutines at once.
type Front interface {
	// CreateKey creates a key and returns its version 1.
	CreateKey(ctx context.Context) (Version, error)
	// RotateKey adds a version to key id and returns it.
	RotateKey(ctx context.Context, id string) (Version, error)
	// CreateSecret creates a secret encrypted under key and returns its
	// version 1.
	CreateSecret(ctx context.Context, name, key string, value []byte) (Version, error)
	// RotateSecret puts a new value in a secret and returns the new version.
	RotateSecret(ctx context.Context, name string, value []byte) (Version, error)
	// KeyVersions reads every version of a key back.
	KeyVersions(ctx context.Context, id string) ([]Version, error)
	// SecretValue reads one version of a secret back, in the clear.
	SecretValue(ctx context.Context, name string, version uint32) ([]byte, error)
}

// Version is a version of a key or secret: the item, its number, and a
// mark that tells this version apart from any other the front could
// return for the same number (the ID of the event that sealed a key
// version, a creation time).
type Version struct {
	Item   string
	Number uint32
	Mark   string
}

// The operations, in the order each writer cycles through them.
const (
	OpCreateKey = iota
	OpCreateSecret
	OpRotateKey
	OpRotateSecret
	numOps
)

var opNames = [numOps]string{"create key", "create secret", "rotate key", "rotate secret"}

// Options shape a run.
type Options struct {
	Writers  int
	Duration time.Duration
	// Names prefixes every secret name, so that runs against one server
	// do not collide.
	Names string
}

// Result counts what a run did.
type Result struct {
	Ops       [numOps]int // acknowledged operations by kind
	Conflicts int         // errors that were domain.ErrWrongExpectedRevision
	Errors    int         // every failed operation, conflicts included
	Elapsed   time.Duration
}

// Total is the number of acknowledged operations.
func (r Result) Total() int {
	n := 0
	for _, c := range r.Ops {
		n += c
	}
	return n
}

func (r Result) String() string {
	return fmt.Sprintf("%d ops in %s (%.0f/s: %d key creates, %d secret creates, %d key rotations, %d secret rotations), %d errors, %d of them conflicts",
		r.Total(), r.Elapsed.Round(time.Millisecond), float64(r.Total())/r.Elapsed.Seconds(),
		r.Ops[OpCreateKey], r.Ops[OpCreateSecret], r.Ops[OpRotateKey], r.Ops[OpRotateSecret], r.Errors, r.Conflicts)
}

// writer is one writer's own items and what it was told about them.
type writer struct {
	n       int
	rng     *rand.Rand
	keys    []string
	secrets []string
	// versions holds every acknowledged version by item; values the value
	// of every acknowledged secret version.
	versions map[string][]Version
	values   map[Version][]byte
	ops      [numOps]int
	errs     map[string]failure // by operation and kind of error
	conflict int
	failed   int
}

// failure counts the errors of one operation and kind, with the first.
type failure struct {
	n     int
	first error
}

func (w *writer) ack(v Version, value []byte) {
	w.versions[v.Item] = append(w.versions[v.Item], v)
	if value != nil {
		w.values[v] = value
	}
}

// value is the value of a secret version: test data that names where it
// came from, so that a mix-up between versions or secrets is seen.
func (w *writer) value(name string, version int) []byte {
	return fmt.Appendf(nil, "%s version %d by writer %d", name, version, w.n)
}

// step does one operation of the cycle on the writer's own items (a key
// create comes first, and whenever the writer has nothing to rotate).
func (w *writer) step(ctx context.Context, f Front, o Options, i int) (int, error) {
	op := i % numOps
	switch {
	case len(w.keys) == 0:
		op = OpCreateKey
	case op == OpRotateSecret && len(w.secrets) == 0:
		op = OpCreateSecret
	}
	switch op {
	case OpCreateKey:
		v, err := f.CreateKey(ctx)
		if err == nil {
			w.keys = append(w.keys, v.Item)
			w.ack(v, nil)
		}
		return op, err
	case OpCreateSecret:
		name := fmt.Sprintf("%s-w%02d-%05d", o.Names, w.n, len(w.secrets))
		key := w.keys[w.rng.IntN(len(w.keys))]
		value := w.value(name, 1)
		v, err := f.CreateSecret(ctx, name, key, value)
		if err == nil {
			w.secrets = append(w.secrets, name)
			w.ack(v, value)
		}
		return op, err
	case OpRotateKey:
		v, err := f.RotateKey(ctx, w.keys[w.rng.IntN(len(w.keys))])
		if err == nil {
			w.ack(v, nil)
		}
		return op, err
	default:
		name := w.secrets[w.rng.IntN(len(w.secrets))]
		value := w.value(name, len(w.versions[name])+1)
		v, err := f.RotateSecret(ctx, name, value)
		if err == nil {
			w.ack(v, value)
		}
		return op, err
	}
}

// Run has o.Writers writers work for o.Duration, each on items of its own
// (keys and secrets it created: no decision of one writer depends on
// another's), cycling through key creates, secret creates, key rotations
// and secret rotations. Every write must succeed; then every acknowledged
// version is read back and must be there, as acknowledged. Failures are
// reported through tb.
func Run(tb testing.TB, f Front, o Options) Result {
	tb.Helper()
	ctx := context.Background()
	ws := make([]*writer, o.Writers)
	start := time.Now()
	end := start.Add(o.Duration)
	var wg sync.WaitGroup
	for n := range ws {
		w := &writer{n: n, rng: rand.New(rand.NewPCG(uint64(n), uint64(start.UnixNano()))),
			versions: map[string][]Version{}, values: map[Version][]byte{}, errs: map[string]failure{}}
		ws[n] = w
		wg.Go(func() {
			for i := 0; time.Now().Before(end); i++ {
				op, err := w.step(ctx, f, o, i)
				if err != nil {
					w.failed++
					if errors.Is(err, domain.ErrWrongExpectedRevision) {
						w.conflict++
					}
					k := fmt.Sprintf("%s: %v", opNames[op], domain.Kind(err))
					f := w.errs[k]
					if f.n++; f.first == nil {
						f.first = err
					}
					w.errs[k] = f
					continue
				}
				w.ops[op]++
			}
		})
	}
	wg.Wait()
	res := Result{Elapsed: time.Since(start)}
	errs := map[string]failure{}
	for _, w := range ws {
		for i, n := range w.ops {
			res.Ops[i] += n
		}
		res.Errors += w.failed
		res.Conflicts += w.conflict
		for k, f := range w.errs {
			all := errs[k]
			if all.n += f.n; all.first == nil {
				all.first = f.first
			}
			errs[k] = all
		}
	}
	tb.Logf("%d writers: %s", o.Writers, res)
	reportErrors(tb, errs)
	for _, w := range ws {
		readBack(tb, ctx, f, w)
	}
	return res
}

// reportErrors reports the errors of each operation and kind with their
// count and the first of them.
func reportErrors(tb testing.TB, errs map[string]failure) {
	tb.Helper()
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		tb.Errorf("%d failed (%s), the first: %v", errs[k].n, k, errs[k].first)
	}
}

// readBack checks that every version the writer was told about is stored:
// each key has exactly its acknowledged versions, each with its mark, and
// each secret version decrypts to the value acknowledged.
func readBack(tb testing.TB, ctx context.Context, f Front, w *writer) {
	tb.Helper()
	for _, id := range w.keys {
		got, err := f.KeyVersions(ctx, id)
		if err != nil {
			tb.Errorf("read key %s back: %v", id, err)
			continue
		}
		checkVersions(tb, "key "+id, w.versions[id], got, w.failed == 0)
	}
	for _, name := range w.secrets {
		for _, v := range w.versions[name] {
			got, err := f.SecretValue(ctx, name, v.Number)
			switch {
			case err != nil:
				tb.Errorf("read secret %s version %d back: %v", name, v.Number, err)
			case !bytes.Equal(got, w.values[v]):
				// The values are test data; still, never print them.
				tb.Errorf("secret %s version %d reads back a value other than the one acknowledged", name, v.Number)
			}
		}
	}
}

// checkVersions compares the acknowledged versions of an item with those
// stored. Every acknowledged one must be stored with its mark; when no
// write of the writer failed (so none may have landed unacknowledged),
// nothing else may be stored either.
func checkVersions(tb testing.TB, what string, acked, stored []Version, exact bool) {
	tb.Helper()
	byNumber := map[uint32]Version{}
	for _, v := range stored {
		byNumber[v.Number] = v
	}
	for _, v := range acked {
		s, ok := byNumber[v.Number]
		switch {
		case !ok:
			tb.Errorf("%s: acknowledged version %d is not stored", what, v.Number)
		case s.Mark != v.Mark:
			tb.Errorf("%s: version %d is stored as %q, acknowledged as %q", what, v.Number, s.Mark, v.Mark)
		}
	}
	if exact && len(stored) != len(acked) {
		tb.Errorf("%s: %d versions stored, %d acknowledged", what, len(stored), len(acked))
	}
}
