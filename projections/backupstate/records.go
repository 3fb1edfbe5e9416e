package backupstate

import (
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/domain/wire"
)

// recordVersion is the first byte of every record, so the layout can evolve.
// Version 2 added the upload fields, version 3 the renewal instant, the
// released source and the failing state, version 4 the last full's
// checkpoint and the newest base, version 5 the generations destroyed;
// older records still decode.
const recordVersion = 5

func encodeBackup(b *domain.Backup) []byte {
	w := wire.Writer{B: make([]byte, 0, 256)}
	w.Uvarint(recordVersion)
	w.String(string(b.ID))
	w.String(string(b.Account))
	w.String(b.Region)
	w.String(string(b.Kind))
	w.String(string(b.State))
	w.String(string(b.BeforeExpiry))
	w.Uvarint(uint64(b.ViewableDays))
	w.Time(b.ExpiresAt)
	w.Time(b.CreatedAt)
	w.Time(b.ExpiredAt)
	w.Time(b.ReleasedAt)
	w.Uvarint(b.Revision)
	w.String(string(b.KMSInstance))
	w.String(b.Alias)
	w.String(b.TimeZone)
	w.Time(b.EnabledAt)
	w.String(string(b.EnabledDay))
	w.Uvarint(uint64(b.Generation))
	w.Uvarint(b.Checkpoints)
	w.Uvarint(b.NextRevision)
	w.Fixed(b.LastDigest[:])
	w.Time(b.LastFullAt)
	w.String(string(b.LastFullDay))
	w.Time(b.LastIncremental)
	w.String(string(b.UploadDay))
	w.String(string(b.Source))
	w.String(string(b.SourceInstance))
	w.String(b.FileID)
	w.Time(b.ResumedAt)
	w.Time(b.SourceReleased.At)
	w.Uvarint(b.SourceReleased.Next)
	w.Uvarint(b.SourceReleased.End)
	w.String(b.Failing.Work)
	w.String(b.Failing.Reason)
	w.Time(b.Failing.Since)
	w.Uvarint(uint64(b.Failing.Attempts))
	w.Uvarint(b.LastFullSeq)
	w.Uvarint(b.LastFullNext)
	w.Uvarint(b.Bases)
	w.Uvarint(b.BaseSeq)
	w.Uvarint(b.BaseNext)
	w.Uvarint(b.BaseRecords)
	w.Fixed(b.LastBaseDigest[:])
	w.Uvarint(uint64(b.DestroyedBelow))
	return w.B
}

func decodeBackup(v []byte) (*domain.Backup, error) {
	r := wire.Reader{B: v}
	ver := r.Uvarint()
	if r.Err() == nil && (ver < 1 || ver > recordVersion) {
		return nil, domain.Corruption("backup record: unknown version %d", ver)
	}
	b := &domain.Backup{
		ID: domain.BackupID(r.String()), Account: domain.AccountID(r.String()), Region: r.String(),
		Kind: domain.BackupKind(r.String()), State: domain.BackupState(r.String()),
		BeforeExpiry: domain.BackupState(r.String()), ViewableDays: int(r.Uint32()),
		ExpiresAt: r.Time(), CreatedAt: r.Time(), ExpiredAt: r.Time(), ReleasedAt: r.Time(), Revision: r.Uvarint(),
		KMSInstance: domain.InstanceID(r.String()), Alias: r.String(), TimeZone: r.String(), EnabledAt: r.Time(),
		EnabledDay: domain.Day(r.String()), Generation: r.Uint32(), Checkpoints: r.Uvarint(), NextRevision: r.Uvarint(),
	}
	r.Fixed(b.LastDigest[:])
	b.LastFullAt, b.LastFullDay, b.LastIncremental = r.Time(), domain.Day(r.String()), r.Time()
	if ver >= 2 {
		b.UploadDay, b.Source = domain.Day(r.String()), domain.BackupID(r.String())
		b.SourceInstance, b.FileID = domain.InstanceID(r.String()), r.String()
	}
	if ver >= 3 {
		b.ResumedAt = r.Time()
		b.SourceReleased = domain.SourceRelease{At: r.Time(), Next: r.Uvarint(), End: r.Uvarint()}
		b.Failing = domain.Failure{Work: r.String(), Reason: r.String(), Since: r.Time(), Attempts: r.Uint32()}
	}
	if ver >= 4 {
		b.LastFullSeq, b.LastFullNext = r.Uvarint(), r.Uvarint()
		b.Bases, b.BaseSeq, b.BaseNext, b.BaseRecords = r.Uvarint(), r.Uvarint(), r.Uvarint(), r.Uvarint()
		r.Fixed(b.LastBaseDigest[:])
	}
	if ver >= 5 {
		b.DestroyedBelow = r.Uint32()
	}
	if err := r.Done(); err != nil {
		return nil, domain.Corruption("backup record: %v", err)
	}
	return b, nil
}
