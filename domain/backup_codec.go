package domain

import "github.com/kmsbackup/kmsbackup/domain/wire"

func (e *BackupCreated) encode(w *wire.Writer) {
	w.String(string(e.Backup))
	w.String(string(e.Kind))
	w.String(e.Region)
	w.Uvarint(uint64(e.ViewableDays))
	w.Time(e.ExpiresAt)
}
func (e *BackupCreated) decode(r *wire.Reader) {
	e.Backup, e.Kind, e.Region = BackupID(r.String()), BackupKind(r.String()), r.String()
	e.ViewableDays, e.ExpiresAt = r.Uint32(), r.Time()
}

func (e *BackupEnabled) encode(w *wire.Writer) {
	w.String(string(e.KMSInstance))
	w.String(e.Alias)
	w.String(e.TimeZone)
}
func (e *BackupEnabled) decode(r *wire.Reader) {
	e.KMSInstance, e.Alias, e.TimeZone = InstanceID(r.String()), r.String(), r.String()
}

func (e *BackupExtended) encode(w *wire.Writer) { w.Uvarint(uint64(e.ViewableDays)) }
func (e *BackupExtended) decode(r *wire.Reader) { e.ViewableDays = r.Uint32() }

func (e *BackupRenewed) encode(w *wire.Writer) { w.Time(e.ExpiresAt) }
func (e *BackupRenewed) decode(r *wire.Reader) { e.ExpiresAt = r.Time() }

func (*BackupExpired) encode(*wire.Writer)  {}
func (*BackupExpired) decode(*wire.Reader)  {}
func (*BackupReleased) encode(*wire.Writer) {}
func (*BackupReleased) decode(*wire.Reader) {}
func (*BackupReset) encode(*wire.Writer)    {}
func (*BackupReset) decode(*wire.Reader)    {}

func (e *BackupCheckpointed) encode(w *wire.Writer) {
	w.Uvarint(uint64(e.Generation))
	w.Uvarint(e.Seq)
	w.Bool(e.Full)
	w.Time(e.At)
	w.String(string(e.Day))
	w.Uvarint(e.From)
	w.Uvarint(e.Next)
	w.String(e.Slice)
	w.Fixed(e.SliceDigest[:])
	w.Fixed(e.PrevDigest[:])
	w.Fixed(e.Digest[:])
}
func (e *BackupCheckpointed) decode(r *wire.Reader) {
	e.Generation, e.Seq, e.Full, e.At = r.Uint32(), r.Uvarint(), r.Bool(), r.Time()
	e.Day, e.From, e.Next, e.Slice = Day(r.String()), r.Uvarint(), r.Uvarint(), r.String()
	r.Fixed(e.SliceDigest[:])
	r.Fixed(e.PrevDigest[:])
	r.Fixed(e.Digest[:])
}

func (e *BackupSourceReleased) encode(w *wire.Writer) {
	w.String(string(e.Instance))
	w.Uvarint(e.Next)
	w.Uvarint(e.End)
}
func (e *BackupSourceReleased) decode(r *wire.Reader) {
	e.Instance, e.Next, e.End = InstanceID(r.String()), r.Uvarint(), r.Uvarint()
}

func (e *BackupFailing) encode(w *wire.Writer) {
	w.String(e.Work)
	w.String(e.Reason)
	w.Time(e.Since)
	w.Uvarint(uint64(e.Attempts))
}
func (e *BackupFailing) decode(r *wire.Reader) {
	e.Work, e.Reason, e.Since, e.Attempts = r.String(), r.String(), r.Time(), r.Uint32()
}

func backupData(typ string) EventData {
	switch typ {
	case TypeBackupCreated:
		return &BackupCreated{}
	case TypeBackupEnabled:
		return &BackupEnabled{}
	case TypeBackupExtended:
		return &BackupExtended{}
	case TypeBackupRenewed:
		return &BackupRenewed{}
	case TypeBackupExpired:
		return &BackupExpired{}
	case TypeBackupReleased:
		return &BackupReleased{}
	case TypeBackupReset:
		return &BackupReset{}
	case TypeBackupCheckpointed:
		return &BackupCheckpointed{}
	case TypeSourceReleased:
		return &BackupSourceReleased{}
	case TypeBackupFailing:
		return &BackupFailing{}
	case TypeBackupUploaded:
		return &BackupUploaded{}
	case TypeBackupUploadDeleted:
		return &BackupUploadDeleted{}
	}
	return nil
}
