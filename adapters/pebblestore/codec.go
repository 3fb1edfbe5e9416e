package pebblestore

import (
	"fmt"

	"github.com/kmsbackup/kmsbackup/domain"
)

// An event is stored as the value of an 'L' key (the key is its position),
// in the record format of domain.AppendEventRecord.

// appendRecord appends e's record to dst with a zero revision; the writer
// sets the revision with setRecordRevision.
func appendRecord(dst []byte, e *domain.Event) []byte { return domain.AppendEventRecord(dst, e, 0) }

func setRecordRevision(rec []byte, rev uint64) { domain.SetEventRecordRevision(rec, rev) }

// decodeRecord decodes the record stored at position pos, sharing the
// strings it has alike with prev (the event decoded before it, or nil).
func decodeRecord(pos uint64, v []byte, prev *domain.Event) (domain.Event, error) {
	e, err := domain.DecodeEventRecordAfter(pos, v, prev)
	if err != nil {
		return domain.Event{}, fmt.Errorf("pebblestore: %w", err)
	}
	return e, nil
}

// recordHeader reads the revision, event ID and stream of a record without
// decoding the rest.
func recordHeader(pos uint64, v []byte) (rev uint64, id domain.EventID, stream string, err error) {
	rev, id, stream, err = domain.EventRecordHeader(pos, v)
	if err != nil {
		return 0, id, "", fmt.Errorf("pebblestore: %w", err)
	}
	return rev, id, stream, nil
}
