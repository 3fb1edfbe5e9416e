package domain

import (
	"encoding/base64"
	"errors"
	"strings"
	"time"
)

// FileFormatVersion is the version of the backup data file format
// (docs/backup-file.md) this build writes and reads.
const FileFormatVersion = 1

// DataKeySize is the size of a backup file's data key: 256 bits.
const DataKeySize = 32

// dataKeyPrefix starts the text form of a data key.
const dataKeyPrefix = "kbk1_"

// FileHeader is the authenticated header of a backup data file: what the
// file holds and for whom. Records counts the payload's records
// (checkpoint and event records), so that a file cut at a record boundary
// is still detected.
type FileHeader struct {
	Version     uint32 // FileFormatVersion
	FileID      string // a ULID, unique per download
	Account     AccountID
	Source      BackupID // the backup instance the day was downloaded from
	KMSInstance InstanceID
	Region      string
	Day         Day
	TimeZone    string // the source's time zone, which days are counted in
	CreatedAt   time.Time
	Keys        uint64 // distinct keys in the day's data
	Secrets     uint64 // distinct secrets in the day's data
	Checkpoints uint64 // checkpoint records in the payload
	Records     uint64 // every record in the payload
}

// FileName is the name a downloaded file is offered under.
func (h FileHeader) FileName() string {
	return "kmsbackup-" + string(h.Source) + "-" + string(h.Day) + ".kmsbk"
}

// FormatDataKey is the text form of a data key, shown to the user once:
// "kbk1_" and the 32 bytes in unpadded base64url.
func FormatDataKey(k Plaintext) string {
	return dataKeyPrefix + base64.RawURLEncoding.EncodeToString(k)
}

// ParseDataKey reads the text form of a data key. A string that is not a
// data key at all is ErrInvalidArgument; a well-formed but wrong key is only
// found out when the file does not open (BadBackupFile).
func ParseDataKey(s string) (Plaintext, error) {
	const op = "read data key"
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), dataKeyPrefix)
	k, err := base64.RawURLEncoding.DecodeString(rest)
	if !ok || err != nil || len(k) != DataKeySize {
		return nil, Errorf(ErrInvalidArgument, op, "", "pass the key that download printed, such as kbk1_3q2+...",
			"a data key is %q followed by 43 base64url characters", dataKeyPrefix)
	}
	return Plaintext(k), nil
}

// BadBackupFile is the one error every unusable backup file gets: a wrong
// data key, any modified, missing, reordered or added byte, a truncated
// file, a file of another account, or content that does not hold together.
// It says nothing about which, so that the error is no oracle for an
// attacker.
func BadBackupFile() error {
	return &Error{Op: "open backup file", Kind: ErrInvalidArgument,
		Msg:  "the file cannot be opened with this data key: the key is wrong, or the file is damaged or was not made for this account",
		Hint: "check the key printed by download and upload the file exactly as it was downloaded"}
}

// IsBadBackupFile reports whether err is BadBackupFile.
func IsBadBackupFile(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Op == "open backup file" && e.Kind == ErrInvalidArgument
}
