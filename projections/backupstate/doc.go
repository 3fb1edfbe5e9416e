// Package backupstate is the read model of backup instances: every
// instance's state (domain.Backup, evolved by its own events), the account's
// instances, the KMS instance each one is bound to, the default instance of
// each account and region, and the instances that have scheduled work. It is
// a pure function of the events of the backup-<id> streams applied through a
// projections.Txn, plus queries over a projections.Reader. It never holds
// backed-up data (that is backupdata's), never reads a clock and never
// decides anything: the rules stay in domain.
package backupstate
