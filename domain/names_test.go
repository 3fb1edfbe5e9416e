package domain_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

// reservation builds the last event of a reservation stream at rev.
func reservation(rev uint64, d domain.EventData) *domain.Event {
	return &domain.Event{ID: id(byte(40 + rev)), Stream: "name-x", Revision: rev, Type: d.EventType(),
		Schema: domain.SchemaVersion, Data: domain.EncodeData(d)}
}

func TestNameReservationRules(t *testing.T) {
	inA, inB := domain.NewInstanceID(id(1)), domain.NewInstanceID(id(3))
	owner, other := id(20), id(21)
	heldByA := reservation(4, &domain.NameClaimed{Kind: domain.NameKindSecret, Name: "db", Instance: inA, Owner: owner, At: 7})
	freed := reservation(5, &domain.NameReleased{Kind: domain.NameKindSecret, Name: "db", Instance: inA})

	cases := []struct {
		name       string
		given      *domain.Event // the stream's last event; nil: no stream
		holderGone bool
		wantErr    error
		wantExp    domain.ExpectedRevision
	}{
		{"claim a name never claimed expects no stream", nil, false, nil, domain.ExpectNoStream},
		{"claim a released name expects the release's revision", freed, false, nil, domain.ExpectRevision(5)},
		{"claim a held name is refused", heldByA, false, domain.ErrAlreadyExists, domain.ExpectedRevision{}},
		{"claim a name whose holder is gone expects the claim's revision", heldByA, true, nil, domain.ExpectRevision(4)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := domain.HoldOf(c.given)
			if err != nil {
				t.Fatal(err)
			}
			d, exp, err := h.ClaimFor(domain.NameKindSecret, "db", inB, other, 9, c.holderGone)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) || d != nil {
					t.Fatalf("want %v, got %v (claim %+v)", c.wantErr, err, d)
				}
				return
			}
			if err != nil {
				t.Fatalf("want accepted, got %v", err)
			}
			want := &domain.NameClaimed{Kind: domain.NameKindSecret, Name: "db", Instance: inB, Owner: other, At: 9}
			if diff := cmp.Diff(want, d); diff != "" || exp != c.wantExp {
				t.Fatalf("claim (-want +got):\n%s\nexpected %s, want %s", diff, exp, c.wantExp)
			}
		})
	}
}

func TestNameReleaseRules(t *testing.T) {
	inA, inB := domain.NewInstanceID(id(1)), domain.NewInstanceID(id(3))
	heldByA := reservation(2, &domain.NameClaimed{Kind: domain.NameKindKey, Name: "k", Instance: inA, Owner: id(20), At: 0})
	freed := reservation(3, &domain.NameReleased{Kind: domain.NameKindKey, Name: "k", Instance: inA})
	cases := []struct {
		name    string
		given   *domain.Event
		by      domain.InstanceID
		wantOK  bool
		wantExp domain.ExpectedRevision
	}{
		{"the holder releases at the claim's revision", heldByA, inA, true, domain.ExpectRevision(2)},
		{"another instance has nothing to release", heldByA, inB, false, domain.ExpectedRevision{}},
		{"a free name has nothing to release", freed, inA, false, domain.ExpectedRevision{}},
		{"a name from before reservations has nothing to release", nil, inA, false, domain.ExpectedRevision{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := domain.HoldOf(c.given)
			if err != nil {
				t.Fatal(err)
			}
			d, exp, ok := h.ReleaseBy(c.by)
			if ok != c.wantOK || exp != c.wantExp {
				t.Fatalf("ReleaseBy = %+v, %s, %t; want ok %t expecting %s", d, exp, ok, c.wantOK, c.wantExp)
			}
			if ok && (d.Instance != c.by || d.Name != "k" || d.Kind != domain.NameKindKey) {
				t.Fatalf("release %+v does not name the holder's key", d)
			}
		})
	}
}

func TestClaimDead(t *testing.T) {
	c := &domain.NameClaimed{Kind: domain.NameKindSecret, Name: "db", Instance: domain.NewInstanceID(id(1)), Owner: id(20), At: 7}
	for _, x := range []struct {
		name string
		atAt *domain.Event
		dead bool
	}{
		{"its owner is at its revision", &domain.Event{ID: id(20), Revision: 7}, false},
		{"its revision is not written yet", nil, false},
		{"another event took its revision", &domain.Event{ID: id(21), Revision: 7}, true},
	} {
		if got := c.ClaimDead(x.atAt); got != x.dead {
			t.Errorf("%s: ClaimDead = %t, want %t", x.name, got, x.dead)
		}
	}
}

func TestNameStream(t *testing.T) {
	acc := domain.NewAccountID(id(9))
	a := domain.NameStream(acc, "cn-hangzhou", domain.NameKindSecret, "db")
	for _, other := range []string{
		domain.NameStream(acc, "cn-hangzhou", domain.NameKindKey, "db"),
		domain.NameStream(acc, "eu-central-1", domain.NameKindSecret, "db"),
		domain.NameStream(domain.NewAccountID(id(8)), "cn-hangzhou", domain.NameKindSecret, "db"),
		domain.NameStream(acc, "cn-hangzhou", domain.NameKindSecret, "db2"),
		domain.NameStream(acc, "cn-hangzhou\x00secret", "", "db"),
	} {
		if other == a {
			t.Fatalf("two names share reservation stream %s", a)
		}
	}
	if a != domain.NameStream(acc, "cn-hangzhou", domain.NameKindSecret, "db") {
		t.Fatal("NameStream is not deterministic")
	}
	if len(a) != len(domain.NameStreamPrefix)+64 {
		t.Fatalf("NameStream = %q: want the prefix and 64 hex digits", a)
	}
}

func TestHoldOfRefusesOtherEvents(t *testing.T) {
	_, err := domain.HoldOf(reservation(0, &domain.SecretDeleted{Name: "db"}))
	if !domain.IsCorruption(err) {
		t.Fatalf("HoldOf(a SecretDeleted) = %v, want corruption", err)
	}
}
