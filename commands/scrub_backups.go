package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
)

// scrubPage is how many backup instances a scrub lists at a time.
const scrubPage = 100

// ScrubResult is one backup instance's verification by a scrub: a report
// (with or without findings), or the error that kept it from being
// verified (its data could not be read), which is not a finding.
type ScrubResult struct {
	Backup     domain.BackupID
	Account    domain.AccountID
	Generation uint32
	At         time.Time     // when its verification ended
	Report     *VerifyReport // nil when Err is set
	Err        error
}

// Findings is how many findings the verification reported (0 when clean
// or when it could not verify).
func (r ScrubResult) Findings() int {
	if r.Report == nil {
		return 0
	}
	return len(r.Report.Findings)
}

// Kinds lists the kinds of the findings, each once, in the order found.
func (r ScrubResult) Kinds() []string {
	if r.Report == nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, f := range r.Report.Findings {
		if !seen[f.Kind] {
			seen[f.Kind] = true
			out = append(out, f.Kind)
		}
	}
	return out
}

// ScrubRun is what one complete scrub did.
type ScrubRun struct {
	Started, Ended time.Time
	Checked        int // backup instances verified, with or without findings
	WithFindings   int // of those, the ones with findings
	Errors         int // backup instances that could not be verified
	// Skipped counts instances reset, released or deleted while they were
	// verified: their data is gone, there is nothing to report.
	Skipped int
}

// Duration is how long the run took.
func (r ScrubRun) Duration() time.Duration { return r.Ended.Sub(r.Started) }

// ScrubStatus is what a scrub runner knows: its last complete run, the
// last result of every backup instance it verified, and how many
// verifications could not be done since it started.
type ScrubStatus struct {
	LastRun ScrubRun // zero before the first complete run
	Results []ScrubResult
	Errors  uint64
}

// ScrubOptions tune a scrub.
type ScrubOptions struct {
	// Throttle paces the reads; nil reads as fast as it can.
	Throttle Throttle
	// Result, if set, is called with each instance's result as soon as it
	// is known (not for skipped ones), from the scrub's goroutine.
	Result func(ScrubResult)
}

// ScrubBackups verifies, one at a time, every backup instance of every
// account that holds data (enabled, expired and uploads: see
// domain.Backup.HoldsData), with the checks of VerifyBackup: the chain of
// checkpoints, every checksum, every key version opens, the read model
// agrees. It acts for the engine, not for an account: it is reachable
// only from the server's own scheduler, never from a caller's request,
// and what it reports leaves the server as counts per instance (metrics),
// the instance's own last result (to its account), and log lines.
//
// It holds no lock a checkpoint needs: verification reads the log, the
// blob store and the read models, and a checkpoint appended meanwhile is
// checked on the next run. An instance reset, released or deleted while it
// is verified is skipped (its data is gone). The run is paced by
// o.Throttle.
//
// It returns the run once every instance has been tried. Errors: ctx's,
// or listing the instances failed; the run is then incomplete. An instance
// that cannot be verified is counted in Errors and reported through
// o.Result, not returned.
func (s *Checkpoints) ScrubBackups(ctx context.Context, o ScrubOptions) (ScrubRun, error) {
	run := ScrubRun{Started: s.Clock.Now().UTC()}
	for cursor := domain.BackupID(""); ; {
		page, err := backupstate.WithData(s.State, cursor, scrubPage)
		if err != nil {
			return run, fmt.Errorf("scrub backups: list backup instances: %w", err)
		}
		for _, b := range page.Items {
			res, ok, err := s.scrubOne(ctx, b.ID, o.Throttle)
			if err != nil {
				return run, fmt.Errorf("scrub backups: %w", err)
			}
			switch {
			case !ok:
				run.Skipped++
				continue
			case res.Err != nil:
				run.Errors++
			default:
				run.Checked++
				if res.Findings() > 0 {
					run.WithFindings++
				}
			}
			if o.Result != nil {
				o.Result(res)
			}
		}
		if page.Next == "" {
			break
		}
		cursor = domain.BackupID(page.Next)
	}
	run.Ended = s.Clock.Now().UTC()
	return run, nil
}

// scrubOne verifies one instance as it stands now. ok is false when the
// instance no longer holds the data it held (reset, released, deleted),
// before or during the verification. Errors: ctx's only.
func (s *Checkpoints) scrubOne(ctx context.Context, id domain.BackupID, th Throttle) (ScrubResult, bool, error) {
	b, err := backupstate.Get(s.State, id)
	if errors.Is(err, domain.ErrNotFound) || (err == nil && !b.HoldsData()) {
		return ScrubResult{}, false, nil
	}
	if err != nil {
		return ScrubResult{Backup: id, At: s.Clock.Now().UTC(), Err: err}, true, nil
	}
	res := ScrubResult{Backup: b.ID, Account: b.Account, Generation: b.Generation}
	res.Report, res.Err = s.verify(ctx, b, th)
	if err := ctx.Err(); err != nil {
		return ScrubResult{}, false, err
	}
	if res.Err != nil {
		res.Report = nil
	}
	if s.destroyedSince(ctx, b) {
		return ScrubResult{}, false, nil // the findings would be the destruction's
	}
	res.At = s.Clock.Now().UTC()
	return res, true, nil
}

// destroyedSince reports whether b's generation has been destroyed (reset,
// released, deleted) since b was read. A reset or release appends its
// event before it destroys the data, so the backupstate read model shows
// it once it has caught up with the log, whichever engine did it; a read
// model that cannot catch up (it stopped on a corrupt event) is judged by
// what it shows.
func (s *Checkpoints) destroyedSince(ctx context.Context, b *domain.Backup) bool {
	if head, err := s.Log.Head(ctx); err == nil && s.StateApplied != nil {
		_ = s.StateApplied.WaitFor(ctx, head)
	}
	now, err := backupstate.Get(s.State, b.ID)
	return err == nil && (now.Generation != b.Generation || !now.HoldsData())
}
