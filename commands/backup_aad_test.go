package commands

import (
	"bytes"
	"testing"

	"github.com/kmsbackup/kmsbackup/domain"
)

// The associated data of a backup's key material is what every backup
// already sealed was sealed with: AssociatedData of the stream
// "backup:<dataRef>". AppendBackupAAD builds the same into a buffer reused
// from version to version.
func TestBackupAADIsTheSealedFormat(t *testing.T) {
	a := domain.AccountID("acct_01")
	var ids [3]domain.EventID
	for i := range ids {
		ids[i][15] = byte(i + 1)
	}
	var buf []byte
	for i, id := range ids {
		ref := "bkp_01/" + string(rune('0'+i))
		want := domain.AssociatedData(a, "backup:"+ref, id)
		if got := BackupAAD(a, ref, id); !bytes.Equal(got, want) {
			t.Fatalf("BackupAAD(%s) = %q, want %q", ref, got, want)
		}
		buf = AppendBackupAAD(buf[:0], a, ref, id)
		if !bytes.Equal(buf, want) {
			t.Fatalf("AppendBackupAAD into a reused buffer (%s) = %q, want %q", ref, buf, want)
		}
	}
	if got := domain.AppendAssociatedData([]byte("x"), a, "", "kms/in", ids[0]); !bytes.Equal(got, append([]byte("x"), domain.AssociatedData(a, "kms/in", ids[0])...)) {
		t.Fatalf("AppendAssociatedData does not append to dst: %q", got)
	}
}
