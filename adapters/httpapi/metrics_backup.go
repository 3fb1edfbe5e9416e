package httpapi

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Per backup instance, labelled by backup and account: served only with
// the metrics token (or the admin token).
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

// Over every backup instance, naming none: served to anyone.
var (
	backupsDesc = prometheus.NewDesc("kmsbackup_backups",
		"Backup instances with scheduled work (enabled, expired, and provisioned ones that will expire), of every account, by state.",
		[]string{"state"}, nil)
	backupsFailingDesc = prometheus.NewDesc("kmsbackup_backups_failing",
		"Backup instances whose scheduled work fails and is retried (which ones: /metrics with the metrics token, /readyz?verbose).",
		nil, nil)
	backupsFailuresDesc = prometheus.NewDesc("kmsbackup_backups_failures_total",
		"Failed attempts of the scheduled work of every backup instance since this process started.",
		nil, nil)
	oldestBackupDesc = prometheus.NewDesc("kmsbackup_backups_oldest_last_backup_timestamp_seconds",
		"The oldest, among enabled backup instances that still back up a KMS instance, of the time covered by their last backup, full or incremental (Unix seconds; absent when there is none). Alert on time() minus this above 10 minutes.",
		nil, nil)
)

// backupStates are the states kmsbackup_backups always reports.
var backupStates = []domain.BackupState{domain.StateEnabled, domain.StateExpired, domain.StateNotEnabled}

// backupSource is what both backup collectors read at each scrape.
type backupSource struct {
	list     func() ([]*domain.Backup, error)
	failures func() map[domain.BackupID]uint64
	logger   *slog.Logger
}

// read lists the backup instances; on an error it sends an invalid metric
// (without the error's details: the log has them) and returns false.
func (s *backupSource) read(ch chan<- prometheus.Metric, desc *prometheus.Desc) ([]*domain.Backup, map[domain.BackupID]uint64, bool) {
	if s.list == nil {
		return nil, nil, false
	}
	bs, err := s.list()
	if err != nil {
		s.logger.Error("metrics: read backup instances", "error", err)
		ch <- prometheus.NewInvalidMetric(desc, errors.New("cannot read the backup instances; the server log has the details"))
		return nil, nil, false
	}
	var failures map[domain.BackupID]uint64
	if s.failures != nil {
		failures = s.failures()
	}
	return bs, failures, true
}

// backupCollector exports, for the backup instances list gives at each
// scrape, the last backup times of the enabled and expired ones, and for
// every one whether its scheduled work fails and how often it failed.
// Alert on kmsbackup_backup_failing == 1, and on time() -
// kmsbackup_backup_last_incremental_timestamp_seconds growing past the
// 5-minute schedule.
type backupCollector struct{ backupSource }

var _ prometheus.Collector = (*backupCollector)(nil)

func (c *backupCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, lastFullDesc, lastIncrementalDesc, failingDesc, failuresDesc)
}

func (c *backupCollector) Collect(ch chan<- prometheus.Metric) {
	bs, failures, ok := c.read(ch, lastFullDesc)
	if !ok {
		return
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

// backupSummary exports the same backup instances in aggregate, naming no
// account and no instance: how many by state, how many fail, their
// failures, and the oldest last backup among those that back up.
type backupSummary struct{ backupSource }

var _ prometheus.Collector = (*backupSummary)(nil)

func (c *backupSummary) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, backupsDesc, backupsFailingDesc, backupsFailuresDesc, oldestBackupDesc)
}

func (c *backupSummary) Collect(ch chan<- prometheus.Metric) {
	bs, failures, ok := c.read(ch, backupsDesc)
	if !ok {
		return
	}
	byState := map[domain.BackupState]int{}
	failing := 0
	var oldest time.Time
	for _, b := range bs {
		byState[b.State]++
		if b.Failing.Active() {
			failing++
		}
		if b.State != domain.StateEnabled || b.SourceReleased.Recorded() {
			continue // it takes no incremental backups
		}
		last := b.LastIncremental
		if b.LastFullAt.After(last) {
			last = b.LastFullAt
		}
		if !last.IsZero() && (oldest.IsZero() || last.Before(oldest)) {
			oldest = last
		}
	}
	for _, st := range backupStates {
		ch <- prometheus.MustNewConstMetric(backupsDesc, prometheus.GaugeValue, float64(byState[st]), string(st))
		delete(byState, st)
	}
	for st, n := range byState {
		ch <- prometheus.MustNewConstMetric(backupsDesc, prometheus.GaugeValue, float64(n), string(st))
	}
	var total uint64
	for _, n := range failures {
		total += n
	}
	ch <- prometheus.MustNewConstMetric(backupsFailingDesc, prometheus.GaugeValue, float64(failing))
	ch <- prometheus.MustNewConstMetric(backupsFailuresDesc, prometheus.CounterValue, float64(total))
	if !oldest.IsZero() {
		ch <- prometheus.MustNewConstMetric(oldestBackupDesc, prometheus.GaugeValue, unixSeconds(oldest))
	}
}

// describe sends every desc, for a collector's Describe.
func describe(ch chan<- *prometheus.Desc, descs ...*prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

// unixSeconds is t as Unix seconds; the zero time is 0.
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
