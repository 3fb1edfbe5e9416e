package domain

import (
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// SourceRelease is what a backup instance recorded when the KMS instance it
// is bound to was released: everything up to revision Next of that
// instance's stream is backed up; revisions [Next, End) never were and
// never will be (End is one past the stream's last revision, its
// InstanceReleased). Next == End when nothing was lost.
type SourceRelease struct {
	At   time.Time // when it was recorded; zero: the source is not released
	Next uint64    // first KMS stream revision never backed up
	End  uint64    // one past the released instance's last revision
}

// Recorded reports whether the source's release was recorded.
func (s SourceRelease) Recorded() bool { return !s.At.IsZero() }

// NeverBackedUp is how many events of the released KMS instance the backup
// never held (0 when it holds them all).
func (s SourceRelease) NeverBackedUp() uint64 {
	if s.End < s.Next {
		return 0
	}
	return s.End - s.Next
}

// Failure is the failing state of a backup instance's scheduled work.
type Failure struct {
	Work     string    // the work that fails: full, incremental, expire, release, source-released, schedule
	Reason   string    // why, as last recorded (see CleanReason)
	Since    time.Time // the first failure; zero: not failing
	Attempts uint32    // failed attempts when it was recorded
}

// Active reports whether the work is failing.
func (f Failure) Active() bool { return !f.Since.IsZero() }

// BackupSourceReleased records that the KMS instance the backup instance is
// bound to was released: the backup keeps everything it holds (viewable and
// restorable as before) and copies nothing more of that instance.
type BackupSourceReleased struct {
	Instance InstanceID
	Next     uint64 // first revision of the instance's stream never backed up
	End      uint64 // one past the stream's last revision
}

// BackupFailing records that a backup instance's scheduled work started
// failing, or fails for another reason than the one recorded. It is
// appended once per reason, never once per attempt; the next scheduled
// work of the instance that succeeds clears it.
type BackupFailing struct {
	Work     string
	Reason   string
	Since    time.Time // the first failure of this run of failures
	Attempts uint32
}

// BackupDataDestroyed records that the data (the data key and the blobs)
// of every generation of the backup instance below Generation is
// destroyed. A reset, a release or an upload deleted ends a generation
// first (its event), and its data is destroyed after: this event closes
// that gap, so that an end recorded without its destruction (a crash, a
// reply lost) is found and finished (see DestroyEnded). It changes nothing
// a user sees.
type BackupDataDestroyed struct {
	Generation uint32
}

func (BackupSourceReleased) EventType() string { return TypeSourceReleased }
func (BackupDataDestroyed) EventType() string  { return TypeDataDestroyed }
func (BackupFailing) EventType() string        { return TypeBackupFailing }

// MarkSourceReleased decides recording that in, the KMS instance this
// backup instance is bound to, was released. Whatever the instance backed
// up stays; revisions from its NextRevision on are never copied (an
// enabled instance takes its final checkpoint first, so that nothing is
// lost; an expired one stopped backing up at its expiry, so what happened
// since is not in it). ok is false when there is nothing to record: in is
// not released or not this instance's binding, the instance is neither
// enabled nor expired, or the release is recorded already.
func (b *Backup) MarkSourceReleased(in *Instance) (*BackupSourceReleased, bool) {
	if in == nil || !in.Released || in.ID != b.KMSInstance || b.SourceReleased.Recorded() ||
		(b.State != StateEnabled && b.State != StateExpired) {
		return nil, false
	}
	end := max(in.Revision+1, b.NextRevision)
	return &BackupSourceReleased{Instance: in.ID, Next: b.NextRevision, End: end}, true
}

// DestroyEnded decides recording that the data of every ended generation
// (those below Generation) is destroyed, once the caller destroyed it
// (generations DestroyedBelow to Generation-1 are the ones left). ok is
// false when every ended generation is recorded destroyed already.
func (b *Backup) DestroyEnded() (*BackupDataDestroyed, bool) {
	if b.DestroyedBelow >= b.Generation {
		return nil, false
	}
	return &BackupDataDestroyed{Generation: b.Generation}, true
}

// MaxFailureReason bounds a recorded failure reason, in bytes.
const MaxFailureReason = 1024

// CleanReason makes an error message fit to be recorded and shown as a
// failure reason: valid UTF-8 on one line (control characters become
// spaces), at most MaxFailureReason bytes. Error messages never carry key
// material or secret values, so neither does a reason.
func CleanReason(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) <= MaxFailureReason {
		return s
	}
	cut := MaxFailureReason - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// volatile matches the parts of an error message that change from one try
// to the next without the failure being another: generated IDs (ULIDs) and
// instants.
var volatile = regexp.MustCompile(`[0-9A-HJKMNP-TV-Z]{26}|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})`)

// SameFailure reports whether two reasons tell the same failure: equal
// once the generated IDs and instants in them are set aside.
func SameFailure(a, b string) bool {
	return volatile.ReplaceAllString(a, "*") == volatile.ReplaceAllString(b, "*")
}

// Fail decides recording that the instance's scheduled work failed at now,
// after attempts tries, for reason (CleanReason is applied). It gives an
// event when the instance starts failing or its reason changes (see
// SameFailure), and nothing while the same failure goes on: a retry is
// never an event of its own.
func (b *Backup) Fail(work, reason string, now time.Time, attempts int) (*BackupFailing, bool) {
	reason = CleanReason(reason)
	if b.Failing.Active() && b.Failing.Work == work && SameFailure(b.Failing.Reason, reason) {
		return nil, false
	}
	since := now.UTC()
	if b.Failing.Active() {
		since = b.Failing.Since
	}
	n := uint32(min(max(attempts, 1), 1<<31))
	return &BackupFailing{Work: work, Reason: reason, Since: since, Attempts: n}, true
}
