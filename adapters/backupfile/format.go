package backupfile

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"math"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// The format's constants; docs/backup-file.md describes each.
const (
	magic        = "KMSBKUP\n" // 8 bytes, starts every file
	prefixSize   = len(magic) + 4
	maxHeaderLen = 64 << 10 // the header body's length is at most this
	saltSize     = 16
	macSize      = sha256.Size
	maxStringLen = 256 // a string field of the header is at most this long

	chunkSize  = 64 << 10 // plaintext bytes in every chunk but the last
	tagSize    = 16       // the GCM tag after each chunk's ciphertext
	sealedSize = chunkSize + tagSize
	nonceSize  = 12

	infoHeaderMAC = "kmsbackup file header v1"
	infoPayload   = "kmsbackup file payload v1"
)

// keys are the two keys derived from a file's data key.
type keys struct {
	mac     []byte      // HMAC-SHA256 key of the header
	payload cipher.AEAD // AES-256-GCM of the chunks
}

// deriveKeys derives the header MAC key and the payload cipher from the data
// key with HKDF-SHA256 salted with the header's salt. The derived payload
// key is wiped once the cipher holds its expanded form (best effort).
func deriveKeys(dataKey []byte, salt []byte) (keys, error) {
	macKey, err := hkdf.Key(sha256.New, dataKey, salt, infoHeaderMAC, 32)
	if err != nil {
		return keys{}, err
	}
	pk, err := hkdf.Key(sha256.New, dataKey, salt, infoPayload, 32)
	if err != nil {
		return keys{}, err
	}
	defer domain.Plaintext(pk).Wipe()
	block, err := aes.NewCipher(pk)
	if err != nil {
		return keys{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return keys{}, err
	}
	return keys{mac: macKey, payload: aead}, nil
}

// wipe forgets the MAC key (best effort).
func (k keys) wipe() { domain.Plaintext(k.mac).Wipe() }

// headerMAC is HMAC-SHA256 over the magic, the length and the body.
func headerMAC(macKey, prefixAndBody []byte) []byte {
	m := hmac.New(sha256.New, macKey)
	m.Write(prefixAndBody)
	return m.Sum(nil)
}

// nonce is STREAM's: an 11-byte big-endian chunk counter, then 0x01 on the
// last chunk and 0x00 on every other. The counter's top 3 bytes are always
// zero here: a file never gets near 2^64 chunks, and both sides stop there.
func nonce(dst *[nonceSize]byte, counter uint64, last bool) {
	*dst = [nonceSize]byte{}
	binary.BigEndian.PutUint64(dst[3:11], counter)
	if last {
		dst[11] = 1
	}
}

// maxCounter is the last chunk counter either side uses.
const maxCounter = math.MaxUint64

// encodeHeader returns magic || length || body for h (whose Version the
// caller has set) and salt. It does not check h; see checkHeader.
func encodeHeader(h domain.FileHeader, salt []byte) []byte {
	w := wire.Writer{B: make([]byte, prefixSize, 512)}
	copy(w.B, magic)
	w.Uvarint(uint64(h.Version))
	w.Fixed(salt)
	w.String(h.FileID)
	w.String(string(h.Account))
	w.String(string(h.Source))
	w.String(string(h.KMSInstance))
	w.String(h.Region)
	w.String(string(h.Day))
	w.String(h.TimeZone)
	w.Time(h.CreatedAt)
	w.Uvarint(h.Keys)
	w.Uvarint(h.Secrets)
	w.Uvarint(h.Checkpoints)
	w.Uvarint(h.Records)
	binary.BigEndian.PutUint32(w.B[len(magic):prefixSize], uint32(len(w.B)-prefixSize))
	return w.B
}

// headerStrings lists h's string fields with their names, for the length
// rule both sides apply.
func headerStrings(h *domain.FileHeader) [7]struct{ name, v string } {
	return [7]struct{ name, v string }{
		{"file ID", h.FileID}, {"account", string(h.Account)}, {"source", string(h.Source)},
		{"KMS instance", string(h.KMSInstance)}, {"region", h.Region}, {"day", string(h.Day)},
		{"time zone", h.TimeZone},
	}
}

// splitSalt reads the version and salt at the start of an unauthenticated
// body: only what is needed to derive the keys that authenticate it.
func splitSalt(body []byte) (salt []byte, ok bool) {
	r := wire.Reader{B: body}
	r.Uvarint()
	if r.Err() != nil || len(r.B) < saltSize {
		return nil, false
	}
	return r.B[:saltSize], true
}

// decodeHeader decodes an authenticated body. It fails on another version,
// a string field over maxStringLen, or trailing bytes.
func decodeHeader(body []byte) (domain.FileHeader, bool) {
	r := wire.Reader{B: body}
	var h domain.FileHeader
	h.Version = r.Uint32()
	var salt [saltSize]byte
	r.Fixed(salt[:])
	h.FileID = r.String()
	h.Account = domain.AccountID(r.String())
	h.Source = domain.BackupID(r.String())
	h.KMSInstance = domain.InstanceID(r.String())
	h.Region = r.String()
	h.Day = domain.Day(r.String())
	h.TimeZone = r.String()
	h.CreatedAt = r.Time()
	h.Keys = r.Uvarint()
	h.Secrets = r.Uvarint()
	h.Checkpoints = r.Uvarint()
	h.Records = r.Uvarint()
	if r.Done() != nil || h.Version != domain.FileFormatVersion {
		return domain.FileHeader{}, false
	}
	for _, s := range headerStrings(&h) {
		if len(s.v) > maxStringLen {
			return domain.FileHeader{}, false
		}
	}
	return h, true
}
