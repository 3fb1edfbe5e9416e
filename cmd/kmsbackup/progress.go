package main

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progressBar is the command line's progress bar for long operations the
// server reports as they go (a streamed answer: dev clock advance, each
// phase of restore --all). It draws on stderr with
// github.com/schollz/progressbar, and only when stderr is a terminal: a
// nil *progressBar (what newProgressBar returns otherwise) does nothing,
// so callers need not check. Not safe for concurrent use.
type progressBar struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

// newProgressBar starts a bar of total steps on w, with a description
// before it and, when count is set, the steps done after it ("2/5"); nil
// when w is not a terminal.
func newProgressBar(w io.Writer, description string, total int64, count bool) *progressBar {
	if !isTerminal(w) {
		return nil
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(description),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
	}
	if count {
		opts = append(opts, progressbar.OptionShowCount())
	}
	return &progressBar{w: w, bar: progressbar.NewOptions64(max(total, 1), opts...)}
}

// set shows done steps of total (the total may change as the work is
// better known).
func (b *progressBar) set(done, total int64) {
	if b == nil {
		return
	}
	if total > 0 && total != b.bar.GetMax64() {
		b.bar.ChangeMax64(total)
	}
	_ = b.bar.Set64(min(done, b.bar.GetMax64()))
}

// describe changes the text before the bar.
func (b *progressBar) describe(description string) {
	if b == nil {
		return
	}
	b.bar.Describe(description)
}

// finish ends the bar on a line of its own: full when the work is done,
// where it stands otherwise (a phase that ends there, or an error that
// follows it).
func (b *progressBar) finish(full bool) {
	if b == nil {
		return
	}
	if full {
		_ = b.bar.Finish()
	} else {
		_ = b.bar.Exit()
	}
	fmt.Fprintln(b.w)
}
