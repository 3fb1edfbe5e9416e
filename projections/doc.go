// Package projections holds the state built from events, as read models:
// the KMS state and accounts (kmsstate), backup instances (backupstate),
// what each backup holds (backupdata), the audit trail (audit), and the
// state of a restore point loaded into a scratch store (dayview). Each
// projection is a pure function of the events it is given plus a small
// key-value port (Reader, Txn); it never talks to the log, the network or
// the clock itself.
package projections
