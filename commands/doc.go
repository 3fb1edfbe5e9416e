// Package commands holds the use cases of kmsbackup, one file each: the
// software KMS's instances, keys and secrets (KMS); accounts and their
// console sessions (Accounts); backup instances in five groups, each
// holding only the ports its own use cases use: their lifecycle and what
// shows them (BackupInstances), their chain of checkpoints, fulls and
// bases, verification and the scrub (Checkpoints), the scheduler's work
// (Schedule), their day data and restore points (DayData), downloads and
// uploads (DayFiles), which share one BackupViews, one BackupStreams and
// one BackupStorage per engine (backups.go); restores, planned, applied
// and validated (Restores); the audit trail (Audit); the public event
// stream and the ingestion of an external KMS's events; and the projection
// runner that keeps read models up to date (Projector). It declares the
// ports it needs (ports*.go) and orchestrates domain rules, projections
// and adapters through them. A use case decides against a read model and
// appends at the revision it read; within one process the writers of one
// stream take turns (keyed locks), and a race lost to another process is
// decided again after a backoff (decide). What a decision spans beyond its
// own stream, a unique key ID or secret name in a region, the one backup
// instance bound to a KMS instance, is a claim in a stream of its own,
// appended with the decision's event in one multi-stream append (names.go,
// bindings.go): the log decides it, on any number of nodes, not a lock. It
// never imports an adapter, and never formats output for a user interface.
package commands
