package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Prepared downloads wait in the shared blob store, so that the node that
// prepared one need not be the one that serves it: the file (encrypted
// under its own data key, as DownloadDay writes it) in parts of
// PreparedPartBytes, then a record of it (its account, name, size, digest,
// expiry) written last. Downloads that expire in the same hour share a ref
// ("downloads/<end of the hour, Unix seconds>"), which is destroyed at
// once when the hour is over (ExpireDownloads); a ticket names its ref
// and its own random name prefix.
const (
	// DownloadLifetime is how long a prepared download waits to be fetched.
	DownloadLifetime = 15 * time.Minute
	// downloadBucket is the span of expiries that share a ref.
	downloadBucket = time.Hour
	// downloadLookback is how far back a process that starts destroys the
	// refs of expired downloads (those of a longer outage of every node
	// stay).
	downloadLookback = 48 * time.Hour
	// downloadPartBytes is the default size of a part of a prepared
	// download (DayFiles.PreparedPartBytes).
	downloadPartBytes = 4 << 20
	downloadRefPrefix = "downloads/"
)

// PreparedDownload is a download prepared for fetching later, by the
// account that prepared it, through any node of the shared stores.
type PreparedDownload struct {
	Ticket   string // names it in the link that fetches it
	DataKey  string // domain.FormatDataKey: shown to the user once, never kept
	FileName string
	Size     int64
	Digest   [32]byte // SHA-256 of the file
	Expires  time.Time
}

// downloadRecord is the stored record of a prepared download.
type downloadRecord struct {
	Account domain.AccountID `json:"account"`
	Name    string           `json:"name"`
	Size    int64            `json:"size"`
	Parts   int              `json:"parts"`
	Digest  string           `json:"digest"`
	Expires time.Time        `json:"expires"`
}

// downloadTicket is where a prepared download is stored: its ref and the
// prefix of its blobs' names.
type downloadTicket struct{ ref, name string }

func (t downloadTicket) String() string {
	return strings.TrimPrefix(t.ref, downloadRefPrefix) + "-" + t.name
}
func (t downloadTicket) record() string    { return t.name + "/record" }
func (t downloadTicket) claim() string     { return t.name + "/claim" }
func (t downloadTicket) part(i int) string { return t.name + "/part-" + strconv.Itoa(i) }

// bucketRef is the ref of the downloads expiring in the hour that ends at
// end.
func bucketRef(end time.Time) string { return downloadRefPrefix + strconv.FormatInt(end.Unix(), 10) }

// bucketEnd is the end of the hour an expiry falls in (an expiry on the
// hour is the end of its own bucket).
func bucketEnd(expires time.Time) time.Time {
	end := expires.Truncate(downloadBucket)
	if end.Before(expires) {
		end = end.Add(downloadBucket)
	}
	return end
}

// parseTicket reads a ticket; ok is false for anything PrepareDownload
// did not make.
func parseTicket(s string) (downloadTicket, bool) {
	bucket, name, ok := strings.Cut(s, "-")
	if !ok || len(name) != 32 || strings.Trim(name, "0123456789abcdef") != "" {
		return downloadTicket{}, false
	}
	n, err := strconv.ParseInt(bucket, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != bucket {
		return downloadTicket{}, false
	}
	return downloadTicket{ref: bucketRef(time.Unix(n, 0)), name: name}, true
}

// PrepareDownload writes a viewable day's file (DownloadDay, under a fresh
// data key) to the shared blob store, where it waits until now +
// DownloadLifetime to be fetched once, by the caller's account, through
// any node (FetchDownload). Memory stays bounded: the file goes to the
// store a part at a time. A failure leaves nothing fetchable (the parts
// stored are deleted, or go with their hour's ref).
//
// Errors: DownloadDay's; domain.ErrUnavailable from the blob store.
func (s *DayFiles) PrepareDownload(ctx context.Context, c Caller, id domain.BackupID, day string, now time.Time) (PreparedDownload, error) {
	const op = "prepare download"
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return PreparedDownload{}, fmt.Errorf("%s: ticket: %w", op, err)
	}
	p := PreparedDownload{Expires: now.Add(DownloadLifetime).UTC()}
	t := downloadTicket{ref: bucketRef(bucketEnd(p.Expires)), name: hex.EncodeToString(rnd[:])}
	size := s.PreparedPartBytes
	if size <= 0 {
		size = downloadPartBytes
	}
	pw := &partWriter{ctx: ctx, blobs: s.Storage.Blobs, t: t, hash: sha256.New(), max: size}
	h, err := s.DownloadDay(ctx, c, id, day, pw, func(st DownloadStart) error {
		p.DataKey = st.DataKey
		return nil
	})
	if err == nil {
		err = pw.flush()
	}
	if err == nil {
		p.Ticket, p.FileName, p.Size = t.String(), h.FileName(), pw.size
		copy(p.Digest[:], pw.hash.Sum(nil))
		var rec []byte
		rec, err = json.Marshal(downloadRecord{Account: c.Account, Name: p.FileName, Size: p.Size, Parts: pw.parts,
			Digest: hex.EncodeToString(p.Digest[:]), Expires: p.Expires})
		if err == nil {
			err = s.Storage.Blobs.PutBlob(ctx, t.ref, t.record(), rec)
		}
	}
	if err != nil {
		s.removeDownload(context.WithoutCancel(ctx), t, pw.parts)
		return PreparedDownload{}, fmt.Errorf("%s: %w", op, err)
	}
	return p, nil
}

// partWriter stores what is written to it as the parts of a prepared
// download, max bytes at a time.
type partWriter struct {
	ctx   context.Context
	blobs BlobStore
	t     downloadTicket
	max   int
	buf   []byte
	parts int
	size  int64
	hash  hash.Hash
}

func (w *partWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, w.max)
		}
		k := min(len(p), w.max-len(w.buf))
		w.buf, p = append(w.buf, p[:k]...), p[k:]
		if len(w.buf) == w.max {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// flush stores what is buffered as the next part.
func (w *partWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if err := w.blobs.PutBlob(w.ctx, w.t.ref, w.t.part(w.parts), w.buf); err != nil {
		return fmt.Errorf("store a part of the prepared file: %w", err)
	}
	w.parts++
	w.size += int64(len(w.buf))
	w.hash.Write(w.buf)
	w.buf = w.buf[:0]
	return nil
}

// removeDownload deletes a prepared download's blobs, its record first
// (so that it is not fetchable while its parts go); best effort: what is
// left goes with its hour's ref (ExpireDownloads).
func (s *DayFiles) removeDownload(ctx context.Context, t downloadTicket, parts int) {
	names := []string{t.record(), t.claim()}
	for i := range parts {
		names = append(names, t.part(i))
	}
	for _, n := range names {
		_ = s.Storage.Blobs.DeleteBlob(ctx, t.ref, n)
	}
}

// downloadExpiry is how far this process has destroyed the refs of
// expired downloads.
type downloadExpiry struct {
	mu    sync.Mutex
	swept time.Time // the end of the last hour whose ref is destroyed
}
