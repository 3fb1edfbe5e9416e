// Command kmsbackup is the kmsbackup server (`kmsbackup server`) and the
// command-line client of its HTTP API (every other subcommand).
package main
