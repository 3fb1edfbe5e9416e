package commands

import (
	"io"

	"github.com/kmsbackup/kmsbackup/domain"
)

// BackupFiles writes and reads backup data files (docs/backup-file.md): an
// authenticated header, then a payload of records sealed in fixed-size
// chunks under a one-time data key. The records' content is the caller's;
// the format frames, seals and counts them.
type BackupFiles interface {
	// Create draws a fresh random data key, writes h (with its Version set)
	// to w and returns a writer for the payload and the key. The key is the
	// caller's to show once and wipe; it is never kept. h.Records is a
	// promise: Close fails unless exactly that many records were written.
	Create(w io.Writer, h domain.FileHeader) (FileWriter, domain.Plaintext, error)
	// Open reads and authenticates the header of the file r with key. Every
	// failure to do so is domain.BadBackupFile, except a failing r, which is
	// returned wrapped.
	Open(r io.Reader, key domain.Plaintext) (FileReader, error)
}

// FileWriter writes a file's payload. Not safe for concurrent use.
type FileWriter interface {
	// WriteRecord appends one record (at most MaxRecordSize bytes). The
	// record is copied; the caller may reuse or wipe it at once.
	WriteRecord(rec []byte) error
	// Close seals the last chunk. It does not close the underlying writer.
	Close() error
}

// FileReader reads a file's payload, authenticating each chunk before
// returning anything from it. Not safe for concurrent use.
type FileReader interface {
	// Header is the authenticated header.
	Header() domain.FileHeader
	// Next returns the next record, valid until the following call (the
	// reader wipes it then), or io.EOF after the last record of an intact
	// file. Every integrity failure (a bad chunk, truncation, trailing
	// bytes, a record count other than the header's) is
	// domain.BadBackupFile.
	Next() ([]byte, error)
}

// MaxRecordSize bounds one record of a backup file: a reader never
// allocates more for one record.
const MaxRecordSize = 1 << 20
