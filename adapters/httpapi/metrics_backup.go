package httpapi

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmsbackup/kmsbackup/domain"
)

var (
	lastFullDesc = prometheus.NewDesc("kmsbackup_backup_last_full_timestamp_seconds",
		"Time covered by the last full backup of an enabled or expired backup instance (Unix seconds; 0: none yet).",
		[]string{"backup", "account"}, nil)
	lastIncrementalDesc = prometheus.NewDesc("kmsbackup_backup_last_incremental_timestamp_seconds",
		"Time covered by the last incremental backup of an enabled or expired backup instance (Unix seconds; 0: none yet since the last reset).",
		[]string{"backup", "account"}, nil)
)

// backupCollector exports the last backup times of every enabled or
// expired backup instance, read from list at each scrape. Alert on
// time() - kmsbackup_backup_last_incremental_timestamp_seconds growing past
// the 5-minute schedule.
type backupCollector struct {
	list   func() ([]*domain.Backup, error)
	logger *slog.Logger
}

var _ prometheus.Collector = (*backupCollector)(nil)

func (c *backupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lastFullDesc
	ch <- lastIncrementalDesc
}

func (c *backupCollector) Collect(ch chan<- prometheus.Metric) {
	if c.list == nil {
		return
	}
	bs, err := c.list()
	if err != nil {
		// /metrics is not authenticated: the details go to the log only.
		c.logger.Error("metrics: read backup instances", "error", err)
		ch <- prometheus.NewInvalidMetric(lastFullDesc, errors.New("cannot read the backup instances; the server log has the details"))
		return
	}
	for _, b := range bs {
		if b.State != domain.StateEnabled && b.State != domain.StateExpired {
			continue
		}
		ch <- prometheus.MustNewConstMetric(lastFullDesc, prometheus.GaugeValue, unixSeconds(b.LastFullAt), string(b.ID), string(b.Account))
		ch <- prometheus.MustNewConstMetric(lastIncrementalDesc, prometheus.GaugeValue, unixSeconds(b.LastIncremental), string(b.ID), string(b.Account))
	}
}

// unixSeconds is t as Unix seconds; the zero time is 0.
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
