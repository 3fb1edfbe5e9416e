package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// PreparedFile is what FetchDownload sends: the file's name and size.
type PreparedFile struct {
	Name string
	Size int64
}

// FetchDownload sends a prepared download (PrepareDownload) to w, once:
// through any node of the shared stores, to the account that prepared it,
// until it expires (at now). began receives the file's name and size
// before any byte. The file streams from the blob store a part at a time
// (memory stays bounded), each part checked as it is read, and the whole
// against its digest. Fetched (or failed once begun), it is removed; an
// expired one is removed when a fetch finds it.
//
// Errors: domain.ErrNotFound for a ticket that does not exist (used
// already, expired, never made, or another account's), with a hint;
// domain.ErrCorrupt for a file that does not read back as stored; the
// blob store's, w's and began's errors.
func (s *DayFiles) FetchDownload(ctx context.Context, c Caller, ticket string, now time.Time, w io.Writer, began func(PreparedFile) error) error {
	const op = "download"
	gone := domain.Errorf(domain.ErrNotFound, op, "", "prepare the download again: a new file comes with a new data key",
		"this download link was used already, has expired (after %s), or was never made", DownloadLifetime)
	if err := requireAccount(c, op); err != nil {
		return err
	}
	t, ok := parseTicket(ticket)
	if !ok {
		return gone
	}
	raw, err := s.Storage.Blobs.GetBlob(ctx, t.ref, t.record())
	if errors.Is(err, domain.ErrNotFound) {
		return gone
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	var rec downloadRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return domain.Corruption("%s: the record of a prepared download: %v", op, err)
	}
	if rec.Account != c.Account {
		return gone
	}
	if !now.Before(rec.Expires) {
		s.removeDownload(ctx, t, rec.Parts)
		return gone
	}
	// The first fetch claims it: the claim holds bytes of its own, so
	// that any other fetch, on any node, is refused.
	var claim [16]byte
	if _, err := rand.Read(claim[:]); err != nil {
		return fmt.Errorf("%s: claim: %w", op, err)
	}
	if err := s.Storage.Blobs.PutBlob(ctx, t.ref, t.claim(), claim[:]); errors.Is(err, domain.ErrAlreadyExists) {
		return gone
	} else if err != nil {
		return fmt.Errorf("%s: claim: %w", op, err)
	}
	defer s.removeDownload(context.WithoutCancel(ctx), t, rec.Parts)
	if err := began(PreparedFile{Name: rec.Name, Size: rec.Size}); err != nil {
		return err
	}
	h := sha256.New()
	for i := range rec.Parts {
		if err := s.copyPart(ctx, t, i, io.MultiWriter(w, h)); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	if hex.EncodeToString(h.Sum(nil)) != rec.Digest {
		return domain.Corruption("%s: the prepared file does not match its digest", op)
	}
	return nil
}

// copyPart streams part i of a prepared download to w.
func (s *DayFiles) copyPart(ctx context.Context, t downloadTicket, i int, w io.Writer) error {
	r, err := s.Storage.Blobs.OpenBlob(ctx, t.ref, t.part(i))
	if err != nil {
		return fmt.Errorf("part %d: %w", i, err)
	}
	defer func() { _ = r.Close() }()
	if _, err := io.Copy(w, r); err != nil {
		return fmt.Errorf("part %d: %w", i, err)
	}
	return nil
}
