// Package scheduler drives the backup schedule in time: a Runner follows the
// real clock (catching up once after downtime, then sleeping until the next
// full, incremental, expiry or release), and a Manual driver moves a manual
// clock forward for --dev, doing every piece of work that falls due on the
// way, in order. The work itself is the commands package's; this package
// only decides when.
package scheduler
