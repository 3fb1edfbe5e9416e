package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmsbackup/kmsbackup/commands"
)

var (
	verifyLastRunDesc = prometheus.NewDesc("kmsbackup_verify_last_run_timestamp_seconds",
		"End of the last complete background verification of every backup instance (Unix seconds; 0: none since the server started).",
		nil, nil)
	verifyDurationDesc = prometheus.NewDesc("kmsbackup_verify_last_run_duration_seconds",
		"How long the last complete background verification of every backup instance took.",
		nil, nil)
	verifyBackupsDesc = prometheus.NewDesc("kmsbackup_verify_last_run_backups",
		"Backup instances the last complete background verification verified, with or without findings.",
		nil, nil)
	verifyFindingsDesc = prometheus.NewDesc("kmsbackup_verify_findings",
		"Findings of the last background verification of a backup instance (0: clean; kmsbackup verify lists them).",
		[]string{"backup", "account"}, nil)
	verifyErrorsDesc = prometheus.NewDesc("kmsbackup_verify_errors_total",
		"Background verifications of a backup instance that could not be done because its data could not be read (the server log names the instance).",
		nil, nil)
	verifyWithFindingsDesc = prometheus.NewDesc("kmsbackup_verify_backups_with_findings",
		"Backup instances whose last background verification found damage (which ones: kmsbackup_verify_findings, with the metrics token).",
		nil, nil)
)

// scrubCollector exports the background verification of every backup
// (the scrub), read from status at each scrape, naming no backup
// instance. Alert on kmsbackup_verify_backups_with_findings > 0 (damage),
// on increase(kmsbackup_verify_errors_total[1d]) > 0, and on time() -
// kmsbackup_verify_last_run_timestamp_seconds growing past the interval.
type scrubCollector struct {
	status func() commands.ScrubStatus
}

var _ prometheus.Collector = (*scrubCollector)(nil)

func (c *scrubCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, verifyLastRunDesc, verifyDurationDesc, verifyBackupsDesc, verifyErrorsDesc, verifyWithFindingsDesc)
}

func (c *scrubCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	ch <- prometheus.MustNewConstMetric(verifyLastRunDesc, prometheus.GaugeValue, unixSeconds(st.LastRun.Ended))
	ch <- prometheus.MustNewConstMetric(verifyDurationDesc, prometheus.GaugeValue, st.LastRun.Duration().Seconds())
	ch <- prometheus.MustNewConstMetric(verifyBackupsDesc, prometheus.GaugeValue, float64(st.LastRun.Checked))
	ch <- prometheus.MustNewConstMetric(verifyErrorsDesc, prometheus.CounterValue, float64(st.Errors))
	damaged := 0
	for _, r := range st.Results {
		if r.Err == nil && r.Findings() > 0 {
			damaged++
		}
	}
	ch <- prometheus.MustNewConstMetric(verifyWithFindingsDesc, prometheus.GaugeValue, float64(damaged))
}

// scrubFindings exports the findings of the last background verification
// of each backup instance, labelled by backup and account: served only
// with the metrics token (or the admin token).
type scrubFindings struct {
	status func() commands.ScrubStatus
}

var _ prometheus.Collector = (*scrubFindings)(nil)

func (c *scrubFindings) Describe(ch chan<- *prometheus.Desc) { ch <- verifyFindingsDesc }

func (c *scrubFindings) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.status().Results {
		if r.Err != nil {
			continue // not verified: counted in the errors, no findings to show
		}
		ch <- prometheus.MustNewConstMetric(verifyFindingsDesc, prometheus.GaugeValue, float64(r.Findings()),
			string(r.Backup), string(r.Account))
	}
}
