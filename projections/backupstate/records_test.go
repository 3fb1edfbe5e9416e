package backupstate

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/domain"
)

// TestBackupRecordRoundTrip fills every field of domain.Backup, so a field
// added there and forgotten in the codec fails here.
func TestBackupRecordRoundTrip(t *testing.T) {
	at := time.Date(2026, 5, 1, 2, 3, 4, 5, time.UTC)
	b := &domain.Backup{
		ID: "bkp_1", Account: "acct_1", Region: "cn-hangzhou", Kind: domain.BackupProvisioned,
		State: domain.StateExpired, BeforeExpiry: domain.StateEnabled, ViewableDays: 30,
		ExpiresAt: at, CreatedAt: at.Add(1), ExpiredAt: at.Add(2), ReleasedAt: at.Add(3), Revision: 9,
		KMSInstance: "kms_1", Alias: "prod", TimeZone: "Asia/Shanghai", EnabledAt: at.Add(4), EnabledDay: "2026-05-01",
		Generation: 2, DestroyedBelow: 1, Checkpoints: 17, NextRevision: 40, LastDigest: [32]byte{1, 2, 3},
		LastFullAt: at.Add(5), LastFullDay: "2026-05-02", LastIncremental: at.Add(6),
		UploadDay: "2026-05-03", Source: "bkp_0", SourceInstance: "kms_0", FileID: "01JFILE",
		ResumedAt: at.Add(7), SourceReleased: domain.SourceRelease{At: at.Add(8), Next: 40, End: 42},
		Failing:     domain.Failure{Work: "incremental", Reason: "no data key", Since: at.Add(9), Attempts: 4},
		LastFullSeq: 16, LastFullNext: 39, Bases: 2, BaseSeq: 12, BaseNext: 30, BaseRecords: 55, LastBaseDigest: [32]byte{4},
	}
	v := reflect.ValueOf(b).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("test fixture leaves %s zero", v.Type().Field(i).Name)
		}
	}
	got, err := decodeBackup(encodeBackup(b))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b, got); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	enc := encodeBackup(b)
	for _, bad := range [][]byte{enc[:len(enc)-1], append(enc, 0), append([]byte{9}, enc[1:]...)} {
		if _, err := decodeBackup(bad); !errors.Is(err, domain.ErrCorrupt) {
			t.Fatalf("decode of a damaged record: %v, want ErrCorrupt", err)
		}
	}
}
