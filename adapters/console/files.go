package console

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

type downloadView struct {
	Backup  *domain.Backup
	Days    []domain.Day
	Day     string
	DataKey string
	Ticket  string
	File    string
	Err     *problem
}

func (c *Console) downloadForm(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.showDownload(w, r, a, http.StatusOK, downloadView{Day: r.URL.Query().Get("day")}, nil)
}

func (c *Console) showDownload(w http.ResponseWriter, r *http.Request, a commands.Caller, status int, v downloadView, err error) {
	b, days, berr := c.backupDays(r, a)
	if berr != nil {
		c.renderError(w, r, berr)
		return
	}
	v.Backup, v.Days, v.Err = b, days, c.describe(r, err)
	c.render(w, r, status, "download", "Download from "+string(b.ID), v)
}

// download prepares the day's file, encrypted under a fresh data key, in
// the shared blob store, and shows the key once with a link that fetches
// the file once, through any node, until it expires.
func (c *Console) download(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	id := domain.BackupID(r.PathValue("id"))
	v := downloadView{Day: r.PostFormValue("day")}
	fail := func(err error) { c.showDownload(w, r, a, errorStatus(err), v, err) }
	if v.Day == "" {
		fail(domain.Invalid("download", "choose a day"))
		return
	}
	c.expireDownloads(r)
	p, err := c.Files.PrepareDownload(r.Context(), a, id, v.Day, c.Now())
	if err != nil {
		fail(err)
		return
	}
	v.File, v.Ticket, v.DataKey = p.FileName, p.Ticket, p.DataKey
	c.showDownload(w, r, a, http.StatusOK, v, nil)
}

// fetchDownload sends a prepared file once, streamed from the blob store,
// then removes it.
func (c *Console) fetchDownload(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	c.expireDownloads(r)
	started := false
	err := c.Files.FetchDownload(r.Context(), a, r.PathValue("ticket"), c.Now(), w, func(f commands.PreparedFile) error {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, f.Name))
		h.Set("Content-Length", fmt.Sprint(f.Size))
		started = true
		return nil
	})
	switch {
	case err != nil && started:
		// The status is sent: break the response, so that the browser sees
		// a failed download rather than a short file.
		c.Logger.Warn("console download interrupted", "error", err)
		panic(http.ErrAbortHandler)
	case err != nil:
		c.renderError(w, r, err)
	}
}

// expireDownloads removes the prepared downloads that expired unfetched,
// whichever node prepared them (cheap unless an hour ended since the last
// time). A failure is logged: the next request tries again.
func (c *Console) expireDownloads(r *http.Request) {
	if _, err := c.Files.ExpireDownloads(r.Context(), c.Now()); err != nil {
		c.Logger.Warn("removing expired downloads failed; retrying later", "error", err)
	}
}

type uploadView struct {
	Name string
	Err  *problem
}

func (c *Console) uploadForm(w http.ResponseWriter, r *http.Request, _ commands.Caller) {
	c.render(w, r, http.StatusOK, "upload", "Upload a backup file", uploadView{})
}

// maxField bounds the text fields of the upload form.
const maxField = 4096

// upload reads the multipart form as a stream: the file goes to the spool
// (it is still encrypted), the name and key stay in memory; then the file
// is checked whole and stored. A failure stores nothing and shows the form
// again, without the key.
func (c *Console) upload(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	const op = "upload"
	var v uploadView
	fail := func(err error) {
		v.Err = c.describe(r, err)
		c.render(w, r, errorStatus(err), "upload", "Upload a backup file", v)
	}
	r.Body = http.MaxBytesReader(w, r.Body, c.MaxUpload+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		fail(domain.Invalid(op, "send the form as multipart/form-data with the file, its data key and a name"))
		return
	}
	var key string
	var spool *os.File
	defer func() {
		if spool != nil {
			_ = spool.Close()
			_ = os.Remove(spool.Name())
		}
	}()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fail(readError(op, err, c.MaxUpload))
			return
		}
		switch part.FormName() {
		case "name", "key":
			b, err := io.ReadAll(io.LimitReader(part, maxField+1))
			if err != nil || len(b) > maxField {
				fail(domain.Invalid(op, "the %s field is too long", part.FormName()))
				return
			}
			if part.FormName() == "name" {
				v.Name = strings.TrimSpace(string(b))
			} else {
				key = strings.TrimSpace(string(b))
			}
		case "file":
			if spool != nil {
				fail(domain.Invalid(op, "send one file"))
				return
			}
			spool, err = os.CreateTemp(c.SpoolDir, "upload-*.part")
			if err != nil {
				fail(fmt.Errorf("%s: spool: %w", op, err))
				return
			}
			n, err := io.Copy(spool, io.LimitReader(part, c.MaxUpload+1))
			if err != nil {
				fail(readError(op, err, c.MaxUpload))
				return
			}
			if n > c.MaxUpload {
				fail(domain.Invalid(op, "the file is larger than the server's limit of %d bytes", c.MaxUpload))
				return
			}
			if n == 0 {
				_ = spool.Close()
				_ = os.Remove(spool.Name())
				spool = nil
			}
		}
		_ = part.Close()
	}
	switch {
	case spool == nil:
		fail(domain.Invalid(op, "choose the backup data file to upload (.kmsbk)"))
		return
	case key == "":
		fail(domain.Invalid(op, "enter the data key that was shown when the file was downloaded (kbk1_...)"))
		return
	case v.Name == "":
		fail(domain.Invalid(op, "enter a name for the upload"))
		return
	}
	open := func() (io.Reader, error) {
		if _, err := spool.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("%s: rewind: %w", op, err)
		}
		return bufio.NewReaderSize(spool, 1<<20), nil
	}
	b, err := c.Files.UploadBackupFile(r.Context(), a, v.Name, key, open)
	if err != nil {
		fail(err)
		return
	}
	redirect(w, r, done("uploaded", b.ID))
}

// readError explains a failed read of the upload form.
func readError(op string, err error, limit int64) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return domain.Invalid(op, "the file is larger than the server's limit of %d bytes", limit)
	}
	return domain.Invalid(op, "the upload was interrupted or malformed; send it again")
}
