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

// namesWorld is two KMS instances of one region, each with a key, and a
// second node: the KMS use cases on the same log and read model with
// locks of their own, as another process sharing the log has.
type namesWorld struct {
	*useCases
	a, b   *domain.Instance
	ka, kb domain.KeyID
	other  *commands.KMS
}

func newNamesWorld(t *testing.T) *namesWorld {
	f := newUseCases(t, engine.Options{})
	w := &namesWorld{useCases: f}
	w.a = f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
	w.b = f.MustInstance(t, f.caller, commands.CreateInstanceInput{Region: "cn-hangzhou"})
	w.ka, w.kb = f.MustKey(t, w.a.ID), f.MustKey(t, w.b.ID)
	k := f.kms
	w.other = &commands.KMS{Log: k.Log, State: k.State, Applied: k.Applied, Sealer: k.Sealer, DataKeys: k.DataKeys,
		Cipher: k.Cipher, Clock: k.Clock, IDs: k.IDs}
	return w
}

func (w *namesWorld) createSecret(k *commands.KMS, in domain.InstanceID, key domain.KeyID, name string) error {
	_, err := k.CreateSecret(context.Background(), w.caller, commands.CreateSecretInput{Name: name, Instance: in, Key: key, Value: domain.Plaintext("v")})
	return err
}

// reservation decodes the events of the reservation stream of a secret
// name in the world's region.
func (w *namesWorld) reservation(t *testing.T, kind, name string) []domain.EventData {
	t.Helper()
	return MustDecode(t, w.MustStream(t, domain.NameStream(w.caller.Account, "cn-hangzhou", kind, name)))
}

// TestCreateSecretLosesItsNameToAnotherNode: between this node's decision
// to create secret "db" in instance a and its append, another node creates
// "db" in instance b of the same region. This node's append loses the
// race for the name (not for a's stream, which nobody touched), decides
// again and is refused: the name is in one instance only.
func TestCreateSecretLosesItsNameToAnotherNode(t *testing.T) {
	w := newNamesWorld(t)
	var once sync.Once
	var otherErr error
	w.log.setFault(func(stream string, n int) (error, bool) {
		if stream == domain.KMSStream(w.a.ID) {
			once.Do(func() { otherErr = w.createSecret(w.other, w.b.ID, w.kb, "db") })
		}
		return nil, false
	})
	err := w.createSecret(w.kms, w.a.ID, w.ka, "db")
	w.log.setFault(nil)
	if otherErr != nil {
		t.Fatalf("the other node's create: %v", otherErr)
	}
	if !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("this node's create of a name the other node took meanwhile: %v, want ErrAlreadyExists", err)
	}
	for _, s := range []struct {
		in   domain.InstanceID
		want int
	}{{w.a.ID, 0}, {w.b.ID, 1}} {
		n := 0
		for _, d := range MustDecode(t, w.MustStream(t, domain.KMSStream(s.in))) {
			if c, ok := d.(*domain.SecretCreated); ok && c.Name == "db" {
				n++
			}
		}
		if n != s.want {
			t.Errorf("instance %s's stream creates db %d times, want %d", s.in, n, s.want)
		}
	}
}

// TestDeleteReleasesTheName: a create claims its name in the log with the
// item's event, the delete releases it with the deletion, and another
// instance of the region then claims it at the release's revision.
func TestDeleteReleasesTheName(t *testing.T) {
	w := newNamesWorld(t)
	ctx := context.Background()
	if err := w.createSecret(w.kms, w.a.ID, w.ka, "db"); err != nil {
		t.Fatal(err)
	}
	if err := w.createSecret(w.kms, w.b.ID, w.kb, "db"); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("create of a held name: %v, want ErrAlreadyExists", err)
	}
	if err := w.kms.DeleteSecret(ctx, w.caller, "db", ""); err != nil {
		t.Fatal(err)
	}
	if err := w.createSecret(w.kms, w.b.ID, w.kb, "db"); err != nil {
		t.Fatalf("create of a released name: %v", err)
	}
	got := w.reservation(t, domain.NameKindSecret, "db")
	if len(got) != 3 {
		t.Fatalf("reservation stream: %d events (%+v), want claimed, released, claimed", len(got), got)
	}
	c1, ok1 := got[0].(*domain.NameClaimed)
	r, ok2 := got[1].(*domain.NameReleased)
	c2, ok3 := got[2].(*domain.NameClaimed)
	if !ok1 || !ok2 || !ok3 || c1.Instance != w.a.ID || r.Instance != w.a.ID || c2.Instance != w.b.ID {
		t.Fatalf("reservation stream: %+v, want claimed by a, released by a, claimed by b", got)
	}
	// Each claim names the item event written with it, at its revision.
	evs := w.MustStream(t, domain.KMSStream(w.b.ID))
	if last := evs[len(evs)-1]; last.ID != c2.Owner || last.Revision != c2.At {
		t.Fatalf("b's claim names event %s at %d; b's stream ends with %s at %d", c2.Owner, c2.At, last.ID, last.Revision)
	}
	// The key IDs are claimed too.
	if got := w.reservation(t, domain.NameKindKey, string(w.ka)); len(got) != 1 {
		t.Fatalf("key %s's reservation stream: %+v, want its claim", w.ka, got)
	}
}

// TestNamesFromBeforeReservations: a secret created before reservation
// streams existed (its event alone in the log) keeps its name through the
// read model's check; deleting it writes no release, and the name is then
// claimed expecting no reservation stream.
func TestNamesFromBeforeReservations(t *testing.T) {
	w := newNamesWorld(t)
	ctx := context.Background()
	w.MustAppend(t, domain.KMSStream(w.a.ID), w.a, &domain.SecretCreated{Name: "legacy", Key: w.ka, Value: []byte("ct")})
	if err := w.createSecret(w.kms, w.b.ID, w.kb, "legacy"); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("create of a name an old secret holds: %v, want ErrAlreadyExists", err)
	}
	if err := w.kms.DeleteSecret(ctx, w.caller, "legacy", ""); err != nil {
		t.Fatal(err)
	}
	if got := w.reservation(t, domain.NameKindSecret, "legacy"); len(got) != 0 {
		t.Fatalf("deleting an old secret wrote %+v to its reservation stream", got)
	}
	if err := w.createSecret(w.kms, w.b.ID, w.kb, "legacy"); err != nil {
		t.Fatalf("create after the old secret's deletion: %v", err)
	}
	calls := w.log.appendsTo(domain.NameStreamPrefix)
	if last := calls[len(calls)-1]; last.Expected != domain.ExpectNoStream.String() {
		t.Fatalf("the claim expected %s, want no stream", last.Expected)
	}
}

// TestReleasedInstanceFreesItsNames: a released instance's names are free
// without a release in their streams; a claim whose item never followed
// it (a log without atomic multi-stream appends) is dead once another
// event takes its revision, and holds until then.
func TestReleasedInstanceFreesItsNames(t *testing.T) {
	w := newNamesWorld(t)
	ctx := context.Background()
	if err := w.createSecret(w.kms, w.a.ID, w.ka, "db"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.kms.ReleaseInstance(ctx, w.caller, w.a.ID); err != nil {
		t.Fatal(err)
	}
	if err := w.createSecret(w.kms, w.b.ID, w.kb, "db"); err != nil {
		t.Fatalf("create of a name of a released instance: %v", err)
	}
}

func TestDeadClaimFreesItsName(t *testing.T) {
	w := newNamesWorld(t)
	a := w.MustStream(t, domain.KMSStream(w.a.ID))
	at := a[len(a)-1].Revision + 1
	stream := domain.NameStream(w.caller.Account, "cn-hangzhou", domain.NameKindSecret, "ghost")
	w.MustAppend(t, stream, w.a, &domain.NameClaimed{Kind: domain.NameKindSecret, Name: "ghost", Instance: w.a.ID,
		Owner: domain.EventID(w.ids.NewULID()), At: at})
	if err := w.createSecret(w.kms, w.b.ID, w.kb, "ghost"); !errors.Is(err, domain.ErrAlreadyExists) {
		t.Fatalf("create while the claim's item may still follow: %v, want ErrAlreadyExists", err)
	}
	w.MustKey(t, w.a.ID) // takes revision at of a's stream
	if err := w.createSecret(w.kms, w.b.ID, w.kb, "ghost"); err != nil {
		t.Fatalf("create once the claim is dead: %v", err)
	}
}
