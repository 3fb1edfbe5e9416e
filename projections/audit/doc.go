// Package audit is the read model of the accounts' audit records: every
// Audited event of the audit-<account> streams, kept in log order per
// account, with an index by backup instance, and listed page by page. It is
// a pure function of the log's events applied through a projections.Txn,
// plus queries over a projections.Reader. It never decides what is audited
// (the use cases append the events), never reads a clock, and holds no key
// material or secret value: only who did what, to which object, when.
package audit
