package backupstate

import (
	"bytes"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Get returns a backup instance, whatever its state (released ones too).
// It does not check the account: callers report another account's instance
// as not found. Errors: domain.ErrNotFound; domain.ErrCorrupt for a
// malformed record; the Reader's errors.
func Get(r projections.Reader, id domain.BackupID) (*domain.Backup, error) {
	v, ok, err := r.Get(backupKey(id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, domain.NotFound("get backup instance", "backup instance", string(id))
	}
	return decodeBackup(v)
}

// List lists the account's backup instances (released ones included) in ID
// order, which is creation order, size at a time; cursor is the Next of the
// previous page ("" for the first). Errors: domain.ErrInvalidArgument for a
// size below 1; Get's errors.
func List(r projections.Reader, account domain.AccountID, cursor string, size int) (projections.Page[*domain.Backup], error) {
	if size < 1 {
		return projections.Page[*domain.Backup]{}, domain.Invalid("list backup instances", "page size %d must be at least 1", size)
	}
	p := prefix(pAccount, string(account))
	var start []byte
	if cursor != "" {
		start = append(append(bytes.Clone(p), cursor...), 0) // first key after the cursor
	}
	var ids []domain.BackupID
	next := ""
	err := r.Scan(p, start, func(k, _ []byte) (bool, error) {
		if len(ids) == size {
			next = string(ids[size-1])
			return false, nil
		}
		ids = append(ids, domain.BackupID(k[len(p):]))
		return true, nil
	})
	if err != nil {
		return projections.Page[*domain.Backup]{}, err
	}
	page := projections.Page[*domain.Backup]{Next: next, Items: make([]*domain.Backup, 0, len(ids))}
	for _, id := range ids {
		b, err := Get(r, id)
		if err != nil {
			return projections.Page[*domain.Backup]{}, err
		}
		page.Items = append(page.Items, b)
	}
	return page, nil
}

// BoundTo returns the backup instance bound to a KMS instance, if any: an
// enabled one, or an expired one (which stays bound until it is released).
func BoundTo(r projections.Reader, in domain.InstanceID) (domain.BackupID, bool, error) {
	v, ok, err := r.Get(bindingKey(in))
	return domain.BackupID(v), ok, err
}

// DefaultFor returns the default backup instance of an account's region,
// if it was created.
func DefaultFor(r projections.Reader, account domain.AccountID, region string) (domain.BackupID, bool, error) {
	v, ok, err := r.Get(defaultKey(account, region))
	return domain.BackupID(v), ok, err
}

// Scheduled returns every backup instance the scheduler has work for, of
// every account, in ID order: the enabled ones (checkpoints to take, an
// expiry), the expired ones (a release to decide) and the provisioned ones
// that are not enabled (an expiry). Errors: Get's errors.
func Scheduled(r projections.Reader) ([]*domain.Backup, error) {
	return scheduled(r, func(*domain.Backup) bool { return true })
}

// Active returns the enabled and expired backup instances of every account,
// in ID order: the ones that back up, or backed up and are bound still.
// Errors: Get's errors.
func Active(r projections.Reader) ([]*domain.Backup, error) {
	return scheduled(r, func(b *domain.Backup) bool {
		return b.State == domain.StateEnabled || b.State == domain.StateExpired
	})
}

// WithData lists the backup instances of every account that hold data
// (domain.Backup.HoldsData: enabled, expired and uploads), in ID order, up
// to size at a time, starting after the instance ID cursor ("" for the
// first page); Next is the cursor of the next page, "" after the last.
// It reads every instance's record, those without data too, so a page may
// cost more reads than it returns. Errors: domain.ErrInvalidArgument for a
// size below 1; domain.ErrCorrupt for a malformed record; the Reader's
// errors.
func WithData(r projections.Reader, cursor domain.BackupID, size int) (projections.Page[*domain.Backup], error) {
	if size < 1 {
		return projections.Page[*domain.Backup]{}, domain.Invalid("list backup instances with data", "page size %d must be at least 1", size)
	}
	p := []byte(pBackup)
	var start []byte
	if cursor != "" {
		start = append(backupKey(cursor), 0) // first key after the cursor
	}
	var page projections.Page[*domain.Backup]
	err := r.Scan(p, start, func(_, v []byte) (bool, error) {
		b, err := decodeBackup(v)
		if err != nil {
			return false, err
		}
		if !b.HoldsData() {
			return true, nil
		}
		if len(page.Items) == size {
			page.Next = string(page.Items[size-1].ID)
			return false, nil
		}
		page.Items = append(page.Items, b)
		return true, nil
	})
	if err != nil {
		return projections.Page[*domain.Backup]{}, err
	}
	return page, nil
}

func scheduled(r projections.Reader, keep func(*domain.Backup) bool) ([]*domain.Backup, error) {
	p := []byte(pScheduled)
	var ids []domain.BackupID
	err := r.Scan(p, nil, func(k, _ []byte) (bool, error) {
		ids = append(ids, domain.BackupID(k[len(p):]))
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*domain.Backup, 0, len(ids))
	for _, id := range ids {
		b, err := Get(r, id)
		if err != nil {
			return nil, err
		}
		if keep(b) {
			out = append(out, b)
		}
	}
	return out, nil
}

// Ended returns the backup instances of every account with ended
// generations whose data is not recorded destroyed yet
// (domain.Backup.DestroyEnded), in ID order. It reads every instance's
// record. Errors: domain.ErrCorrupt for a malformed record; the Reader's
// errors.
func Ended(r projections.Reader) ([]*domain.Backup, error) {
	var out []*domain.Backup
	err := r.Scan([]byte(pBackup), nil, func(_, v []byte) (bool, error) {
		b, err := decodeBackup(v)
		if err != nil {
			return false, err
		}
		if _, ok := b.DestroyEnded(); ok {
			out = append(out, b)
		}
		return true, nil
	})
	return out, err
}
