package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
)

// BackupDataApply is the apply step of the backupdata projection: for each
// checkpoint it loads the slice from the blob store, so that the projection
// itself stays a pure function of events. A slice whose generation was
// destroyed (reset or released) is gone; its checkpoint then applies
// without data, which the later reset or release erases anyway.
func BackupDataApply(blobs BlobStore) func(txn projections.Txn, e domain.Event) error {
	return func(txn projections.Txn, e domain.Event) error {
		if e.Type != domain.TypeBackupCheckpointed {
			return backupdata.Apply(txn, e, nil)
		}
		d, err := e.Decode()
		if err != nil {
			return err
		}
		cp := d.(*domain.BackupCheckpointed)
		var slice []domain.Event
		if cp.Slice != "" {
			id := domain.BackupID(strings.TrimPrefix(e.Stream, domain.BackupStreamPrefix))
			blob, err := blobs.GetBlob(context.Background(), domain.DataRef(id, cp.Generation), cp.Slice)
			switch {
			case errors.Is(err, domain.ErrNotFound):
			case err != nil:
				return fmt.Errorf("load slice %s of %s: %w", cp.Slice, id, err)
			default:
				if slice, err = domain.DecodeSlice(blob); err != nil {
					return fmt.Errorf("decode slice %s of %s: %w", cp.Slice, id, err)
				}
			}
		}
		return backupdata.Apply(txn, e, slice)
	}
}
