package audit

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"time"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// List returns a page of the account's audit records in log order: all of
// them, or (backup not empty) those about that backup instance, keeping
// only records at or after since (zero: no limit). cursor is empty for the
// first page, then the previous page's Next: the position of its last
// record, in decimal. Next is empty on the last page. Safe for concurrent
// use when r is.
//
// Errors: domain.ErrInvalidArgument for a size below 1 or a malformed
// cursor; domain.ErrCorrupt for a damaged record; the Reader's errors.
func List(r projections.Reader, account domain.AccountID, backup domain.BackupID, since time.Time, cursor string, size int) (projections.Page[Record], error) {
	const op = "list audit records"
	if size < 1 {
		return projections.Page[Record]{}, domain.Invalid(op, "page size %d must be at least 1", size)
	}
	p := listPrefix(account, backup)
	var start []byte
	if cursor != "" {
		after, err := strconv.ParseUint(cursor, 10, 64)
		if err != nil {
			return projections.Page[Record]{}, domain.BadPageToken()
		}
		if after == math.MaxUint64 {
			return projections.Page[Record]{}, nil
		}
		start = binary.BigEndian.AppendUint64(bytes.Clone(p), after+1)
	}
	var page projections.Page[Record]
	err := r.Scan(p, start, func(k, v []byte) (bool, error) {
		if len(k) != len(p)+8 {
			return false, domain.Corruption("audit key %q: no position", k)
		}
		rec, err := decodeRecord(binary.BigEndian.Uint64(k[len(p):]), v)
		if err != nil {
			return false, err
		}
		if rec.At.Before(since) {
			return true, nil
		}
		if len(page.Items) == size {
			page.Next = strconv.FormatUint(page.Items[size-1].Position, 10)
			return false, nil
		}
		page.Items = append(page.Items, rec)
		return true, nil
	})
	if err != nil {
		return projections.Page[Record]{}, err
	}
	return page, nil
}
