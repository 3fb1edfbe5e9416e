package httpapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Headers of the download and upload routes. The data key travels in a
// header, never in a URL, so that it stays out of access logs and
// browser history.
const (
	HeaderDataKey = "Kmsbackup-Data-Key"
	HeaderFileID  = "Kmsbackup-File-Id"
)

// defaultMaxUpload bounds an uploaded file unless Server.MaxUpload says
// otherwise.
const defaultMaxUpload = 16 << 30

// deferredWriter holds what is written to it until release, so that a
// download's headers (its data key) can be set after the file's header is
// made and before any byte is sent.
type deferredWriter struct {
	buf bytes.Buffer
	out io.Writer
}

func (d *deferredWriter) Write(p []byte) (int, error) {
	if d.out != nil {
		return d.out.Write(p)
	}
	return d.buf.Write(p)
}

func (d *deferredWriter) release(w io.Writer) error {
	d.out = w
	_, err := w.Write(d.buf.Bytes())
	d.buf.Reset()
	return err
}

// bodyReader remembers the error of reading a request body, to tell it
// from an error of writing where the body goes.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (s *Server) fileRoutes(rt *Router) {
	b := s.Files
	rt.Handle("POST", "/v1/backup-instances/{id}/download", func(w http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		var req DownloadRequest
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		dw := &deferredWriter{}
		started := false
		_, err := b.DownloadDay(r.Context(), c, backupID(r), req.Day, dw, func(st commands.DownloadStart) error {
			h := w.Header()
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, st.Header.FileName()))
			h.Set("Cache-Control", "no-store")
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set(HeaderDataKey, st.DataKey)
			h.Set(HeaderFileID, st.Header.FileID)
			w.WriteHeader(http.StatusOK)
			started = true
			return dw.release(w)
		})
		if err != nil && started {
			// The status is sent: break the response, so that the client
			// sees a failed download rather than a short file.
			s.Logger.Error("download failed after it started", "route", r.Pattern, "error", err)
			panic(http.ErrAbortHandler)
		}
		if err != nil {
			return nil, err
		}
		return streamed, nil
	})
	limit := s.MaxUpload
	if limit <= 0 {
		limit = defaultMaxUpload
	}
	rt.HandleUpTo("POST", "/v1/uploads", limit, func(w http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		const op = "upload"
		name := r.URL.Query().Get("name")
		if name == "" {
			return nil, domain.Invalid(op, "query parameter name is required: a name for the upload")
		}
		key := r.Header.Get(HeaderDataKey)
		if key == "" {
			return nil, domain.Invalid(op, "header %s is required: the data key printed by download", HeaderDataKey)
		}
		// Refuse a malformed key before reading a large body.
		k, err := domain.ParseDataKey(key)
		if err != nil {
			return nil, err
		}
		k.Wipe()
		f, err := os.CreateTemp(s.SpoolDir, "upload-*.part")
		if err != nil {
			return nil, fmt.Errorf("%s: spool: %w", op, err)
		}
		defer func() { _ = f.Close(); _ = os.Remove(f.Name()) }()
		body := &bodyReader{r: r.Body}
		if _, err := io.Copy(f, body); err != nil {
			var mbe *http.MaxBytesError
			switch {
			case errors.As(err, &mbe):
				return nil, domain.Invalid(op, "the file is larger than the server's limit of %d bytes", limit)
			case body.err != nil:
				// Cut off, or too slow (the server's body deadline): the
				// client's side, not the server's.
				return nil, domain.Invalid(op, "the file did not arrive whole (the connection broke or stalled); send it again")
			}
			return nil, fmt.Errorf("%s: receive the file: %w", op, err)
		}
		open := func() (io.Reader, error) {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return nil, fmt.Errorf("%s: rewind: %w", op, err)
			}
			return bufio.NewReaderSize(f, 1<<20), nil
		}
		bk, err := b.UploadBackupFile(r.Context(), c, name, key, open)
		if err != nil {
			return nil, err
		}
		writeJSON(w, http.StatusCreated, backupView(bk))
		return streamed, nil
	})
	rt.Handle("GET", "/v1/uploads", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		size, err := queryInt(r, "page_size", 1000)
		if err != nil {
			return nil, err
		}
		p, err := b.ListUploads(c, r.URL.Query().Get("page_token"), size)
		if err != nil {
			return nil, err
		}
		return listView(p, backupView), nil
	})
	rt.Handle("DELETE", "/v1/uploads/{id}", func(_ http.ResponseWriter, r *http.Request, c commands.Caller) (any, error) {
		return nil, b.DeleteUpload(r.Context(), c, backupID(r))
	})
}
