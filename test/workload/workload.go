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
	NumOps
)

// OpNames names the operations.
var OpNames = [NumOps]string{"create key", "create secret", "rotate key", "rotate secret"}

// Writer writes items of its own (keys and secrets it created, so that no
// decision of one writer depends on another's), cycling through key
// creates, secret creates, key rotations and secret rotations, and
// remembers every version it was told about. Not for concurrent use: one
// goroutine per writer.
type Writer struct {
	n       int
	names   string
	step    int
	rng     *rand.Rand
	keys    []string
	secrets []string
	// versions holds every acknowledged version by item; values the value
	// of every acknowledged secret version.
	versions map[string][]Version
	values   map[Version][]byte
	// Ops counts the acknowledged operations by kind, Failed the others.
	Ops    [NumOps]int
	Failed int
}

// NewWriter returns writer n; names prefixes its secrets' names, so that
// writers (and runs against one server) do not collide.
func NewWriter(n int, names string) *Writer {
	return &Writer{n: n, names: names, rng: rand.New(rand.NewPCG(uint64(n), uint64(time.Now().UnixNano()))),
		versions: map[string][]Version{}, values: map[Version][]byte{}}
}

func (w *Writer) ack(v Version, value []byte) {
	w.versions[v.Item] = append(w.versions[v.Item], v)
	if value != nil {
		w.values[v] = value
	}
}

// value is the value of a secret version: test data that names where it
// came from, so that a mix-up between versions or secrets is seen.
func (w *Writer) value(name string, version int) []byte {
	return fmt.Appendf(nil, "%s version %d by writer %d", name, version, w.n)
}

// Step does the next operation of the cycle through f (a key create first,
// and whenever the writer has nothing of the kind to rotate) and returns
// which it was.
func (w *Writer) Step(ctx context.Context, f Front) (int, error) {
	op := w.step % NumOps
	w.step++
	switch {
	case len(w.keys) == 0:
		op = OpCreateKey
	case op == OpRotateSecret && len(w.secrets) == 0:
		op = OpCreateSecret
	}
	err := w.do(ctx, f, op)
	if err != nil {
		w.Failed++
	} else {
		w.Ops[op]++
	}
	return op, err
}

func (w *Writer) do(ctx context.Context, f Front, op int) error {
	switch op {
	case OpCreateKey:
		v, err := f.CreateKey(ctx)
		if err == nil {
			w.keys = append(w.keys, v.Item)
			w.ack(v, nil)
		}
		return err
	case OpCreateSecret:
		name := fmt.Sprintf("%s-w%02d-%05d", w.names, w.n, len(w.secrets))
		key := w.keys[w.rng.IntN(len(w.keys))]
		value := w.value(name, 1)
		v, err := f.CreateSecret(ctx, name, key, value)
		if err == nil {
			w.secrets = append(w.secrets, name)
			w.ack(v, value)
		}
		return err
	case OpRotateKey:
		v, err := f.RotateKey(ctx, w.keys[w.rng.IntN(len(w.keys))])
		if err == nil {
			w.ack(v, nil)
		}
		return err
	default:
		name := w.secrets[w.rng.IntN(len(w.secrets))]
		value := w.value(name, len(w.versions[name])+1)
		v, err := f.RotateSecret(ctx, name, value)
		if err == nil {
			w.ack(v, value)
		}
		return err
	}
}

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
	Ops       [NumOps]int // acknowledged operations by kind
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

// failure counts the errors of one operation and kind, with the first.
type failure struct {
	n     int
	first error
}

// Run has o.Writers writers (NewWriter) work through f for o.Duration.
// Every write must succeed; then every acknowledged version is read back
// (Check). Failures are reported through tb.
func Run(tb testing.TB, f Front, o Options) Result {
	tb.Helper()
	ctx := context.Background()
	ws := make([]*Writer, o.Writers)
	errs := make([]map[string]failure, o.Writers) // by operation and kind of error
	start := time.Now()
	end := start.Add(o.Duration)
	var wg sync.WaitGroup
	for n := range ws {
		w := NewWriter(n, o.Names)
		ws[n], errs[n] = w, map[string]failure{}
		wg.Go(func() {
			for time.Now().Before(end) {
				if op, err := w.Step(ctx, f); err != nil {
					k := fmt.Sprintf("%s: %v", OpNames[op], domain.Kind(err))
					f := errs[n][k]
					if f.n++; f.first == nil {
						f.first = err
					}
					errs[n][k] = f
				}
			}
		})
	}
	wg.Wait()
	res := Result{Elapsed: time.Since(start)}
	all := map[string]failure{}
	for n, w := range ws {
		for i, c := range w.Ops {
			res.Ops[i] += c
		}
		res.Errors += w.Failed
		for k, f := range errs[n] {
			if errors.Is(f.first, domain.ErrWrongExpectedRevision) {
				res.Conflicts += f.n
			}
			a := all[k]
			if a.n += f.n; a.first == nil {
				a.first = f.first
			}
			all[k] = a
		}
	}
	tb.Logf("%d writers: %s", o.Writers, res)
	reportErrors(tb, all)
	for _, w := range ws {
		Check(tb, ctx, f, w)
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

// Check reads back through f every version w was told about: each key has
// its acknowledged versions, each with its mark, and each acknowledged
// secret version decrypts to the value acknowledged. When none of w's
// writes failed (so none may have landed unacknowledged), a key may have
// no other version either.
func Check(tb testing.TB, ctx context.Context, f Front, w *Writer) {
	tb.Helper()
	for _, id := range w.keys {
		got, err := f.KeyVersions(ctx, id)
		if err != nil {
			tb.Errorf("read key %s back: %v", id, err)
			continue
		}
		checkVersions(tb, "key "+id, w.versions[id], got, w.Failed == 0)
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
// stored.
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
