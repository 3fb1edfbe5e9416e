package commands_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/kmsbackup/kmsbackup/cmd/engine"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// bindingsWorld is a KMS instance, two provisioned backup instances x and
// y of its region (a term of a month), and a second node: the backup
// lifecycle use cases on the same log and read models with locks of their
// own, as another process sharing the log has.
type bindingsWorld struct {
	*useCases
	kms   *domain.Instance
	x, y  *domain.Backup
	other *commands.BackupInstances
}

func newBindingsWorld(t *testing.T) *bindingsWorld {
	f := newUseCases(t, engine.Options{})
	w := &bindingsWorld{useCases: f, other: f.otherBackups()}
	w.kms = f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
	w.x, w.y = w.MustProvisioned(t, "cn-hangzhou"), w.MustProvisioned(t, "cn-hangzhou")
	return w
}

func (w *bindingsWorld) enable(b *commands.BackupInstances, id domain.BackupID) error {
	_, err := b.EnableBackupInstance(context.Background(), w.caller, id, commands.EnableInput{KMSInstance: w.kms.ID, Alias: "prod", TimeZone: "UTC"})
	return err
}

// bindings decodes the events of the KMS instance's binding stream.
func (w *bindingsWorld) bindings(t *testing.T) []domain.EventData {
	t.Helper()
	return MustDecode(t, w.MustStream(t, domain.BindingStream(w.kms.ID)))
}

// enabledIn counts the BackupEnabled events of backup id's stream.
func (w *bindingsWorld) enabledIn(t *testing.T, id domain.BackupID) int {
	t.Helper()
	n := 0
	for _, d := range MustDecode(t, w.MustStream(t, domain.BackupStream(id))) {
		if _, ok := d.(*domain.BackupEnabled); ok {
			n++
		}
	}
	return n
}

// assertBindings fails the test unless the binding stream holds, in order,
// the claims (backup ID) and releases ("-" and the backup ID) of want.
func (w *bindingsWorld) assertBindings(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	for _, d := range w.bindings(t) {
		switch d := d.(type) {
		case *domain.BindingClaimed:
			if d.KMSInstance != w.kms.ID {
				t.Fatalf("a claim of %s in the binding stream of %s", d.KMSInstance, w.kms.ID)
			}
			got = append(got, string(d.Backup))
		case *domain.BindingReleased:
			got = append(got, "-"+string(d.Backup))
		default:
			t.Fatalf("binding stream holds a %T", d)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("binding stream: %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("binding stream: %v, want %v", got, want)
		}
	}
}

// TestEnableLosesTheBindingToAnotherNode: between this node's decision to
// enable x for the KMS instance and its append, another node enables y
// for it. This node's append loses the race for the binding (not for x's
// stream, which nobody touched), decides again and is refused: the KMS
// instance is backed up by y alone.
func TestEnableLosesTheBindingToAnotherNode(t *testing.T) {
	w := newBindingsWorld(t)
	var once sync.Once
	var otherErr error
	w.log.setFault(func(stream string, n int) (error, bool) {
		if stream == domain.BackupStream(w.x.ID) {
			once.Do(func() { otherErr = w.enable(w.other, w.y.ID) })
		}
		return nil, false
	})
	err := w.enable(w.backups, w.x.ID)
	w.log.setFault(nil)
	if otherErr != nil {
		t.Fatalf("the other node's enable: %v", otherErr)
	}
	if !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("this node's enable of a KMS instance the other node bound meanwhile: %v, want ErrAlreadyExists", err)
	}
	if nx, ny := w.enabledIn(t, w.x.ID), w.enabledIn(t, w.y.ID); nx != 0 || ny != 1 {
		t.Fatalf("x enabled %d times, y %d times; want y alone", nx, ny)
	}
	w.assertBindings(t, string(w.y.ID))
	// The claim names y's BackupEnabled, at its revision.
	c := w.bindings(t)[0].(*domain.BindingClaimed)
	for _, e := range w.MustStream(t, domain.BackupStream(w.y.ID)) {
		if e.Type == domain.TypeBackupEnabled && (e.ID != c.Owner || e.Revision != c.At) {
			t.Fatalf("y's claim names event %s at %d; y's BackupEnabled is %s at %d", c.Owner, c.At, e.ID, e.Revision)
		}
	}
}

// TestResetFreesTheBinding: a reset releases the binding with the reset,
// and another backup instance then claims it at the release's revision.
func TestResetFreesTheBinding(t *testing.T) {
	w := newBindingsWorld(t)
	if err := w.enable(w.backups, w.x.ID); err != nil {
		t.Fatal(err)
	}
	if err := w.enable(w.backups, w.y.ID); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("enable for a bound KMS instance: %v, want ErrAlreadyExists", err)
	}
	must(w.backups.ResetBackupInstance(context.Background(), w.caller, w.x.ID, true))(t)
	w.assertBindings(t, string(w.x.ID), "-"+string(w.x.ID))
	if err := w.enable(w.backups, w.y.ID); err != nil {
		t.Fatalf("enable after the reset of the bound backup instance: %v", err)
	}
	w.assertBindings(t, string(w.x.ID), "-"+string(w.x.ID), string(w.y.ID))
	// The release was appended with the reset, in one call.
	calls := w.log.appendsTo("")
	for i, a := range calls {
		if a.Stream == domain.BindingStream(w.kms.ID) && a.Events[0].Type == domain.TypeBindingReleased {
			if i+1 == len(calls) || calls[i+1].Stream != domain.BackupStream(w.x.ID) || calls[i+1].Events[0].Type != domain.TypeBackupReset {
				t.Fatal("the release of the binding was not appended with x's reset")
			}
		}
	}
}

// TestExpiryKeepsTheBindingReleaseFreesIt: an expired backup instance
// stays bound (it may be renewed); its release, 15 days later, releases
// the binding with it.
func TestExpiryKeepsTheBindingReleaseFreesIt(t *testing.T) {
	w := newBindingsWorld(t)
	ctx := context.Background()
	if err := w.enable(w.backups, w.x.ID); err != nil {
		t.Fatal(err)
	}
	x := must(w.backups.ShowBackupInstance(w.caller, w.x.ID))(t)
	if err := w.backups.ExpireBackupInstance(ctx, x.ID, x.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	if err := w.enable(w.backups, w.y.ID); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("enable for a KMS instance bound to an expired backup instance: %v, want ErrAlreadyExists", err)
	}
	w.assertBindings(t, string(x.ID))
	if err := w.backups.ReleaseBackupInstance(ctx, x.ID, x.ReleaseDue()); err != nil {
		t.Fatal(err)
	}
	w.assertBindings(t, string(x.ID), "-"+string(x.ID))
	if err := w.enable(w.backups, w.y.ID); err != nil {
		t.Fatalf("enable after the release of the bound backup instance: %v", err)
	}
	w.assertBindings(t, string(x.ID), "-"+string(x.ID), string(w.y.ID))
}

// TestRetriedEnableIsSafe: enabling again a backup instance enabled for
// the KMS instance, whether its first answer came back or was lost after
// the write, is refused as already enabled and writes nothing: the
// binding stays x's, claimed once.
func TestRetriedEnableIsSafe(t *testing.T) {
	w := newBindingsWorld(t)
	lost := errors.New("connection reset")
	w.log.setFault(func(stream string, n int) (error, bool) {
		if stream == domain.BindingStream(w.kms.ID) {
			return lost, true // written, and the answer lost
		}
		return nil, false
	})
	err := w.enable(w.backups, w.x.ID)
	w.log.setFault(nil)
	if !errors.Is(err, lost) {
		t.Fatalf("enable whose answer was lost: %v, want the log's error", err)
	}
	w.settle(t)
	for range 2 {
		if err := w.enable(w.backups, w.x.ID); !errors.Is(err, domain.ErrFailedPrecondition) {
			t.Fatalf("retried enable: %v, want ErrFailedPrecondition (already enabled)", err)
		}
	}
	if n := w.enabledIn(t, w.x.ID); n != 1 {
		t.Fatalf("x enabled %d times, want once", n)
	}
	w.assertBindings(t, string(w.x.ID))
	if err := w.enable(w.backups, w.y.ID); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("enable of y after x's retries: %v, want ErrAlreadyExists", err)
	}
}

// TestBindingsFromBeforeBindingStreams: a backup instance enabled before
// binding streams existed (its BackupEnabled alone in the log) keeps its
// KMS instance through the read model's check; its reset writes no
// release, and the next enable claims the KMS instance expecting no
// binding stream.
func TestBindingsFromBeforeBindingStreams(t *testing.T) {
	w := newBindingsWorld(t)
	old := w.MustEnabled(t, w.kms, w.clock.Now().AddDate(1, 0, 0))
	if err := w.enable(w.backups, w.y.ID); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("enable for a KMS instance an old binding holds: %v, want ErrAlreadyExists", err)
	}
	must(w.backups.ResetBackupInstance(context.Background(), w.caller, old, true))(t)
	w.assertBindings(t)
	if err := w.enable(w.backups, w.y.ID); err != nil {
		t.Fatalf("enable after the old binding's reset: %v", err)
	}
	calls := w.log.appendsTo(domain.BindingStreamPrefix)
	if len(calls) != 1 || calls[0].Expected != domain.ExpectNoStream.String() {
		t.Fatalf("appends to the binding stream: %+v, want one claim expecting no stream", calls)
	}
}

// TestDeadBindingClaimFreesTheKMSInstance: a claim whose BackupEnabled
// never followed it (a log without atomic multi-stream appends) holds the
// KMS instance while the revision it names in x's stream is not written,
// and is dead once another event of x takes it.
func TestDeadBindingClaimFreesTheKMSInstance(t *testing.T) {
	w := newBindingsWorld(t)
	xs := w.MustStream(t, domain.BackupStream(w.x.ID))
	at := xs[len(xs)-1].Revision + 1
	w.MustAppend(t, domain.BindingStream(w.kms.ID), w.kms, &domain.BindingClaimed{KMSInstance: w.kms.ID, Backup: w.x.ID,
		Owner: domain.EventID(w.ids.NewULID()), At: at})
	if err := w.enable(w.backups, w.y.ID); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("enable while the claim's BackupEnabled may still follow: %v, want ErrAlreadyExists", err)
	}
	must(w.backups.ExtendViewableDays(context.Background(), w.caller, w.x.ID, 60))(t) // takes revision at of x's stream
	if err := w.enable(w.backups, w.y.ID); err != nil {
		t.Fatalf("enable once the claim is dead: %v", err)
	}
	w.assertBindings(t, string(w.x.ID), string(w.y.ID))
}
