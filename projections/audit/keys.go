package audit

import (
	"encoding/binary"

	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
)

// Key layout. Every key starts with "aud/"; components are separated by
// 0x00, which no ID may contain. Positions are 8-byte big-endian, so keys
// sort in log order; they are the last component, so their zero bytes are
// harmless. Account IDs start with "acct_", so "aud/b/" cannot clash with an
// account's records.
//
//	aud/<account>\0<position>                 audit record
//	aud/b/<account>\0<backup>\0<position>     the account's records about a backup (a copy
//	                                          of the record: records are small, and List
//	                                          then reads one range)
const (
	pRecord = "aud/"
	pBackup = "aud/b/"
)

func be(pos uint64) string { return string(binary.BigEndian.AppendUint64(nil, pos)) }

func recordKey(a domain.AccountID, pos uint64) []byte {
	return projections.Key(pRecord, string(a), be(pos))
}

func backupKey(a domain.AccountID, b domain.BackupID, pos uint64) []byte {
	return projections.Key(pBackup, string(a), string(b), be(pos))
}

// listPrefix is the prefix of the keys List scans.
func listPrefix(a domain.AccountID, b domain.BackupID) []byte {
	if b == "" {
		return projections.Prefix(pRecord, string(a))
	}
	return projections.Prefix(pBackup, string(a), string(b))
}
