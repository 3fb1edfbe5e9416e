package backup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/pebblestore"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
	"github.com/kmsbackup/kmsbackup/test/workload"
)

// TestConcurrentWritersOneInstance has 16 writers create keys and secrets
// and rotate them, each on items of its own, all in one KMS instance, for
// 10 seconds: no decision of one depends on another's, so none may fail
// (in particular with a conflict because another writer appended first),
// and every acknowledged version must read back afterwards.
func TestConcurrentWritersOneInstance(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	in := Must(e.KMS.CreateInstance(context.Background(), e.Caller, commands.CreateInstanceInput{
		Region: "cn-hangzhou", KeyQuota: domain.MaxQuota, SecretQuota: domain.MaxQuota}))
	res := workload.Run(t, workload.UseCases{KMS: e.KMS, Caller: e.Caller, Instance: in.ID}, workload.Options{Writers: 16, Duration: 10 * time.Second, Names: "s"})
	for op, n := range res.Ops {
		if n == 0 {
			t.Errorf("operation %d never succeeded", op)
		}
	}
}

// race runs each function in its own goroutine, all released at once, and
// returns their errors in order.
func race(fns ...func() error) []error {
	errs := make([]error, len(fns))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() {
			<-start
			errs[i] = fn()
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// outcomes tallies errors by kind (nil for successes).
func outcomes(errs []error) map[error]int {
	out := map[error]int{}
	for _, err := range errs {
		out[domain.Kind(err)]++
	}
	return out
}

// errStillLive is a rotator's outcome when the key outlived its rotations.
var errStillLive = errors.New("the key was still live after 1000 rotations")

// TestRealConflictsStillAnswered races writers whose decisions do depend
// on each other: each loser must get the error its decision calls for
// (already exists, quota exceeded, not found, failed precondition), never
// a conflict or a give-up because the stream moved.
func TestRealConflictsStillAnswered(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	ctx := context.Background()
	newInstance := func(quota uint32) *domain.Instance {
		return Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "cn-hangzhou", KeyQuota: quota, SecretQuota: domain.MaxQuota}))
	}
	a, b := newInstance(domain.MaxQuota), newInstance(domain.MaxQuota)
	ka := Must(e.KMS.CreateKey(ctx, e.Caller, a.ID, ""))
	kb := Must(e.KMS.CreateKey(ctx, e.Caller, b.ID, ""))
	const writers = 16

	t.Run("same secret name in one region", func(t *testing.T) {
		for round := range 10 {
			name := fmt.Sprintf("taken-%d", round)
			fns := make([]func() error, writers)
			for i := range fns {
				in, key := a.ID, ka.ID
				if i%2 == 1 {
					in, key = b.ID, kb.ID
				}
				fns[i] = func() error {
					_, err := e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: name, Instance: in, Key: key, Value: domain.Plaintext("v")})
					return err
				}
			}
			got := outcomes(race(fns...))
			if want := map[error]int{nil: 1, domain.ErrAlreadyExists: writers - 1}; !maps.Equal(got, want) {
				t.Fatalf("round %d: outcomes %v, want %v", round, got, want)
			}
		}
	})

	t.Run("backup instances for one KMS instance", func(t *testing.T) {
		// No lock of the process serialises bindings: the binding stream
		// does, and every loser decides again.
		for round := range 3 {
			in := newInstance(domain.MaxQuota)
			fns := make([]func() error, writers)
			for i := range fns {
				b := Must(e.Backups.CreateBackupInstance(ctx, e.Caller, commands.CreateBackupInput{Region: "cn-hangzhou", ViewableDays: 30, Term: "1y"}))
				fns[i] = func() error {
					_, err := e.Backups.EnableBackupInstance(ctx, e.Caller, b.ID, commands.EnableInput{KMSInstance: in.ID, Alias: "race", TimeZone: "UTC"})
					return err
				}
			}
			got := outcomes(race(fns...))
			if want := map[error]int{nil: 1, domain.ErrAlreadyExists: writers - 1}; !maps.Equal(got, want) {
				t.Fatalf("round %d: outcomes %v, want %v", round, got, want)
			}
		}
	})

	t.Run("key quota", func(t *testing.T) {
		const quota = 5
		in := newInstance(quota)
		fns := make([]func() error, writers)
		for i := range fns {
			fns[i] = func() error {
				_, err := e.KMS.CreateKey(ctx, e.Caller, in.ID, "")
				return err
			}
		}
		got := outcomes(race(fns...))
		if want := map[error]int{nil: quota, domain.ErrQuotaExceeded: writers - quota}; !maps.Equal(got, want) {
			t.Fatalf("outcomes %v, want %v", got, want)
		}
	})

	t.Run("rotating a key another writer deletes", func(t *testing.T) {
		for round := range 5 {
			k := Must(e.KMS.CreateKey(ctx, e.Caller, a.ID, ""))
			// Each rotator rotates until it is refused; one writer deletes
			// the key meanwhile. Every rotator must end on not found.
			fns := make([]func() error, writers)
			for i := range fns {
				fns[i] = func() error {
					for range 1000 {
						if _, err := e.KMS.RotateKey(ctx, e.Caller, k.ID, ""); err != nil {
							return err
						}
					}
					return errStillLive
				}
			}
			fns[0] = func() error { return e.KMS.DeleteKey(ctx, e.Caller, k.ID, "") }
			got := outcomes(race(fns...))
			if want := map[error]int{nil: 1, domain.ErrNotFound: writers - 1}; !maps.Equal(got, want) {
				t.Fatalf("round %d: outcomes %v, want %v (nil: the delete)", round, got, want)
			}
		}
	})

	t.Run("a secret under a key another writer deletes", func(t *testing.T) {
		for round := range 10 {
			k := Must(e.KMS.CreateKey(ctx, e.Caller, a.ID, ""))
			// Half the writers create secrets under the key, the other half
			// try to delete it: either the key goes first (every create is
			// not found) or a secret does (every delete is refused while it
			// encrypts one), and exactly one delete can succeed.
			fns := make([]func() error, writers)
			for i := range fns {
				if i%2 == 0 {
					name := fmt.Sprintf("under-%d-%d", round, i)
					fns[i] = func() error {
						_, err := e.KMS.CreateSecret(ctx, e.Caller, commands.CreateSecretInput{Name: name, Instance: a.ID, Key: k.ID, Value: domain.Plaintext("v")})
						return err
					}
				} else {
					fns[i] = func() error { return e.KMS.DeleteKey(ctx, e.Caller, k.ID, "") }
				}
			}
			errs := race(fns...)
			created, deleted := 0, 0
			for i, err := range errs {
				switch {
				case err == nil && i%2 == 0:
					created++
				case err == nil:
					deleted++
				case i%2 == 0 && !errors.Is(err, domain.ErrNotFound):
					t.Errorf("round %d: create secret: %v, want success or not found", round, err)
				case i%2 == 1 && !errors.Is(err, domain.ErrFailedPrecondition) && !errors.Is(err, domain.ErrNotFound):
					t.Errorf("round %d: delete key: %v, want success, failed precondition or not found", round, err)
				}
			}
			using := Must(kmsstate.SecretsUsingKey(e.Proj, a.ID, k.ID))
			if deleted > 1 || (deleted == 1 && created > 0) || using != created {
				t.Fatalf("round %d: %d secrets created (%d use the key), the key deleted %d times", round, created, using, deleted)
			}
		}
	})
}

// interferingLog is the engine's log as one node sees it while another
// node shares it: before each of this node's appends to a KMS stream,
// other may let the other node change that stream first.
type interferingLog struct {
	*pebblestore.Store
	other func(ctx context.Context)
}

func (l *interferingLog) Append(ctx context.Context, stream string, expected domain.ExpectedRevision, events []domain.Event) (commands.AppendResult, error) {
	if strings.HasPrefix(stream, "kms-") {
		l.other(ctx)
	}
	return l.Store.Append(ctx, stream, expected, events)
}

// AppendMulti lets the other node go first as Append does, once, when a
// part is for a KMS stream.
func (l *interferingLog) AppendMulti(ctx context.Context, parts []commands.StreamAppend) ([]commands.AppendResult, error) {
	for _, p := range parts {
		if strings.HasPrefix(p.Stream, "kms-") {
			l.other(ctx)
			break
		}
	}
	return l.Store.AppendMulti(ctx, parts)
}

// TestRacesLostToAnotherNode has a second node append to an instance's
// stream right before this node's appends, as a node sharing the log does:
// the use case decides again on the new state, and succeeds; when the
// other node wins every time, it gives up after a bounded number of
// attempts with an unavailable error naming the stream, never a conflict.
func TestRacesLostToAnotherNode(t *testing.T) {
	e := NewEngine(t, time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC))
	ctx := context.Background()
	in := Must(e.KMS.CreateInstance(ctx, e.Caller, commands.CreateInstanceInput{Region: "cn-hangzhou"}))
	k := Must(e.KMS.CreateKey(ctx, e.Caller, in.ID, "mine"))
	// Both nodes share the log and, here, the read model; each has its own
	// locks, as two processes do.
	other := &commands.KMS{Log: e.KMS.Log, State: e.KMS.State, Applied: e.KMS.Applied, Sealer: e.KMS.Sealer,
		DataKeys: e.KMS.DataKeys, Cipher: e.KMS.Cipher, Clock: e.KMS.Clock, IDs: e.KMS.IDs}
	var wins, attempts int
	log := &interferingLog{Store: e.Store}
	this := &commands.KMS{Log: log, State: e.KMS.State, Applied: e.KMS.Applied, Sealer: e.KMS.Sealer,
		DataKeys: e.KMS.DataKeys, Cipher: e.KMS.Cipher, Clock: e.KMS.Clock, IDs: e.KMS.IDs}
	interfere := func(times int) {
		wins, attempts = 0, 0
		log.other = func(context.Context) {
			if attempts++; wins == times {
				return
			}
			wins++
			if _, err := other.RotateKey(context.Background(), e.Caller, k.ID, ""); err != nil {
				t.Errorf("the other node's rotation: %v", err)
			}
		}
	}

	interfere(3)
	got, err := this.RotateKey(ctx, e.Caller, k.ID, "")
	if err != nil {
		t.Fatalf("rotate after losing 3 races: %v", err)
	}
	if attempts != 4 || len(got.Versions) != 5 {
		t.Fatalf("rotate after losing 3 races: %d attempts, key at version %d; want 4 attempts and version 5 (1 + 3 by the other node + 1)", attempts, len(got.Versions))
	}

	interfere(1000)
	_, err = this.RotateKey(ctx, e.Caller, k.ID, "")
	if !errors.Is(err, domain.ErrUnavailable) || errors.Is(err, domain.ErrWrongExpectedRevision) ||
		!strings.Contains(err.Error(), domain.KMSStream(in.ID)) {
		t.Fatalf("rotate losing every race: %v; want unavailable, naming stream %s", err, domain.KMSStream(in.ID))
	}
	if attempts < 2 || attempts > 32 {
		t.Fatalf("rotate losing every race gave up after %d attempts", attempts)
	}
	if after := Must(e.KMS.ShowKey(e.Caller, k.ID, "")); len(after.Versions) != 5+wins {
		t.Fatalf("key at version %d after the other node's %d rotations, want %d", len(after.Versions), wins, 5+wins)
	}
	giveUp := attempts

	// A deadline bounds the attempts too: the use case stops before a wait
	// would outlast it (16 attempts wait 0.9 s on average).
	interfere(1000)
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	_, err = this.RotateKey(short, e.Caller, k.ID, "")
	if !errors.Is(err, domain.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("rotate losing every race within 30 ms: %v; want unavailable or the deadline", err)
	}
	var gaveUp *domain.Error
	if want := fmt.Sprintf("gave up after %d attempts", attempts); errors.As(err, &gaveUp) &&
		strings.HasPrefix(gaveUp.Msg, "gave up") && !strings.HasPrefix(gaveUp.Msg, want) {
		t.Fatalf("rotate losing every race within 30 ms: %v; want it to say %q", err, want)
	}
	if attempts >= giveUp {
		t.Fatalf("rotate losing every race within 30 ms made %d attempts, as many as without a deadline", attempts)
	}
}
