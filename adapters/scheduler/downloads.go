package scheduler

import (
	"context"
	"log/slog"
	"time"
)

// DownloadExpirer is what DownloadExpiry drives: the file use cases, which
// remove the prepared downloads that expired unfetched
// (commands.DayFiles).
type DownloadExpirer interface {
	ExpireDownloads(ctx context.Context, now time.Time) (int, error)
}

// DownloadExpiry removes the prepared downloads that expired unfetched,
// at once and then every Interval (default 10 minutes) of the wall clock
// Now (default time.Now), until ctx ends: every node runs one, so that
// downloads prepared by a node that stopped still go. A failure is logged
// and retried at the next tick.
type DownloadExpiry struct {
	Expirer  DownloadExpirer
	Now      func() time.Time
	Interval time.Duration
	Logger   *slog.Logger
}

// Run removes expired downloads until ctx ends; it returns nil then.
func (x *DownloadExpiry) Run(ctx context.Context) error {
	now, every, logger := x.Now, x.Interval, x.Logger
	if now == nil {
		now = time.Now
	}
	if every <= 0 {
		every = 10 * time.Minute
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := x.Expirer.ExpireDownloads(ctx, now()); err != nil && ctx.Err() == nil {
			logger.Warn("removing expired downloads failed; retrying later", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
