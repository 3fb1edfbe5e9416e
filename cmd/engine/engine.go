package engine

import (
	"context"
	"time"

	"github.com/kmsbackup/kmsbackup/adapters/clock"
	"github.com/kmsbackup/kmsbackup/adapters/ids"
	"github.com/kmsbackup/kmsbackup/adapters/softkms"
	"github.com/kmsbackup/kmsbackup/commands"
	"github.com/kmsbackup/kmsbackup/domain"
	"github.com/kmsbackup/kmsbackup/projections"
	"github.com/kmsbackup/kmsbackup/projections/audit"
	"github.com/kmsbackup/kmsbackup/projections/backupdata"
	"github.com/kmsbackup/kmsbackup/projections/backupstate"
	"github.com/kmsbackup/kmsbackup/projections/kmsstate"
)

// ReadModels is where the projections keep their read models.
type ReadModels = commands.ProjectionStore

// Envelope seals values and keeps the data keys they are sealed under.
type Envelope interface {
	commands.Sealer
	commands.DataKeys
}

// Ports are what the engine is assembled from. Log, ReadModels, Blobs,
// Keys, Scratch, Files and Clock are required.
type Ports struct {
	Log        commands.EventLog
	ReadModels ReadModels
	Blobs      commands.BlobStore
	Keys       Envelope
	Scratch    commands.ScratchStores
	Files      commands.BackupFiles
	Clock      commands.Clock
	// IDs draws new IDs (default: random ULIDs at Clock's time).
	IDs commands.IDSource
	// Zones loads a time zone by IANA name (default time.LoadLocation).
	Zones func(name string) (*time.Location, error)
	// SessionClock is the clock console sessions expire on (default the
	// system's, whatever Clock is).
	SessionClock commands.Clock
}

// Options tune the engine; the zero value is the server's default.
type Options struct {
	// AdminToken is the token of the administrator (empty: none).
	AdminToken string
	// RestoreBatch is the number of items a restore writes per append (0:
	// the default of commands.Restores).
	RestoreBatch int
}

// Engine is the assembled use cases and the projectors that keep their
// read models. The five groups of backup use cases (Backups, Checkpoints,
// Schedule, Days, Files) share one BackupViews, one BackupStreams and one
// BackupStorage: one lock per backup instance, one time-zone cache.
type Engine struct {
	KMS         *commands.KMS
	Backups     *commands.BackupInstances
	Checkpoints *commands.Checkpoints
	Schedule    *commands.Schedule
	Days        *commands.DayData
	Files       *commands.DayFiles
	Accounts    *commands.Accounts
	Audit       *commands.Audit
	Restores    *commands.Restores

	KMSState    *commands.Projector
	BackupState *commands.Projector
	BackupData  *commands.Projector
	AuditLog    *commands.Projector
}

// New assembles the engine on p.
func New(p Ports, o Options) *Engine {
	if p.IDs == nil {
		p.IDs = ids.Random{Clock: p.Clock}
	}
	if p.Zones == nil {
		p.Zones = time.LoadLocation
	}
	if p.SessionClock == nil {
		p.SessionClock = clock.System{}
	}
	rm := p.ReadModels
	e := &Engine{
		KMSState: &commands.Projector{Name: kmsstate.Name, Log: p.Log, Store: rm, Apply: commands.Pure(kmsstate.Apply),
			ApplyAll: commands.PureAll(kmsstate.ApplyAll)},
		BackupState: &commands.Projector{Name: backupstate.Name, Log: p.Log, Store: rm, Apply: commands.Pure(backupstate.Apply)},
		BackupData: &commands.Projector{Name: backupdata.Name, Log: p.Log, Store: rm,
			Apply: commands.BackupDataApply(p.Blobs, p.Scratch, func(fn func(projections.AddSorted) error) error {
				return rm.Load(backupdata.Name, fn)
			})},
		AuditLog: &commands.Projector{Name: audit.Name, Log: p.Log, Store: rm, Apply: commands.Pure(audit.Apply)},
	}
	e.Audit = &commands.Audit{Log: p.Log, State: rm, Applied: e.AuditLog, Clock: p.Clock, IDs: p.IDs}
	views := &commands.BackupViews{State: rm, Clock: p.Clock, Zones: p.Zones}
	streams := &commands.BackupStreams{BackupViews: views, Log: p.Log, StateApplied: e.BackupState, DataApplied: e.BackupData,
		IDs: p.IDs, Audit: e.Audit}
	storage := &commands.BackupStorage{Blobs: p.Blobs, DataKeys: p.Keys, Scratch: p.Scratch, IDs: p.IDs}
	e.Days = &commands.DayData{BackupViews: views, Storage: storage}
	e.Files = &commands.DayFiles{BackupStreams: streams, Storage: storage, Days: e.Days, Sealer: p.Keys, Files: p.Files}
	e.Checkpoints = &commands.Checkpoints{BackupStreams: streams, Storage: storage, Days: e.Days, Sealer: p.Keys}
	e.Backups = &commands.BackupInstances{BackupStreams: streams, Storage: storage, Checkpoints: e.Checkpoints}
	e.Schedule = &commands.Schedule{BackupStreams: streams, Instances: e.Backups, Checkpoints: e.Checkpoints}
	backups := e.Backups
	e.KMS = &commands.KMS{Log: p.Log, State: rm, Applied: e.KMSState, Sealer: p.Keys, DataKeys: p.Keys,
		Cipher: softkms.Cipher{}, Clock: p.Clock, IDs: p.IDs,
		AfterCreate: func(ctx context.Context, in *domain.Instance) error {
			return backups.EnsureDefault(ctx, in.Account, in.Region)
		},
		BeforeShred: backups.MarkSourceReleased}
	e.Accounts = &commands.Accounts{Log: p.Log, State: rm, Applied: e.KMSState, Clock: p.Clock, IDs: p.IDs,
		AdminToken: o.AdminToken, SessionClock: p.SessionClock}
	e.Restores = &commands.Restores{Days: e.Days, KMS: e.KMS, Sealer: p.Keys, Audit: e.Audit, Sources: e.Days,
		BatchItems: o.RestoreBatch}
	return e
}

// Projectors returns the projectors, in the order the server starts them.
func (e *Engine) Projectors() []*commands.Projector {
	return []*commands.Projector{e.KMSState, e.BackupState, e.BackupData, e.AuditLog}
}
