package domain_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

func TestEventDataRoundTrip(t *testing.T) {
	all := []domain.EventData{
		&domain.AccountCreated{Account: domain.NewAccountID(id(1)), Name: "acme", TokenHash: [32]byte{1, 2}},
		&domain.InstanceCreated{Instance: domain.NewInstanceID(id(2)), Region: "cn-hangzhou", KeyQuota: 10, SecretQuota: 20},
		&domain.InstanceReleased{Instance: domain.NewInstanceID(id(2))},
		&domain.KeyCreated{Key: domain.NewKeyID(id(3)), Description: "<b>x</b>", Spec: domain.KeySpecAES256, Material: []byte{9, 9}},
		&domain.KeyRotated{Key: domain.NewKeyID(id(3)), Version: 7, Material: []byte{8}},
		&domain.KeyDeleted{Key: domain.NewKeyID(id(3))},
		&domain.SecretCreated{Name: "db", Key: domain.NewKeyID(id(3)), Value: []byte("kms1:x")},
		&domain.SecretRotated{Name: "db", Version: 2, Key: domain.NewKeyID(id(3)), Value: []byte("kms1:y")},
		&domain.SecretDeleted{Name: "db"},
		&domain.KeyRestored{Key: domain.NewKeyID(id(3)), Description: "d", Spec: domain.KeySpecAES256,
			Versions: []domain.RestoredKeyVersion{{Version: 1, Material: []byte{1}, CreatedAt: t0}, {Version: 2, Material: []byte{2}, CreatedAt: t0}},
			From:     domain.RestoredFrom{Backup: domain.NewBackupID(id(4)), Day: "2026-05-01", Seq: 7, By: "acct_x"}},
		&domain.SecretRestored{Name: "db", Key: domain.NewKeyID(id(3)),
			Versions: []domain.RestoredSecretVersion{{Version: 1, Key: domain.NewKeyID(id(3)), Value: []byte("kms1:x"), CreatedAt: t0}},
			From:     domain.RestoredFrom{Backup: domain.NewBackupID(id(4)), Day: "2026-05-01", Seq: 7, By: "acct_x"}},
		&domain.Audited{Action: "restore-key", Actor: "acct_x", Backup: domain.NewBackupID(id(4)), Day: "2026-05-01", Target: "kms_x", Item: "key_x"},
		&domain.Audited{Action: "restore", Actor: "acct_x", Backup: domain.NewBackupID(id(4)), Day: "2026-05-01", Target: "kms_x",
			Keys: []string{"key_x", "key_y"}, Secrets: []string{"db"}},
		&domain.BackupSourceReleased{Instance: domain.NewInstanceID(id(2)), Next: 17, End: 300},
		&domain.BackupFailing{Work: "incremental", Reason: "take backup: no data key", Since: t0, Attempts: 3},
		&domain.AccountTokenReplaced{Account: domain.NewAccountID(id(1)), TokenHash: [32]byte{3, 4}},
		&domain.SessionStarted{Session: [32]byte{5}, TokenHash: [32]byte{6}, ExpiresAt: t0},
		&domain.SessionEnded{Session: [32]byte{7}},
	}
	for _, d := range all {
		t.Run(d.EventType(), func(t *testing.T) {
			b := domain.EncodeData(d)
			got, err := domain.DecodeData(d.EventType(), domain.SchemaVersion, b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(d, got); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
			// Every truncation is a corruption error, never a panic.
			for i := 0; i < len(b); i++ {
				if _, err := domain.DecodeData(d.EventType(), domain.SchemaVersion, b[:i]); !domain.IsCorruption(err) {
					t.Fatalf("truncated at %d: want corruption, got %v", i, err)
				}
			}
			if _, err := domain.DecodeData(d.EventType(), domain.SchemaVersion, append(b, 0)); !domain.IsCorruption(err) {
				t.Fatalf("trailing byte: want corruption, got %v", err)
			}
		})
	}
	if _, err := domain.DecodeData("Nope", domain.SchemaVersion, nil); !domain.IsCorruption(err) {
		t.Fatalf("unknown type: want corruption, got %v", err)
	}
	if _, err := domain.DecodeData(domain.TypeKeyDeleted, 99, nil); !domain.IsCorruption(err) {
		t.Fatalf("unknown schema: want corruption, got %v", err)
	}
}

func TestExpectedRevision(t *testing.T) {
	cases := []struct {
		e      domain.ExpectedRevision
		exists bool
		head   uint64
		ok     bool
	}{
		{domain.ExpectAny, false, 0, true},
		{domain.ExpectAny, true, 5, true},
		{domain.ExpectNoStream, false, 0, true},
		{domain.ExpectNoStream, true, 0, false},
		{domain.ExpectStreamExists, false, 0, false},
		{domain.ExpectStreamExists, true, 3, true},
		{domain.ExpectRevision(3), true, 3, true},
		{domain.ExpectRevision(3), true, 4, false},
		{domain.ExpectRevision(0), false, 0, false},
	}
	for _, c := range cases {
		if got := c.e.Check(c.exists, c.head); got != c.ok {
			t.Errorf("%s.Check(%v, %d) = %v, want %v", c.e, c.exists, c.head, got, c.ok)
		}
	}
	err := domain.WrongRevision("kms-x", domain.ExpectRevision(1), true, 2)
	if !errors.Is(err, domain.ErrWrongExpectedRevision) || !strings.Contains(err.Error(), "revision 2") {
		t.Fatalf("WrongRevision = %v", err)
	}
}

func TestPlaintextRedacts(t *testing.T) {
	p := domain.Plaintext("hunter2-canary")
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%s %v %q %x %#v %+v", p, p, p, p, p, p), p.String()} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, fmt.Sprintf("%x", []byte("hunter2"))) {
			t.Fatalf("plaintext leaked: %s", s)
		}
	}
	j, _ := p.MarshalJSON()
	if strings.Contains(string(j), "hunter2") {
		t.Fatal("plaintext leaked in JSON")
	}
	p.Wipe()
	for _, b := range p {
		if b != 0 {
			t.Fatal("wipe left bytes")
		}
	}
}

func TestCiphertextText(t *testing.T) {
	c := domain.Ciphertext{Key: domain.NewKeyID(id(4)), Version: 3, Sealed: make([]byte, 40)}
	got, err := domain.ParseCiphertext(c.String())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Fatal(diff)
	}
	for _, bad := range []string{"", "kms1:", "kms2:AAAA", "kms1:!!!", "kms1:AAAA"} {
		if _, err := domain.ParseCiphertext(bad); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("ParseCiphertext(%q) = %v, want invalid argument", bad, err)
		}
	}
}

func TestIDs(t *testing.T) {
	k := domain.NewKeyID(id(5))
	if _, err := domain.ParseKeyID(string(k)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "key_", "kms_" + id(5).String(), "key_notaulid"} {
		if _, err := domain.ParseKeyID(bad); !errors.Is(err, domain.ErrInvalidArgument) {
			t.Errorf("ParseKeyID(%q) = %v", bad, err)
		}
	}
}
