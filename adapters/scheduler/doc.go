// Package scheduler drives the backup schedule in time: a Runner follows the
// real clock (catching up once after downtime, then sleeping until the next
// full, incremental, expiry or release), and a Manual driver moves a manual
// clock forward for --dev, doing every piece of work that falls due on the
// way, in order (retries of a failing backup instance's work included). The
// work itself, and what happens when one backup instance's work fails
// (recorded, retried with backoff, never holding up the others), is the
// commands package's; this package only decides when.
package scheduler
