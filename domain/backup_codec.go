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

// checkpointExtV2 starts what a checkpoint of codec v2 adds after the
// fields of the first generation: flags (checkpointInBase), then its parts.
const (
	checkpointExtV2  = 2
	checkpointInBase = 1
)

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
	if len(e.Parts) == 0 && !e.InBase {
		return // as the first generation wrote it
	}
	w.Uvarint(checkpointExtV2)
	var flags uint64
	if e.InBase {
		flags |= checkpointInBase
	}
	w.Uvarint(flags)
	w.Uvarint(uint64(len(e.Parts)))
	for _, p := range e.Parts {
		w.String(p.Name)
		w.Fixed(p.Digest[:])
		w.Uvarint(p.Events)
		w.Uvarint(p.From)
		w.Uvarint(p.Next)
	}
}
func (e *BackupCheckpointed) decode(r *wire.Reader) {
	e.Generation, e.Seq, e.Full, e.At = r.Uint32(), r.Uvarint(), r.Bool(), r.Time()
	e.Day, e.From, e.Next, e.Slice = Day(r.String()), r.Uvarint(), r.Uvarint(), r.String()
	r.Fixed(e.SliceDigest[:])
	r.Fixed(e.PrevDigest[:])
	r.Fixed(e.Digest[:])
	if r.Err() != nil || len(r.B) == 0 {
		return
	}
	if v := r.Uvarint(); v != checkpointExtV2 {
		r.Fixed(make([]byte, len(r.B)+1)) // an extension this version does not know: fail
		return
	}
	flags := r.Uvarint()
	e.InBase = flags&checkpointInBase != 0
	if flags&^checkpointInBase != 0 {
		r.Fixed(make([]byte, len(r.B)+1))
		return
	}
	if n := r.Count(); n > 0 {
		e.Parts = make([]SlicePart, n)
		for i := range e.Parts {
			p := &e.Parts[i]
			p.Name = r.String()
			r.Fixed(p.Digest[:])
			p.Events, p.From, p.Next = r.Uvarint(), r.Uvarint(), r.Uvarint()
		}
	}
}

func (e *BackupBaseStored) encode(w *wire.Writer) {
	w.Uvarint(uint64(e.Generation))
	w.Uvarint(e.Seq)
	w.Time(e.At)
	w.Uvarint(e.Next)
	w.Uvarint(uint64(len(e.Parts)))
	for _, p := range e.Parts {
		w.String(p.Name)
		w.Fixed(p.Digest[:])
		w.Uvarint(p.Size)
		w.Bytes(p.First)
		w.Bytes(p.Last)
		w.Uvarint(p.Items)
		w.Uvarint(p.Versions)
	}
	w.Uvarint(e.Items)
	w.Uvarint(e.Versions)
	w.Fixed(e.StateDigest[:])
	w.Fixed(e.CheckpointDigest[:])
	w.Fixed(e.PrevDigest[:])
	w.Fixed(e.Digest[:])
}
func (e *BackupBaseStored) decode(r *wire.Reader) {
	e.Generation, e.Seq, e.At, e.Next = r.Uint32(), r.Uvarint(), r.Time(), r.Uvarint()
	if n := r.Count(); n > 0 {
		e.Parts = make([]BasePart, n)
		for i := range e.Parts {
			p := &e.Parts[i]
			p.Name = r.String()
			r.Fixed(p.Digest[:])
			p.Size, p.First, p.Last, p.Items, p.Versions = r.Uvarint(), r.Bytes(), r.Bytes(), r.Uvarint(), r.Uvarint()
		}
	}
	e.Items, e.Versions = r.Uvarint(), r.Uvarint()
	r.Fixed(e.StateDigest[:])
	r.Fixed(e.CheckpointDigest[:])
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

func (e *BackupDataDestroyed) encode(w *wire.Writer) { w.Uvarint(uint64(e.Generation)) }
func (e *BackupDataDestroyed) decode(r *wire.Reader) { e.Generation = r.Uint32() }

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
	case TypeDataDestroyed:
		return &BackupDataDestroyed{}
	case TypeBackupUploaded:
		return &BackupUploaded{}
	case TypeBackupUploadDeleted:
		return &BackupUploadDeleted{}
	case TypeBackupBaseStored:
		return &BackupBaseStored{}
	}
	return nil
}
