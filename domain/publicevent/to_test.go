package publicevent_test

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/publicevent"
)

// kmsGoldens is the golden events of the types ToEvent maps.
func kmsGoldens(tb testing.TB) []domain.Event {
	tb.Helper()
	var out []domain.Event
	for _, e := range goldenEvents(tb) {
		if slices.Contains(publicevent.KMSTypes(), e.Type) {
			out = append(out, e)
		}
	}
	return out
}

// TestToEventInvertsFromEvent: for every KMS golden event e,
// ToEvent(FromEvent(e)) is e, and so is ToEvent of the golden file parsed
// (what an external KMS would publish).
func TestToEventInvertsFromEvent(t *testing.T) {
	events := kmsGoldens(t)
	var types []string
	for _, e := range events {
		types = append(types, e.Type)
		t.Run(e.Type, func(t *testing.T) {
			pub, err := publicevent.FromEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := publicevent.ToEvent(pub)
			if err != nil {
				t.Fatalf("ToEvent(FromEvent(e)) = %v", err)
			}
			if diff := cmp.Diff(e, got); diff != "" {
				t.Errorf("ToEvent(FromEvent(e)) != e (-want +got):\n%s", diff)
			}

			golden, err := os.ReadFile(goldenPath(e.Type))
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := publicevent.Parse(golden)
			if err != nil {
				t.Fatal(err)
			}
			got, err = publicevent.ToEvent(parsed)
			if err != nil {
				t.Fatalf("ToEvent(golden) = %v", err)
			}
			if diff := cmp.Diff(e, got); diff != "" {
				t.Errorf("ToEvent(golden) != e (-want +got):\n%s", diff)
			}
		})
	}
	want := slices.Sorted(slices.Values(publicevent.KMSTypes()))
	slices.Sort(types)
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("golden events do not cover every KMS type (-KMSTypes +goldens):\n%s", diff)
	}
}

func TestToEventDoesNotAlias(t *testing.T) {
	pub, err := publicevent.FromEvent(kmsGoldens(t)[1]) // KeyCreated
	if err != nil {
		t.Fatal(err)
	}
	e, err := publicevent.ToEvent(pub)
	if err != nil {
		t.Fatal(err)
	}
	before := slices.Clone(e.Data)
	m := pub.Data.(*publicevent.KeyCreated).MaterialSealed
	for i := range m {
		m[i] = 0
	}
	if !slices.Equal(before, e.Data) {
		t.Error("the log event shares its bytes with the public event")
	}
}

func TestToEventRefuses(t *testing.T) {
	goldens := kmsGoldens(t)
	byType := map[string]publicevent.Event{}
	for _, e := range goldens {
		pub, err := publicevent.FromEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		byType[e.Type] = pub
	}
	// edit returns a copy of the public event of type typ, changed by fn
	// (through a JSON round trip, so that fn may change the data freely).
	edit := func(typ string, fn func(e *publicevent.Event)) publicevent.Event {
		t.Helper()
		b, err := json.Marshal(byType[typ])
		if err != nil {
			t.Fatal(err)
		}
		e, err := publicevent.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		fn(&e)
		return e
	}
	account, err := publicevent.FromEvent(goldenEvents(t)[0]) // AccountCreated
	if err != nil {
		t.Fatal(err)
	}
	other := domain.NewInstanceID(mustULID(t, 99))

	tests := []struct {
		name    string
		in      publicevent.Event
		mention string
	}{
		{"not a KMS type", account, `type "AccountCreated" is not an event of a KMS instance's stream`},
		{"unknown type", edit("KeyDeleted", func(e *publicevent.Event) {
			e.Type = "KeyFrozen"
			e.Data = &publicevent.Unknown{Type: "KeyFrozen", Raw: json.RawMessage(`{}`)}
		}), `type "KeyFrozen"`},
		{"other schema", edit("KeyDeleted", func(e *publicevent.Event) { e.Schema = "kmsbackup.event/v2" }), "schema"},
		{"bad id", edit("KeyDeleted", func(e *publicevent.Event) { e.ID = "42" }), `id "42" is not a ULID`},
		{"no data", edit("KeyDeleted", func(e *publicevent.Event) { e.Data = nil }), "no data"},
		{"data of another type", edit("KeyDeleted", func(e *publicevent.Event) { e.Data = &publicevent.SecretDeleted{Name: "x"} }),
			"data is of type SecretDeleted"},
		{"backup stream", edit("KeyDeleted", func(e *publicevent.Event) { e.Stream = "backup-bkp_01KJMBQHB00G2081040G208104" }),
			"is not the stream of instance"},
		{"stream of another instance", edit("KeyDeleted", func(e *publicevent.Event) { e.Stream = domain.KMSStream(other) }),
			"is not the stream of instance"},
		{"no instance", edit("KeyDeleted", func(e *publicevent.Event) { e.Instance = "" }), "instance"},
		{"bad account", edit("KeyDeleted", func(e *publicevent.Event) { e.Account = "bob" }), "account"},
		{"bad region", edit("KeyDeleted", func(e *publicevent.Event) { e.Region = "" }), "region"},
		{"no time", edit("KeyDeleted", func(e *publicevent.Event) { e.OccurredAt = time.Time{} }), "occurred_at"},
		{"instance data of another instance", edit("InstanceCreated", func(e *publicevent.Event) {
			e.Data.(*publicevent.InstanceCreated).InstanceID = string(other)
		}), "differs from the envelope's instance"},
		{"instance data of another region", edit("InstanceCreated", func(e *publicevent.Event) {
			e.Data.(*publicevent.InstanceCreated).Region = "cn-shanghai"
		}), "differs from the envelope's region"},
		{"zero quota", edit("InstanceCreated", func(e *publicevent.Event) { e.Data.(*publicevent.InstanceCreated).KeyQuota = 0 }), "quota"},
		{"released instance of another", edit("InstanceReleased", func(e *publicevent.Event) {
			e.Data.(*publicevent.InstanceReleased).InstanceID = string(other)
		}), "differs from the envelope's instance"},
		{"bad key id", edit("KeyCreated", func(e *publicevent.Event) { e.Data.(*publicevent.KeyCreated).KeyID = "k1" }), "key_id"},
		{"created key at version 2", edit("KeyCreated", func(e *publicevent.Event) { e.Data.(*publicevent.KeyCreated).Version = 2 }), "version 2"},
		{"other spec", edit("KeyCreated", func(e *publicevent.Event) { e.Data.(*publicevent.KeyCreated).Spec = "RSA_2048" }), "spec"},
		{"no material", edit("KeyCreated", func(e *publicevent.Event) { e.Data.(*publicevent.KeyCreated).MaterialSealed = nil }), "material_sealed"},
		{"rotated to version 1", edit("KeyRotated", func(e *publicevent.Event) { e.Data.(*publicevent.KeyRotated).Version = 1 }), "version 1"},
		{"bad secret name", edit("SecretCreated", func(e *publicevent.Event) { e.Data.(*publicevent.SecretCreated).Name = "a b" }), "name"},
		{"no ciphertext", edit("SecretRotated", func(e *publicevent.Event) { e.Data.(*publicevent.SecretRotated).ValueCiphertext = nil }),
			"value_ciphertext"},
		{"deleted secret without name", edit("SecretDeleted", func(e *publicevent.Event) { e.Data.(*publicevent.SecretDeleted).Name = "" }), "name"},
		{"restored key without versions", edit("KeyRestored", func(e *publicevent.Event) { e.Data.(*publicevent.KeyRestored).Versions = nil }),
			"no versions"},
		{"restored key versions out of order", edit("KeyRestored", func(e *publicevent.Event) {
			v := e.Data.(*publicevent.KeyRestored).Versions
			v[0], v[1] = v[1], v[0]
		}), "versions[0] is version 2"},
		{"restored from a bad day", edit("SecretRestored", func(e *publicevent.Event) { e.Data.(*publicevent.SecretRestored).From.Day = "1 March" }),
			"from"},
		{"restored secret version of a bad key", edit("SecretRestored", func(e *publicevent.Event) {
			e.Data.(*publicevent.SecretRestored).Versions[1].KeyID = ""
		}), "versions[1].key_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := publicevent.ToEvent(tt.in)
			if !errors.Is(err, domain.ErrInvalidArgument) {
				t.Fatalf("ToEvent = %v, want domain.ErrInvalidArgument", err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}
