package commands_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// TestRestoreInputParse: a request's strings become the typed request, or
// an invalid-argument error naming what is wrong.
func TestRestoreInputParse(t *testing.T) {
	const (
		bkp = "bkp_01J00000000000000000000000"
		kms = "kms_01J00000000000000000000000"
		k1  = "key_01J00000000000000000000001"
		k2  = "key_01J00000000000000000000002"
	)
	got, err := commands.RestoreInput{From: bkp, Day: "2026-05-01", At: "2026-05-01T18:07:00+08:00", Keys: []string{k2, k1}, Secrets: []string{"db"},
		ToInstance: kms, ToRegion: "cn-hangzhou"}.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if got.From != bkp || got.Target != kms || got.Region != "cn-hangzhou" || got.Point.Day != "2026-05-01" ||
		!got.Point.At.Equal(time.Date(2026, 5, 1, 10, 7, 0, 0, time.UTC)) {
		t.Fatalf("parsed %+v", got)
	}
	if diff := cmp.Diff([]domain.KeyID{k1, k2}, got.Selection.Keys()); diff != "" || got.Selection.All() {
		t.Fatalf("selection (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		in   commands.RestoreInput
		want string
	}{
		{commands.RestoreInput{From: "bkp_1", ToInstance: kms, All: true}, `backup instance ID "bkp_1"`},
		{commands.RestoreInput{From: bkp, ToInstance: "", All: true}, `KMS instance ID ""`},
		{commands.RestoreInput{From: bkp, ToInstance: kms, Day: "2026-02-30", All: true}, "day must be a date"},
		{commands.RestoreInput{From: bkp, ToInstance: kms, At: "10:05", All: true}, "at must be an RFC 3339 time"},
		{commands.RestoreInput{From: bkp, ToInstance: kms}, "name what to restore"},
		{commands.RestoreInput{From: bkp, ToInstance: kms, All: true, ToRegion: "Mars"}, `region "Mars"`},
	} {
		if _, err := c.in.Parse(); !errors.Is(err, domain.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want invalid argument with %q", c.in, err, c.want)
		}
	}
}
