// Package scheduler drives the engine's background work in time: a Runner
// follows the real clock for the backup schedule (catching up once after
// downtime, then sleeping until the next full, incremental, expiry or
// release, or the retry of a failing backup instance's work), a Manual
// driver moves a manual clock forward for --dev, doing every piece of work
// that falls due on the way, in order, and a Scrub verifies every backup
// every interval (or when asked), paced by a ByteRate, and remembers the
// results for metrics; a DownloadExpiry removes the prepared downloads
// that expired unfetched. The work itself, and what happens when one backup
// instance's work fails (recorded, retried with backoff, never holding up
// the others), is the commands package's; this package only decides when,
// and never holds a lock of the work it drives.
package scheduler
