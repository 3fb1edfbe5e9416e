package domain_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

// planItem is one item given to a plan, with what the target says of it.
type planItem struct {
	c domain.RestoreCandidate
	f domain.RestoreItemFacts
}

// plan folds a restore plan: given the start and the items (and the named
// items the point lacks), it returns every item's status and the codes of
// every finding, in the order the planner gave them.
func plan(s domain.RestoreStart, items []planItem, missing ...string) (statuses, codes []string) {
	p, fs := domain.StartRestore(s)
	for _, it := range items {
		st, more := p.Item(it.c, it.f)
		statuses = append(statuses, st)
		fs = append(fs, more...)
	}
	for _, id := range missing {
		fs = append(fs, p.Missing(domain.RestoreKey, id))
	}
	fs = append(fs, p.Finish()...)
	for _, f := range fs {
		codes = append(codes, f.Code)
	}
	return statuses, codes
}

func TestRestorePlanner(t *testing.T) {
	target := &domain.Instance{ID: domain.NewInstanceID(id(1)), Account: acct, Region: "cn-hangzhou", KeyQuota: 2, SecretQuota: 1}
	foreign := &domain.Instance{ID: domain.NewInstanceID(id(2)), Account: other, Region: "cn-hangzhou", KeyQuota: 10, SecretQuota: 10}
	released := &domain.Instance{ID: domain.NewInstanceID(id(3)), Account: acct, Region: "cn-hangzhou", KeyQuota: 10, SecretQuota: 10, Released: true}
	full := &domain.Instance{ID: domain.NewInstanceID(id(4)), Account: acct, Region: "eu-central-1", KeyQuota: 1, SecretQuota: 1, LiveKeys: 1, LiveSecrets: 1}
	enabled := &domain.Backup{ID: bkpID, Account: acct, Kind: domain.BackupProvisioned, State: domain.StateEnabled, EnabledDay: "2026-05-01", ViewableDays: 7}
	expired := &domain.Backup{ID: bkpID, Account: acct, Kind: domain.BackupProvisioned, State: domain.StateExpired, EnabledDay: "2026-05-01", ViewableDays: 7}
	releasedB := &domain.Backup{ID: bkpID, Account: acct, Kind: domain.BackupProvisioned, State: domain.StateReleased, EnabledDay: "2026-05-01", ViewableDays: 7}
	upload := &domain.Backup{ID: bkpID, Account: acct, Kind: domain.BackupUpload, State: domain.StateEnabled, UploadDay: "2026-04-01"}

	start := func(b *domain.Backup, day domain.Day, to *domain.Instance) domain.RestoreStart {
		return domain.RestoreStart{Account: acct, Backup: b, Day: day, Today: "2026-05-03", TargetID: to.ID, Target: to}
	}
	ok := start(enabled, "2026-05-02", target)
	k1 := domain.RestoreCandidate{Kind: domain.RestoreKey, ID: "key_1", Versions: 2}
	k2 := domain.RestoreCandidate{Kind: domain.RestoreKey, ID: "key_2", Versions: 1}
	k3 := domain.RestoreCandidate{Kind: domain.RestoreKey, ID: "key_3", Versions: 1}
	s1 := domain.RestoreCandidate{Kind: domain.RestoreSecret, ID: "db", Versions: 3, KeyID: "key_1"}
	s2 := domain.RestoreCandidate{Kind: domain.RestoreSecret, ID: "api", Versions: 1, KeyID: "key_2"}
	absent := domain.RestoreItemFacts{}
	keyWith := domain.RestoreItemFacts{KeyRestoredWith: true}
	keyThere := domain.RestoreItemFacts{KeyInTarget: true}
	at := func(p domain.RestorePresence) domain.RestoreItemFacts { return domain.RestoreItemFacts{Presence: p} }

	cases := []struct {
		name     string
		given    domain.RestoreStart
		when     []planItem
		missing  []string
		statuses []string
		codes    []string
	}{
		{"a key and its secret into an empty target", ok, []planItem{{k1, absent}, {s1, keyWith}}, nil,
			[]string{domain.RestorePlanned, domain.RestorePlanned}, nil},
		{"a secret whose key is in the target", ok, []planItem{{s1, keyThere}}, nil, []string{domain.RestorePlanned}, nil},
		{"a secret whose key is neither in the target nor restored with it", ok, []planItem{{s1, absent}}, nil,
			[]string{domain.RestorePlanned}, []string{domain.FindingSecretKeyMissing}},
		{"items already present and identical are skipped, and need no quota", start(enabled, "2026-05-02", full),
			[]planItem{{k1, at(domain.PresentIdentical)}, {s1, at(domain.PresentIdentical)}}, nil,
			[]string{domain.RestorePresent, domain.RestorePresent}, nil},
		{"a key ID taken in the region by another instance", ok, []planItem{{k1, at(domain.PresentElsewhere)}}, nil,
			[]string{domain.RestorePlanned}, []string{domain.FindingKeyExists}},
		{"a key in the target with other versions", ok, []planItem{{k1, at(domain.PresentDifferent)}}, nil,
			[]string{domain.RestorePlanned}, []string{domain.FindingKeyExists}},
		{"a secret name taken, and its key missing", ok, []planItem{{s1, at(domain.PresentElsewhere)}}, nil,
			[]string{domain.RestorePlanned}, []string{domain.FindingSecretExists, domain.FindingSecretKeyMissing}},
		{"key quota", ok, []planItem{{k1, absent}, {k2, absent}, {k3, absent}}, nil,
			[]string{domain.RestorePlanned, domain.RestorePlanned, domain.RestorePlanned}, []string{domain.FindingKeyQuota}},
		{"secret quota", ok, []planItem{{k1, absent}, {s1, keyWith}, {s2, keyWith}}, nil,
			[]string{domain.RestorePlanned, domain.RestorePlanned, domain.RestorePlanned}, []string{domain.FindingSecretQuota}},
		{"target not found", domain.RestoreStart{Account: acct, Backup: enabled, Day: "2026-05-02", Today: "2026-05-03", TargetID: target.ID},
			[]planItem{{s1, absent}}, nil, []string{domain.RestorePlanned}, []string{domain.FindingTargetNotFound}},
		{"another account's target answers as a missing one", start(enabled, "2026-05-02", foreign),
			[]planItem{{k1, absent}}, nil, []string{domain.RestorePlanned}, []string{domain.FindingTargetNotFound}},
		{"released target: no quota finding", start(enabled, "2026-05-02", released), []planItem{{k1, absent}}, nil,
			[]string{domain.RestorePlanned}, []string{domain.FindingTargetReleased}},
		{"region mismatch", func() domain.RestoreStart { s := ok; s.Region = "eu-central-1"; return s }(), nil, nil,
			nil, []string{domain.FindingRegionMismatch}},
		{"expired backup", start(expired, "2026-05-02", target), nil, nil, nil, []string{domain.FindingBackupExpired}},
		{"released backup", start(releasedB, "2026-05-02", target), nil, nil, nil, []string{domain.FindingBackupExpired}},
		{"day before enabling", start(enabled, "2026-04-30", target), nil, nil, nil, []string{domain.FindingDayNotViewable}},
		{"day in the future", start(enabled, "2026-05-04", target), nil, nil, nil, []string{domain.FindingDayNotViewable}},
		{"an upload's day", start(upload, "2026-04-01", target), nil, nil, nil, nil},
		{"another day of an upload", start(upload, "2026-04-02", target), nil, nil, nil, []string{domain.FindingDayNotViewable}},
		{"an item not in the point", ok, nil, []string{"key_9"}, nil, []string{domain.FindingItemNotInBackup}},
		{"every finding at once", func() domain.RestoreStart {
			s := start(expired, "2026-05-02", full)
			s.Region = "cn-hangzhou"
			return s
		}(),
			[]planItem{{k1, at(domain.PresentElsewhere)}, {k2, absent}, {s2, absent}}, []string{"key_9"},
			[]string{domain.RestorePlanned, domain.RestorePlanned, domain.RestorePlanned},
			[]string{domain.FindingBackupExpired, domain.FindingRegionMismatch, domain.FindingKeyExists, domain.FindingSecretKeyMissing,
				domain.FindingItemNotInBackup, domain.FindingKeyQuota, domain.FindingSecretQuota}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			statuses, codes := plan(c.given, c.when, c.missing...)
			if diff := cmp.Diff(c.statuses, statuses); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.codes, codes); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRestorePlannerMessages(t *testing.T) {
	foreign := &domain.Instance{ID: domain.NewInstanceID(id(2)), Account: other, Region: "cn-hangzhou"}
	b := &domain.Backup{ID: bkpID, Account: acct, Kind: domain.BackupProvisioned, State: domain.StateEnabled, EnabledDay: "2026-05-01", ViewableDays: 7}
	_, a := domain.StartRestore(domain.RestoreStart{Account: acct, Backup: b, Day: "2026-05-02", Today: "2026-05-02", TargetID: foreign.ID, Target: foreign})
	_, m := domain.StartRestore(domain.RestoreStart{Account: acct, Backup: b, Day: "2026-05-02", Today: "2026-05-02", TargetID: foreign.ID})
	if diff := cmp.Diff(m, a); diff != "" || len(a) != 1 {
		t.Errorf("another account's target and a missing one answer differently (-missing +other):\n%s", diff)
	}
	want := "KMS instance " + string(foreign.ID) + " not found"
	if a[0].Message != want {
		t.Errorf("message %q, want %q", a[0].Message, want)
	}
	if err := a[0].Err("restore"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("the finding as an error: %v", err)
	}
	_, late := domain.StartRestore(domain.RestoreStart{Account: acct, Backup: b, Day: "2026-04-20", Today: "2026-05-02", TargetID: foreign.ID})
	if want := "plan restore 2026-04-20: day is not viewable (viewable days of " + string(bkpID) + ": from 2026-05-01 to 2026-05-02)"; late[0].Message != want {
		t.Errorf("day finding %q, want %q", late[0].Message, want)
	}
}

func TestParseRestoreSelection(t *testing.T) {
	k1, k2 := string(domain.NewKeyID(id(1))), string(domain.NewKeyID(id(2)))
	cases := []struct {
		name             string
		all              bool
		keys, secrets    []string
		wantErr          string
		wantKeys         []domain.KeyID
		wantSecrets      []string
		selects, ignores string
	}{
		{name: "everything", all: true, selects: "anything"},
		{name: "named, sorted, once each", keys: []string{k2, k1, k2}, secrets: []string{"db", "api"},
			wantKeys: []domain.KeyID{domain.KeyID(k1), domain.KeyID(k2)}, wantSecrets: []string{"api", "db"}, selects: k1, ignores: "key_x"},
		{name: "all and names", all: true, keys: []string{k1}, wantErr: "not both"},
		{name: "all and a secret", all: true, secrets: []string{"db"}, wantErr: "not both"},
		{name: "nothing", wantErr: "name what to restore"},
		{name: "an empty key", keys: []string{k1, ""}, wantErr: `key ID "" must start with "key_"`},
		{name: "a malformed key", keys: []string{"key_1"}, wantErr: `key ID "key_1" is not a valid ID`},
		{name: "an empty secret", secrets: []string{""}, wantErr: `secret name "" must be`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := domain.ParseRestoreSelection(c.all, c.keys, c.secrets)
			if c.wantErr != "" {
				if !errors.Is(err, domain.ErrInvalidArgument) || !strings.Contains(err.Error(), c.wantErr) || !s.IsZero() {
					t.Fatalf("error %v, want invalid argument with %q", err, c.wantErr)
				}
				return
			}
			if err != nil || s.All() != c.all || s.IsZero() {
				t.Fatalf("selection %+v, %v", s, err)
			}
			if diff := cmp.Diff(c.wantKeys, s.Keys()); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.wantSecrets, s.Secrets()); diff != "" {
				t.Errorf("secrets (-want +got):\n%s", diff)
			}
			if c.selects != "anything" && (!s.Selects(domain.RestoreKey, c.selects) || s.Selects(domain.RestoreKey, c.ignores) ||
				!s.Selects(domain.RestoreSecret, "db") || s.Selects(domain.RestoreSecret, "other")) {
				t.Errorf("selects the wrong items: %+v", s)
			}
		})
	}
	if (domain.RestoreSelection{}).Selects(domain.RestoreKey, k1) || !(domain.RestoreSelection{}).IsZero() {
		t.Error("the zero selection selects something")
	}
}
