package console

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// downloadLifetime is how long a prepared download waits to be fetched.
const downloadLifetime = 15 * time.Minute

// downloads holds the files prepared for download, each fetched at most
// once by the account that prepared it. The files are encrypted; their
// data keys were shown once and are kept nowhere.
type downloads struct {
	mu    sync.Mutex
	now   func() time.Time
	files map[string]*prepared
}

type prepared struct {
	account domain.AccountID
	path    string
	name    string
	expires time.Time
}

// add keeps a prepared file and returns its ticket; it removes the files
// that expired unfetched.
func (d *downloads) add(p *prepared) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("download ticket: %w", err)
	}
	t := hex.EncodeToString(b[:])
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.files == nil {
		d.files = map[string]*prepared{}
	}
	now := d.now()
	for k, f := range d.files {
		if now.After(f.expires) {
			_ = os.Remove(f.path)
			delete(d.files, k)
		}
	}
	p.expires = now.Add(downloadLifetime)
	d.files[t] = p
	return t, nil
}

// take removes a ticket and returns its file, when it exists, belongs to
// account and has not expired.
func (d *downloads) take(ticket string, account domain.AccountID) (*prepared, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.files[ticket]
	if !ok || p.account != account {
		return nil, false
	}
	delete(d.files, ticket)
	if d.now().After(p.expires) {
		_ = os.Remove(p.path)
		return nil, false
	}
	return p, true
}

func (d *downloads) clear() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for k, f := range d.files {
		if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		delete(d.files, k)
	}
	return errors.Join(errs...)
}

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

// download writes the day's file, encrypted under a fresh data key, to the
// spool, and shows the key once with a link that fetches the file once.
func (c *Console) download(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	id := domain.BackupID(r.PathValue("id"))
	v := downloadView{Day: r.PostFormValue("day")}
	fail := func(err error) { c.showDownload(w, r, a, errorStatus(err), v, err) }
	if v.Day == "" {
		fail(domain.Invalid("download", "choose a day"))
		return
	}
	f, err := os.CreateTemp(c.SpoolDir, "download-*.kmsbk")
	if err != nil {
		fail(fmt.Errorf("download: spool: %w", err))
		return
	}
	keep := false
	defer func() {
		if !keep {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	var start commands.DownloadStart
	_, err = c.Files.DownloadDay(r.Context(), a, id, v.Day, bw, func(st commands.DownloadStart) error {
		start = st
		return nil
	})
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		fail(err)
		return
	}
	v.File = start.Header.FileName()
	v.Ticket, err = c.downloads.add(&prepared{account: a.Account, path: f.Name(), name: v.File})
	if err != nil {
		fail(err)
		return
	}
	keep = true
	v.DataKey = start.DataKey
	c.showDownload(w, r, a, http.StatusOK, v, nil)
}

// fetchDownload sends a prepared file once, then removes it.
func (c *Console) fetchDownload(w http.ResponseWriter, r *http.Request, a commands.Caller) {
	p, ok := c.downloads.take(r.PathValue("ticket"), a.Account)
	if !ok {
		c.renderError(w, r, domain.Errorf(domain.ErrNotFound, "download", "", "prepare the download again: a new file comes with a new data key",
			"this download link was used already, has expired (after %s), or was never made", downloadLifetime))
		return
	}
	defer func() { _ = os.Remove(p.path) }()
	f, err := os.Open(p.path)
	if err != nil {
		c.renderError(w, r, fmt.Errorf("download: open the prepared file: %w", err))
		return
	}
	defer func() { _ = f.Close() }()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, p.name))
	if st, err := f.Stat(); err == nil {
		h.Set("Content-Length", fmt.Sprint(st.Size()))
	}
	if _, err := io.Copy(w, f); err != nil {
		c.Logger.Warn("console download interrupted", "error", err)
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
