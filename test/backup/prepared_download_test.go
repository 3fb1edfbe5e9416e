package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/ids"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// fetch fetches a prepared download through files as c at now.
func fetch(files *commands.DayFiles, c commands.Caller, ticket string, now time.Time) ([]byte, commands.PreparedFile, error) {
	var buf bytes.Buffer
	var got commands.PreparedFile
	err := files.FetchDownload(context.Background(), c, ticket, now, &buf, func(f commands.PreparedFile) error {
		got = f
		return nil
	})
	return buf.Bytes(), got, err
}

// wantGone fails the test unless err says that the download is gone, with
// the hint to prepare it again.
func wantGone(t *testing.T, what string, err error) {
	t.Helper()
	var de *domain.Error
	if !errors.Is(err, domain.ErrNotFound) || !errors.As(err, &de) || !strings.Contains(de.Hint, "prepare the download again") {
		t.Fatalf("%s: %v, want not found with the hint to prepare it again", what, err)
	}
}

// TestPreparedDownloadServedByAnotherNode: a download prepared through one
// node is fetched through another on the same stores, byte for byte, once;
// it opens with its data key (an upload of it is accepted).
func TestPreparedDownloadServedByAnotherNode(t *testing.T) {
	e, id, _, _ := smallDay(t, 40)
	other, _ := secondNode(t, e)
	ctx := context.Background()
	now := e.Clock.Now()
	e.Files.PreparedPartBytes = 1000 // several parts
	p := Must(e.Files.PrepareDownload(ctx, e.Caller, id, "2026-05-01", now))
	if p.Size < 3000 || p.DataKey == "" || !p.Expires.Equal(now.Add(commands.DownloadLifetime)) {
		t.Fatalf("prepared: size %d, key shown %v, expires %s", p.Size, p.DataKey != "", p.Expires)
	}

	stranger := commands.Caller{Account: domain.NewAccountID(ids.Random{Clock: e.Clock}.NewULID())}
	_, _, err := fetch(other.Files, stranger, p.Ticket, now)
	wantGone(t, "another account's fetch", err)

	file, f, err := fetch(other.Files, e.Caller, p.Ticket, now.Add(time.Minute))
	if err != nil {
		t.Fatalf("fetch through the other node: %v", err)
	}
	if f.Name != p.FileName || f.Size != p.Size || int64(len(file)) != p.Size || sha256.Sum256(file) != p.Digest {
		t.Fatalf("fetched %s (%d bytes, announced %d), want %s of %d bytes with the prepared digest", f.Name, len(file), f.Size, p.FileName, p.Size)
	}
	if _, err := e.upload(e.Caller, file, p.DataKey, "from the other node"); err != nil {
		t.Fatalf("the fetched file does not upload with its data key: %v", err)
	}
	_, _, err = fetch(e.Files, e.Caller, p.Ticket, now.Add(time.Minute))
	wantGone(t, "a second fetch", err)
}

// TestPreparedDownloadExpires: a download not fetched in time is refused
// (not found, with a hint) and removed, whichever node sees it expired;
// one nobody asks for goes when its hour is over.
func TestPreparedDownloadExpires(t *testing.T) {
	e, id, _, _ := smallDay(t, 3)
	other, _ := secondNode(t, e)
	ctx := context.Background()
	now := e.Clock.Now()
	late := Must(e.Files.PrepareDownload(ctx, e.Caller, id, "2026-05-01", now))
	_, _, err := fetch(other.Files, e.Caller, late.Ticket, late.Expires)
	wantGone(t, "a fetch at the expiry", err)
	// Removed: even a clock that is behind cannot fetch it any more.
	_, _, err = fetch(e.Files, e.Caller, late.Ticket, now)
	wantGone(t, "a fetch after the expired download was found", err)

	never := Must(e.Files.PrepareDownload(ctx, e.Caller, id, "2026-05-01", now))
	if n, err := other.Files.ExpireDownloads(ctx, now); err != nil || n == 0 {
		t.Fatalf("expire at %s: %d hours, %v; want the hours of the last two days", now, n, err)
	}
	if n, err := e.Files.ExpireDownloads(ctx, never.Expires.Add(-time.Second)); err != nil {
		t.Fatalf("expire before the expiry: %d, %v", n, err)
	}
	if _, _, err := fetch(other.Files, e.Caller, never.Ticket, now); err != nil {
		t.Fatalf("a download not expired yet is gone after an expiry round: %v", err)
	}

	never = Must(e.Files.PrepareDownload(ctx, e.Caller, id, "2026-05-01", now))
	end := never.Expires.Truncate(time.Hour).Add(time.Hour)
	if n, err := other.Files.ExpireDownloads(ctx, end); err != nil || n != 1 {
		t.Fatalf("expire at the end of the expiry's hour: %d hours, %v; want 1", n, err)
	}
	_, _, err = fetch(e.Files, e.Caller, never.Ticket, now)
	wantGone(t, "a fetch of an expired download nobody asked for", err)
	bucket, name, _ := strings.Cut(never.Ticket, "-")
	if _, err := e.Store.GetBlob(ctx, "downloads/"+bucket, name+"/part-0"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("the expired download's first part: %v, want ErrNotFound", err)
	}
}
