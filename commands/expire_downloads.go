package commands

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ExpireDownloads destroys the prepared downloads (PrepareDownload) that
// expired by now and were never fetched: the refs of the hours that ended
// since this process last did (since downloadLookback before now, the
// first time). Cheap when no hour ended since: call it often; a call
// while another of this process is under way returns at once. Several
// nodes doing it at once is fine (destroying a ref is idempotent).
// It returns how many hours' refs it destroyed. Errors: the blob store's,
// joined (the hours that failed are tried again next time).
func (s *DayFiles) ExpireDownloads(ctx context.Context, now time.Time) (int, error) {
	e := &s.expiry
	if !e.mu.TryLock() {
		return 0, nil // a round of this process is under way
	}
	defer e.mu.Unlock()
	last := now.Truncate(downloadBucket) // the end of the last hour over
	from := e.swept
	if from.IsZero() {
		from = last.Add(-downloadLookback)
	}
	n := 0
	var errs []error
	for end := from.Add(downloadBucket); !end.After(last); end = end.Add(downloadBucket) {
		if err := s.Storage.Blobs.DestroyBlobs(ctx, bucketRef(end)); err != nil {
			errs = append(errs, fmt.Errorf("expire prepared downloads: %w", err))
			continue
		}
		n++
	}
	if len(errs) == 0 {
		e.swept = last
	}
	return n, errors.Join(errs...)
}
