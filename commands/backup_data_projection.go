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
		if parts := cp.SliceParts(); len(parts) > 0 {
			id := domain.BackupID(strings.TrimPrefix(e.Stream, domain.BackupStreamPrefix))
			err := eachSliceEvent(context.Background(), blobs, domain.DataRef(id, cp.Generation), parts, func(ev *domain.Event) error {
				cp := *ev
				cp.Data = append([]byte(nil), ev.Data...)
				slice = append(slice, cp)
				return nil
			})
			switch {
			case errors.Is(err, domain.ErrNotFound):
				slice = nil
			case err != nil:
				return fmt.Errorf("load the slice of checkpoint %d of %s: %w", cp.Seq, id, err)
			}
		}
		return backupdata.Apply(txn, e, slice)
	}
}
