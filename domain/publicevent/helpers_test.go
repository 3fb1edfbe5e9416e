package publicevent_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/kmsbackup/kmsbackup/domain"
)

// base is the fixed time of the sample events; its nanoseconds show that
// occurred_at keeps all nine digits.
var base = time.Date(2026, 3, 1, 9, 30, 0, 42, time.UTC)

// mustULID returns a deterministic ULID: the timestamp of base+i seconds and
// entropy bytes equal to i.
func mustULID(tb testing.TB, i int) ulid.ULID {
	tb.Helper()
	u, err := ulid.New(ulid.Timestamp(base.Add(time.Duration(i)*time.Second)), bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 10)))
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// pattern returns n bytes start, start+1, ...: recognisable stand-ins for
// sealed bytes in golden files.
func pattern(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// sample is one event of every type, as a writer would build it, with the
// position and revision the log would give it.
type sample struct {
	account  domain.AccountID
	instance domain.InstanceID
	key      domain.KeyID
	backup   domain.BackupID
	target   domain.InstanceID // where the key and secret are restored
	upload   domain.BackupID   // a day of backup downloaded and uploaded again
}

// digest is a recognisable stand-in for a SHA-256 digest.
func digest(start byte) [32]byte {
	var d [32]byte
	copy(d[:], pattern(32, start))
	return d
}

func newSample(tb testing.TB) sample {
	tb.Helper()
	return sample{
		account:  domain.NewAccountID(mustULID(tb, 1)),
		instance: domain.NewInstanceID(mustULID(tb, 2)),
		key:      domain.NewKeyID(mustULID(tb, 3)),
		backup:   domain.NewBackupID(mustULID(tb, 4)),
		target:   domain.NewInstanceID(mustULID(tb, 5)),
		upload:   domain.NewBackupID(mustULID(tb, 6)),
	}
}

// events builds one event of every type; keyMaterial and secretValue are
// the sealed bytes the key and secret events carry (the restored key and
// secret carry them again as their versions 1 and 2).
func (s sample) events(tb testing.TB, keyMaterial, rotatedMaterial, secretValue, rotatedValue []byte, tokenHash [32]byte) []domain.Event {
	tb.Helper()
	kms := domain.KMSStream(s.instance)
	bkp := domain.BackupStream(s.backup)
	target := domain.KMSStream(s.target)
	audit := domain.AuditStream(s.account)
	upl := domain.BackupStream(s.upload)
	from := domain.RestoredFrom{Backup: s.backup, Day: "2026-03-01", Seq: 1, By: string(s.account)}
	v1, v2 := base.Add(2*time.Minute).Truncate(time.Second), base.Add(3*time.Minute).Truncate(time.Second)
	type spec struct {
		stream   string
		region   string
		instance domain.InstanceID
		data     domain.EventData
	}
	specs := []spec{
		{domain.AccountStream(s.account), "", "", &domain.AccountCreated{Account: s.account, Name: "acme", TokenHash: tokenHash}},
		{kms, "cn-hangzhou", s.instance, &domain.InstanceCreated{Instance: s.instance, Region: "cn-hangzhou", KeyQuota: 1000, SecretQuota: 500}},
		{kms, "cn-hangzhou", s.instance, &domain.KeyCreated{Key: s.key, Description: "orders database", Spec: domain.KeySpecAES256, Material: keyMaterial}},
		{kms, "cn-hangzhou", s.instance, &domain.KeyRotated{Key: s.key, Version: 2, Material: rotatedMaterial}},
		{kms, "cn-hangzhou", s.instance, &domain.SecretCreated{Name: "db-password", Key: s.key, Value: secretValue}},
		{kms, "cn-hangzhou", s.instance, &domain.SecretRotated{Name: "db-password", Version: 2, Key: s.key, Value: rotatedValue}},
		{kms, "cn-hangzhou", s.instance, &domain.SecretDeleted{Name: "db-password"}},
		{kms, "cn-hangzhou", s.instance, &domain.KeyDeleted{Key: s.key}},
		{kms, "cn-hangzhou", s.instance, &domain.InstanceReleased{Instance: s.instance}},
		{bkp, "cn-hangzhou", "", &domain.BackupCreated{Backup: s.backup, Kind: domain.BackupProvisioned, Region: "cn-hangzhou",
			ViewableDays: 30, ExpiresAt: base.AddDate(1, 0, 0).Truncate(time.Second)}},
		{bkp, "cn-hangzhou", s.instance, &domain.BackupEnabled{KMSInstance: s.instance, Alias: "orders", TimeZone: "Asia/Shanghai"}},
		{bkp, "cn-hangzhou", s.instance, &domain.BackupCheckpointed{Generation: 0, Seq: 1, Full: true,
			At: base.Truncate(time.Second), Day: "2026-03-01", From: 0, Next: 3, Slice: "slice-1", SliceDigest: digest(0x20),
			Digest: digest(0x40)}},
		{bkp, "cn-hangzhou", s.instance, &domain.BackupExtended{ViewableDays: 60}},
		{bkp, "cn-hangzhou", s.instance, &domain.BackupExpired{}},
		{bkp, "cn-hangzhou", s.instance, &domain.BackupRenewed{ExpiresAt: base.AddDate(2, 0, 0).Truncate(time.Second)}},
		{bkp, "cn-hangzhou", "", &domain.BackupReset{}},
		{bkp, "cn-hangzhou", "", &domain.BackupReleased{}},
		{target, "cn-hangzhou", s.target, &domain.KeyRestored{Key: s.key, Description: "orders database", Spec: domain.KeySpecAES256,
			Versions: []domain.RestoredKeyVersion{{Version: 1, Material: keyMaterial, CreatedAt: v1}, {Version: 2, Material: rotatedMaterial, CreatedAt: v2}},
			From:     from}},
		{target, "cn-hangzhou", s.target, &domain.SecretRestored{Name: "db-password", Key: s.key,
			Versions: []domain.RestoredSecretVersion{{Version: 1, Key: s.key, Value: secretValue, CreatedAt: v1}, {Version: 2, Key: s.key, Value: rotatedValue, CreatedAt: v2}},
			From:     from}},
		{audit, "", "", &domain.Audited{Action: "restore-key", Actor: string(s.account), Backup: s.backup, Day: "2026-03-01",
			Target: string(s.target), Item: string(s.key)}},
		{upl, "cn-hangzhou", "", &domain.BackupUploaded{Backup: s.upload, Name: "orders on 1 March", Region: "cn-hangzhou",
			Day: "2026-03-01", TimeZone: "Asia/Shanghai", Source: s.backup, KMSInstance: s.instance,
			FileID: "01KJMBQNZ00G2081040G208104", Keys: 1, Secrets: 1}},
		{upl, "cn-hangzhou", "", &domain.BackupUploadDeleted{}},
		{bkp, "cn-hangzhou", s.instance, &domain.BackupSourceReleased{Instance: s.instance, Next: 3, End: 5}},
		{bkp, "cn-hangzhou", s.instance, &domain.BackupFailing{Work: "incremental",
			Reason: "take backup: store slice: backup blob store unavailable", Since: base.Add(23 * time.Minute).Truncate(time.Second), Attempts: 1}},
		{bkp, "cn-hangzhou", s.instance, &domain.BackupBaseStored{Generation: 1, Seq: 289, At: base.Add(15 * time.Hour).Truncate(time.Hour),
			Next: 1204, Items: 812, Versions: 1650, Parts: []domain.BasePart{
				{Name: "base-289-x-0", Digest: digest(0x60), Size: 16779431, Items: 700, Versions: 1420},
				{Name: "base-289-x-1", Digest: digest(0x80), Size: 2741260, Items: 112, Versions: 230}},
			StateDigest: digest(0xa0), CheckpointDigest: digest(0xc0), PrevDigest: digest(0xe0), Digest: digest(0x00)}},
	}
	revs := map[string]uint64{}
	out := make([]domain.Event, len(specs))
	for i, sp := range specs {
		out[i] = domain.Event{
			ID:         mustULID(tb, 10+i),
			Stream:     sp.stream,
			Revision:   revs[sp.stream],
			Position:   uint64(100 + i),
			Type:       sp.data.EventType(),
			Schema:     domain.SchemaVersion,
			OccurredAt: base.Add(time.Duration(i) * time.Minute),
			Account:    s.account,
			Region:     sp.region,
			Instance:   sp.instance,
			Data:       domain.EncodeData(sp.data),
		}
		revs[sp.stream]++
	}
	return out
}

// goldenEvents is the fixed set the golden files are made of.
func goldenEvents(tb testing.TB) []domain.Event {
	tb.Helper()
	var hash [32]byte
	copy(hash[:], pattern(32, 0xE0))
	return newSample(tb).events(tb, pattern(60, 0x10), pattern(60, 0x50), pattern(48, 0x90), pattern(48, 0xC0), hash)
}
