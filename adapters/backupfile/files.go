package backupfile

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
)

// Files writes and reads backup data files. It holds no key and no state:
// it is safe for concurrent use, and each file's writer or reader is its
// own.
type Files struct {
	rand io.Reader // data keys and salts
}

var _ commands.BackupFiles = (*Files)(nil)

// New returns Files drawing data keys and salts from crypto/rand.
func New() *Files { return &Files{rand: rand.Reader} }

// NewWithRand returns Files drawing data keys and salts from r. It exists
// for deterministic tests and fixtures: outside them, keys from anything but
// crypto/rand protect nothing.
func NewWithRand(r io.Reader) *Files { return &Files{rand: r} }

// Create draws a fresh data key and salt, writes the authenticated header
// (h with its Version set) to w at once and returns the payload's writer
// and the key. A header string field longer than 256 bytes or a CreatedAt
// that nanoseconds since 1970 cannot hold is ErrInvalidArgument; a failing
// random source is ErrUnavailable; a failing w is returned wrapped.
func (f *Files) Create(w io.Writer, h domain.FileHeader) (commands.FileWriter, domain.Plaintext, error) {
	const op = "create backup file"
	if err := checkHeader(op, &h); err != nil {
		return nil, nil, err
	}
	h.Version = domain.FileFormatVersion

	key := make(domain.Plaintext, domain.DataKeySize)
	var salt [saltSize]byte
	if err := f.draw(key, salt[:]); err != nil {
		key.Wipe()
		return nil, nil, domain.Errorf(domain.ErrUnavailable, op, "", "", "draw a data key: %v", err)
	}
	ks, err := deriveKeys(key, salt[:])
	if err != nil {
		key.Wipe()
		return nil, nil, domain.Errorf(domain.ErrUnavailable, op, "", "", "derive the file's keys")
	}
	defer ks.wipe()

	head := encodeHeader(h, salt[:])
	mac := headerMAC(ks.mac, head)
	if _, err := w.Write(append(head, mac...)); err != nil {
		key.Wipe()
		return nil, nil, fmt.Errorf("write backup file: %w", err)
	}
	return newWriter(w, ks.payload, mac, h.Records), key, nil
}

// draw fills the key and the salt from f.rand and refuses a key that cannot
// be fresh randomness: a short read, or all zeros (a broken source).
func (f *Files) draw(key, salt []byte) error {
	if _, err := io.ReadFull(f.rand, key); err != nil {
		return err
	}
	var or byte
	for _, b := range key {
		or |= b
	}
	if or == 0 {
		return errors.New("the random source returned zeros")
	}
	_, err := io.ReadFull(f.rand, salt)
	return err
}

// checkHeader applies the writer's side of the header rules, so that no
// file is written that a reader would refuse.
func checkHeader(op string, h *domain.FileHeader) error {
	for _, s := range headerStrings(h) {
		if len(s.v) > maxStringLen {
			return domain.Errorf(domain.ErrInvalidArgument, op, "", "",
				"the header's %s is %d bytes long; at most %d are allowed", s.name, len(s.v), maxStringLen)
		}
	}
	if t := h.CreatedAt; !t.IsZero() && !time.Unix(0, t.UnixNano()).Equal(t) {
		return domain.Errorf(domain.ErrInvalidArgument, op, "", "",
			"the header's creation time must lie between the years 1678 and 2262")
	}
	return nil
}

// Open reads the header of r, derives the file's keys from key and
// authenticates the header before decoding any of its fields. A key that is
// not 32 bytes, a wrong key and any missing, modified or added header byte
// are domain.BadBackupFile; a failing r (other than by ending) is returned
// wrapped. The payload is read and authenticated chunk by chunk by the
// returned reader's Next.
func (f *Files) Open(r io.Reader, key domain.Plaintext) (commands.FileReader, error) {
	if len(key) != domain.DataKeySize {
		return nil, domain.BadBackupFile()
	}
	var prefix [prefixSize]byte
	if err := readFull(r, prefix[:]); err != nil {
		return nil, err
	}
	if string(prefix[:len(magic)]) != magic {
		return nil, domain.BadBackupFile()
	}
	n := binary.BigEndian.Uint32(prefix[len(magic):])
	if n > maxHeaderLen { // before allocating for it
		return nil, domain.BadBackupFile()
	}
	head := make([]byte, prefixSize+int(n)+macSize)
	copy(head, prefix[:])
	if err := readFull(r, head[prefixSize:]); err != nil {
		return nil, err
	}
	signed, mac := head[:prefixSize+int(n)], head[prefixSize+int(n):]
	body := signed[prefixSize:]

	salt, ok := splitSalt(body)
	if !ok {
		return nil, domain.BadBackupFile()
	}
	ks, err := deriveKeys(key, salt)
	if err != nil {
		return nil, domain.BadBackupFile()
	}
	defer ks.wipe()
	if !hmac.Equal(headerMAC(ks.mac, signed), mac) {
		return nil, domain.BadBackupFile()
	}
	h, ok := decodeHeader(body)
	if !ok {
		return nil, domain.BadBackupFile()
	}
	return newReader(r, ks.payload, mac, h), nil
}

// readFull fills p from r. A file that ends first is a bad file; any other
// failure of r is r's, returned wrapped.
func readFull(r io.Reader, p []byte) error {
	_, err := io.ReadFull(r, p)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return domain.BadBackupFile()
	default:
		return fmt.Errorf("read backup file: %w", err)
	}
}
