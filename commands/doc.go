// Package commands holds the use cases of kmsbackup, one file each: the
// software KMS's instance, key and secret commands, accounts and their
// console sessions, and the projection runner that keeps read models up to
// date. It declares the ports it needs (ports.go) and orchestrates domain
// rules, projections and adapters through them. A use case decides against
// a read model and appends at the revision it read; within one process the
// writers of one stream take turns (keyed locks), and a race lost to
// another process is decided again after a backoff (decide). It never
// imports an adapter, and never formats output for a user interface.
package commands
