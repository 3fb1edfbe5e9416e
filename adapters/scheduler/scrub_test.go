package scheduler

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// scripted is a Scrubber that reports given results, then fails or not.
type scripted struct {
	results []commands.ScrubResult
	err     error
}

func (s *scripted) ScrubBackups(_ context.Context, o commands.ScrubOptions) (commands.ScrubRun, error) {
	run := commands.ScrubRun{Started: time.Unix(100, 0), Ended: time.Unix(160, 0)}
	for _, r := range s.results {
		o.Result(r)
		if r.Err != nil {
			run.Errors++
		} else {
			run.Checked++
		}
	}
	return run, s.err
}

func TestScrubKeepsResults(t *testing.T) {
	clean := commands.ScrubResult{Backup: "bkp_1", Report: &commands.VerifyReport{}}
	gone := commands.ScrubResult{Backup: "bkp_2", Report: &commands.VerifyReport{}}
	failed := commands.ScrubResult{Backup: "bkp_3", Err: domain.ErrUnavailable}
	sc := &scripted{results: []commands.ScrubResult{clean, gone, failed}}
	s := &Scrub{Scrubber: sc}
	if _, err := s.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); len(st.Results) != 3 || st.Errors != 1 || st.LastRun.Checked != 2 {
		t.Fatalf("after the first run: %+v", st)
	}

	// The next run no longer sees bkp_2 and fails before its end: the
	// results it gave are kept, the last complete run stays the first.
	sc.results, sc.err = []commands.ScrubResult{clean, failed}, errors.New("list backup instances: disk gone")
	if _, err := s.RunOnce(t.Context()); err == nil {
		t.Fatal("a failed run returns no error")
	}
	if err := s.Healthy(); err == nil {
		t.Fatal("Healthy after a failed run")
	}
	if st := s.Status(); len(st.Results) != 3 || st.Errors != 2 || st.LastRun.Checked != 2 {
		t.Fatalf("after a failed run: %+v", st)
	}

	// A complete run forgets the instances it no longer saw.
	sc.err = nil
	if _, err := s.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Result("bkp_2"); ok {
		t.Fatal("the result of an instance gone since is kept")
	}
	if err := s.Healthy(); err != nil {
		t.Fatalf("Healthy after a complete run: %v", err)
	}
}

func TestByteRate(t *testing.T) {
	if NewByteRate(0) != nil {
		t.Fatal("a rate of 0 paces")
	}
	var none *ByteRate
	if err := none.WaitN(t.Context(), 1<<30); err != nil {
		t.Fatalf("nil ByteRate: %v", err)
	}
	r := NewByteRate(1 << 30) // a burst of 100 MiB
	if err := r.WaitN(t.Context(), 300<<20); err != nil {
		t.Fatalf("a wait beyond the burst: %v", err)
	}
	slow := NewByteRate(1 << 10)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := slow.WaitN(ctx, 1<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitN after cancel: %v", err)
	}
}
