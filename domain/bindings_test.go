package domain_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

// binding builds the last event of a binding stream at rev.
func binding(rev uint64, d domain.EventData) *domain.Event {
	e := reservation(rev, d)
	e.Stream = "binding-x"
	return e
}

// errNothingToRelease stands for ReleaseBy's ok false in TestBindingRules.
var errNothingToRelease = errors.New("nothing to release")

// TestBindingRules: given the last event of a KMS instance's binding
// stream (and, for a claim, the event at the revision it names in its
// backup instance's stream), when backup instance y claims the KMS
// instance or a backup instance's binding ends, then the event to append
// with the revision it expects, or the refusal.
func TestBindingRules(t *testing.T) {
	kms := domain.NewInstanceID(id(1))
	x, y := domain.NewBackupID(id(2)), domain.NewBackupID(id(3))
	heldByX := binding(4, &domain.BindingClaimed{KMSInstance: kms, Backup: x, Owner: id(20), At: 1})
	freed := binding(5, &domain.BindingReleased{KMSInstance: kms, Backup: x})
	xEnabled := &domain.Event{ID: id(20), Revision: 1} // the claim's owner, at its revision
	xOther := &domain.Event{ID: id(22), Revision: 1}   // another event took it: the claim is dead
	type decision = func(h domain.BindingHold, atAt *domain.Event) (domain.EventData, domain.ExpectedRevision, error)
	claimByY := func(h domain.BindingHold, atAt *domain.Event) (domain.EventData, domain.ExpectedRevision, error) {
		d, exp, err := h.ClaimFor(kms, y, id(21), 9, h.Claim != nil && h.Claim.ClaimDead(atAt))
		if err != nil {
			return nil, exp, err
		}
		return d, exp, nil
	}
	releaseBy := func(b domain.BackupID) decision {
		return func(h domain.BindingHold, _ *domain.Event) (domain.EventData, domain.ExpectedRevision, error) {
			d, exp, ok := h.ReleaseBy(b)
			if !ok {
				return nil, exp, errNothingToRelease
			}
			return d, exp, nil
		}
	}
	yClaims := &domain.BindingClaimed{KMSInstance: kms, Backup: y, Owner: id(21), At: 9}

	cases := []struct {
		name    string
		given   *domain.Event // the stream's last event; nil: no stream
		atAt    *domain.Event // the event at the claim's revision; nil: none yet
		when    decision
		then    domain.EventData
		wantExp domain.ExpectedRevision
		wantErr error
	}{
		{"bind a KMS instance never bound: expects no stream", nil, nil, claimByY, yClaims, domain.ExpectNoStream, nil},
		{"bind a released KMS instance: expects the release's revision", freed, nil, claimByY, yClaims, domain.ExpectRevision(5), nil},
		{"bind a KMS instance held by x's enable: refused", heldByX, xEnabled, claimByY, nil, domain.ExpectedRevision{}, domain.ErrAlreadyExists},
		{"bind a KMS instance whose claim's enable may still follow: refused", heldByX, nil, claimByY, nil, domain.ExpectedRevision{}, domain.ErrAlreadyExists},
		{"bind a KMS instance whose claim is dead: expects the claim's revision", heldByX, xOther, claimByY, yClaims, domain.ExpectRevision(4), nil},
		{"the holder's binding ends: released at the claim's revision", heldByX, nil, releaseBy(x),
			&domain.BindingReleased{KMSInstance: kms, Backup: x}, domain.ExpectRevision(4), nil},
		{"another backup instance's binding ends: nothing to release", heldByX, nil, releaseBy(y), nil, domain.ExpectedRevision{}, errNothingToRelease},
		{"a free KMS instance: nothing to release", freed, nil, releaseBy(x), nil, domain.ExpectedRevision{}, errNothingToRelease},
		{"a binding from before binding streams ends: nothing to release", nil, nil, releaseBy(x), nil, domain.ExpectedRevision{}, errNothingToRelease},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := domain.BindingOf(c.given)
			if err != nil {
				t.Fatal(err)
			}
			d, exp, err := c.when(h, c.atAt)
			if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Fatalf("error %v, want %v", err, c.wantErr)
			}
			if diff := cmp.Diff(c.then, d); diff != "" || exp != c.wantExp {
				t.Fatalf("event (-want +got):\n%s\nexpected %s, want %s", diff, exp, c.wantExp)
			}
		})
	}
}

func TestBindingHolder(t *testing.T) {
	x := domain.NewBackupID(id(2))
	held, err := domain.BindingOf(binding(0, &domain.BindingClaimed{KMSInstance: domain.NewInstanceID(id(1)), Backup: x, Owner: id(20)}))
	if err != nil {
		t.Fatal(err)
	}
	if got := held.Holder(false); got != x {
		t.Errorf("Holder of a live claim = %q, want %s", got, x)
	}
	if got := held.Holder(true); got != "" {
		t.Errorf("Holder of a dead claim = %q, want none", got)
	}
	if got := (domain.BindingHold{}).Holder(false); got != "" {
		t.Errorf("Holder of no stream = %q, want none", got)
	}
}

func TestBindingStream(t *testing.T) {
	a, b := domain.NewInstanceID(id(1)), domain.NewInstanceID(id(2))
	if domain.BindingStream(a) == domain.BindingStream(b) || domain.BindingStream(a) != domain.BindingStreamPrefix+string(a) {
		t.Fatalf("BindingStream(%s) = %q, BindingStream(%s) = %q: want the prefix and the ID", a, domain.BindingStream(a), b, domain.BindingStream(b))
	}
}

func TestBindingOfRefusesOtherEvents(t *testing.T) {
	_, err := domain.BindingOf(binding(0, &domain.NameReleased{Kind: domain.NameKindKey, Name: "k"}))
	if !domain.IsCorruption(err) {
		t.Fatalf("BindingOf(a NameReleased) = %v, want corruption", err)
	}
}

func TestBindingEventsRoundTrip(t *testing.T) {
	for _, d := range []domain.EventData{
		&domain.BindingClaimed{KMSInstance: domain.NewInstanceID(id(1)), Backup: domain.NewBackupID(id(2)), Owner: id(20), At: 1 << 40},
		&domain.BindingReleased{KMSInstance: domain.NewInstanceID(id(1)), Backup: domain.NewBackupID(id(2))},
	} {
		got, err := domain.DecodeData(d.EventType(), domain.SchemaVersion, domain.EncodeData(d))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(d, got); diff != "" {
			t.Fatalf("%s round trip (-want +got):\n%s", d.EventType(), diff)
		}
	}
}
