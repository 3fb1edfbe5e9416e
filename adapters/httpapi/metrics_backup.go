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
	failingDesc = prometheus.NewDesc("kmsbackup_backup_failing",
		"1 while the backup instance's scheduled work fails and is retried (its reason: backup-instance show, /readyz?verbose), else 0.",
		[]string{"backup", "account"}, nil)
	failuresDesc = prometheus.NewDesc("kmsbackup_backup_failures_total",
		"Failed attempts of the backup instance's scheduled work since this process started (every retry that fails counts).",
		[]string{"backup", "account"}, nil)
)

// backupCollector exports, for the backup instances list gives at each
// scrape, the last backup times of the enabled and expired ones, and for
// every one whether its scheduled work fails and how often it failed.
// Alert on kmsbackup_backup_failing == 1, and on time() -
// kmsbackup_backup_last_incremental_timestamp_seconds growing past the
// 5-minute schedule.
type backupCollector struct {
	list     func() ([]*domain.Backup, error)
	failures func() map[domain.BackupID]uint64
	logger   *slog.Logger
}

var _ prometheus.Collector = (*backupCollector)(nil)

func (c *backupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lastFullDesc
	ch <- lastIncrementalDesc
	ch <- failingDesc
	ch <- failuresDesc
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
	var failures map[domain.BackupID]uint64
	if c.failures != nil {
		failures = c.failures()
	}
	for _, b := range bs {
		failing := 0.0
		if b.Failing.Active() {
			failing = 1
		}
		ch <- prometheus.MustNewConstMetric(failingDesc, prometheus.GaugeValue, failing, string(b.ID), string(b.Account))
		ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.CounterValue, float64(failures[b.ID]), string(b.ID), string(b.Account))
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
