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
// checkpoint it walks the slice's parts from the blob store, one part in
// memory at a time, and for the base that holds a generation's first
// checkpoint it walks the base's items, loaded into a scratch store, and
// writes their rows as sorted runs through load (ProjectionStore.Load of
// the projection), as it writes a large checkpoint's items part by part,
// so that the projection itself stays a pure function of events and
// memory stays bounded. A slice or base whose generation was
// destroyed (reset or released) is gone; its event then applies without
// data, which the later reset or release erases anyway.
func BackupDataApply(blobs BlobStore, scratch ScratchStores, load func(fn func(add projections.AddSorted) error) error) func(ctx context.Context, txn projections.Txn, e domain.Event) error {
	s := &BackupStorage{Blobs: blobs, Scratch: scratch}
	return func(ctx context.Context, txn projections.Txn, e domain.Event) error {
		if e.Type != domain.TypeBackupCheckpointed && e.Type != domain.TypeBackupBaseStored {
			return backupdata.Apply(txn, e, backupdata.Data{})
		}
		d, err := e.Decode()
		if err != nil {
			return err
		}
		id := domain.BackupID(strings.TrimPrefix(e.Stream, domain.BackupStreamPrefix))
		if base, ok := d.(*domain.BackupBaseStored); ok {
			ref := domain.DataRef(id, base.Generation)
			data := backupdata.Data{Load: load}
			if len(base.Parts) == 0 || !gone(ctx, blobs, ref, base.Parts[0].Name) {
				data.Base = s.baseItems(ctx, ref, base.Parts)
			}
			return backupdata.Apply(txn, e, data)
		}
		cp := d.(*domain.BackupCheckpointed)
		parts := cp.SliceParts()
		ref := domain.DataRef(id, cp.Generation)
		if len(parts) == 0 || gone(ctx, blobs, ref, parts[0].Name) {
			return backupdata.Apply(txn, e, backupdata.Data{})
		}
		err = backupdata.Apply(txn, e, backupdata.Data{Load: load, Slice: func(fn func(*domain.Event) error) error {
			return eachSliceEvent(ctx, blobs, ref, parts, fn)
		}})
		if err != nil {
			return fmt.Errorf("apply checkpoint %d of %s: %w", cp.Seq, id, err)
		}
		return nil
	}
}

// gone reports whether a blob of a generation is gone (the generation was
// destroyed since): opening it reads its header alone.
func gone(ctx context.Context, blobs BlobStore, ref, name string) bool {
	r, err := blobs.OpenBlob(ctx, ref, name)
	if err == nil {
		_ = r.Close()
	}
	return errors.Is(err, domain.ErrNotFound)
}
