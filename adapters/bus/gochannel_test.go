package bus_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/kmsbackup/kmsbackup/adapters/bus"
)

func TestNewLoggerDemotesWatermillInfo(t *testing.T) {
	for _, tt := range []struct {
		level      slog.Level
		wantNoSubs bool
	}{
		{slog.LevelInfo, false},
		{slog.LevelDebug, true},
	} {
		var buf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tt.level}))
		ps := bus.NewGoChannel(logger)
		// Nobody subscribes: Watermill says so, at its info level, for
		// every message.
		if err := bus.NewPublisher(ps).Publish(t.Context(), public(t, newWriter(t).appendKeys(acctA)...)); err != nil {
			t.Fatal(err)
		}
		_ = ps.Close()
		if got := strings.Contains(buf.String(), "level=DEBUG msg=\"No subscribers to send message\""); got != tt.wantNoSubs {
			t.Errorf("handler level %v: per-message log present = %v, want %v:\n%s", tt.level, got, tt.wantNoSubs, buf.String())
		}
	}

	var buf bytes.Buffer
	bus.NewLogger(slog.New(slog.NewTextHandler(&buf, nil))).Error("publish failed", errors.New("boom"), nil)
	if !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "boom") {
		t.Errorf("Watermill errors are not logged as errors: %s", buf.String())
	}
	bus.NewLogger(nil).Error("discarded", errors.New("boom"), nil) // must not panic
}
