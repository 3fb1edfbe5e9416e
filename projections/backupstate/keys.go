package backupstate

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Key layout. Every key starts with "bks/"; components are separated by
// 0x00, which no ID or region may contain.
//
//	bks/b/<backup>                  backup record (domain.Backup)
//	bks/a/<account>\0<backup>       the account's backups, in ID order
//	bks/k/<kms instance>            the backup bound to a KMS instance (value: backup ID)
//	bks/d/<account>\0<region>       the default backup of a region (value: backup ID)
//	bks/s/<backup>                  backups with scheduled work (see hasScheduledWork)
func k(parts ...string) []byte { return projections.Key(parts...) }

// prefix is the prefix of the children of k(parts...).
func prefix(parts ...string) []byte { return projections.Prefix(parts...) }

const (
	pBackup    = "bks/b/"
	pAccount   = "bks/a/"
	pBinding   = "bks/k/"
	pDefault   = "bks/d/"
	pScheduled = "bks/s/"
)

func backupKey(id domain.BackupID) []byte { return k(pBackup, string(id)) }
func accountBackupKey(a domain.AccountID, id domain.BackupID) []byte {
	return k(pAccount, string(a), string(id))
}
func bindingKey(in domain.InstanceID) []byte { return k(pBinding, string(in)) }
func defaultKey(a domain.AccountID, region string) []byte {
	return k(pDefault, string(a), region)
}
func scheduledKey(id domain.BackupID) []byte { return k(pScheduled, string(id)) }
