package domain_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

// binding builds the last event of a binding stream at rev.
func binding(rev uint64, d domain.EventData) *domain.Event {
	return &domain.Event{ID: id(byte(60 + rev)), Stream: "binding-x", Revision: rev, Type: d.EventType(),
		Schema: domain.SchemaVersion, Data: domain.EncodeData(d)}
}

func TestBindingClaimRules(t *testing.T) {
	kms := domain.NewInstanceID(id(1))
	x, y := domain.NewBackupID(id(2)), domain.NewBackupID(id(3))
	heldByX := binding(4, &domain.BindingClaimed{KMSInstance: kms, Backup: x, Owner: id(20), At: 1})
	freed := binding(5, &domain.BindingReleased{KMSInstance: kms, Backup: x})

	cases := []struct {
		name       string
		given      *domain.Event // the stream's last event; nil: no stream
		claimDead  bool
		wantHolder domain.BackupID
		wantErr    error
		wantExp    domain.ExpectedRevision
	}{
		{"bind a KMS instance never bound expects no stream", nil, false, "", nil, domain.ExpectNoStream},
		{"bind a released KMS instance expects the release's revision", freed, false, "", nil, domain.ExpectRevision(5)},
		{"bind a held KMS instance is refused", heldByX, false, x, domain.ErrAlreadyExists, domain.ExpectedRevision{}},
		{"bind a KMS instance whose claim is dead expects the claim's revision", heldByX, true, "", nil, domain.ExpectRevision(4)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := domain.BindingOf(c.given)
			if err != nil {
				t.Fatal(err)
			}
			if got := h.Holder(c.claimDead); got != c.wantHolder {
				t.Fatalf("Holder = %q, want %q", got, c.wantHolder)
			}
			d, exp, err := h.ClaimFor(kms, y, id(21), 9, c.claimDead)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) || d != nil {
					t.Fatalf("want %v, got %v (claim %+v)", c.wantErr, err, d)
				}
				return
			}
			if err != nil {
				t.Fatalf("want accepted, got %v", err)
			}
			want := &domain.BindingClaimed{KMSInstance: kms, Backup: y, Owner: id(21), At: 9}
			if diff := cmp.Diff(want, d); diff != "" || exp != c.wantExp {
				t.Fatalf("claim (-want +got):\n%s\nexpected %s, want %s", diff, exp, c.wantExp)
			}
		})
	}
}

func TestBindingReleaseRules(t *testing.T) {
	kms := domain.NewInstanceID(id(1))
	x, y := domain.NewBackupID(id(2)), domain.NewBackupID(id(3))
	heldByX := binding(2, &domain.BindingClaimed{KMSInstance: kms, Backup: x, Owner: id(20), At: 1})
	freed := binding(3, &domain.BindingReleased{KMSInstance: kms, Backup: x})
	cases := []struct {
		name    string
		given   *domain.Event
		by      domain.BackupID
		wantOK  bool
		wantExp domain.ExpectedRevision
	}{
		{"the holder releases at the claim's revision", heldByX, x, true, domain.ExpectRevision(2)},
		{"another backup instance has nothing to release", heldByX, y, false, domain.ExpectedRevision{}},
		{"a free KMS instance has nothing to release", freed, x, false, domain.ExpectedRevision{}},
		{"a binding from before binding streams has nothing to release", nil, x, false, domain.ExpectedRevision{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := domain.BindingOf(c.given)
			if err != nil {
				t.Fatal(err)
			}
			d, exp, ok := h.ReleaseBy(c.by)
			if ok != c.wantOK || exp != c.wantExp {
				t.Fatalf("ReleaseBy = %+v, %s, %t; want ok %t expecting %s", d, exp, ok, c.wantOK, c.wantExp)
			}
			if ok && (d.Backup != c.by || d.KMSInstance != kms) {
				t.Fatalf("release %+v does not name the holder and its KMS instance", d)
			}
		})
	}
}

func TestBindingClaimDead(t *testing.T) {
	c := &domain.BindingClaimed{KMSInstance: domain.NewInstanceID(id(1)), Backup: domain.NewBackupID(id(2)), Owner: id(20), At: 3}
	for _, x := range []struct {
		name string
		atAt *domain.Event
		dead bool
	}{
		{"its BackupEnabled is at its revision", &domain.Event{ID: id(20), Revision: 3}, false},
		{"its revision is not written yet", nil, false},
		{"another event took its revision", &domain.Event{ID: id(21), Revision: 3}, true},
	} {
		if got := c.ClaimDead(x.atAt); got != x.dead {
			t.Errorf("%s: ClaimDead = %t, want %t", x.name, got, x.dead)
		}
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
