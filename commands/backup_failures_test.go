package commands_test

import (
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
)

// TestRetryDelay: 5 seconds doubling to 5 minutes, each delay between half
// and all of that, in whole seconds.
func TestRetryDelay(t *testing.T) {
	for _, c := range []struct {
		attempts int
		jitter   float64
		want     time.Duration
	}{
		{attempts: 1, jitter: 0, want: 2 * time.Second},
		{attempts: 1, jitter: 0.999, want: 4 * time.Second},
		{attempts: 2, jitter: 0, want: 5 * time.Second},
		{attempts: 3, jitter: 0.5, want: 15 * time.Second},
		{attempts: 7, jitter: 0, want: 150 * time.Second},
		{attempts: 7, jitter: 0.9999, want: 299 * time.Second},
		{attempts: 8, jitter: 0.5, want: 225 * time.Second},
		{attempts: 1000, jitter: 0, want: 150 * time.Second},
	} {
		if got := commands.RetryDelay(c.attempts, c.jitter); got != c.want {
			t.Errorf("commands.RetryDelay(%d, %v) = %s, want %s", c.attempts, c.jitter, got, c.want)
		}
	}
	for n := 1; n < 40; n++ {
		d := commands.RetryDelay(n, 0.999999)
		if d > commands.RetryMax || d < time.Second || d%time.Second != 0 {
			t.Errorf("commands.RetryDelay(%d) = %s", n, d)
		}
	}
}
